"""Plots of shrinkage, ranks and the ridge path (being written)."""
