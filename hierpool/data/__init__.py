"""Layer 1, data: from a DataFrame (or Dask, or Parquet/CSV files) to what a model factory takes.

``terms`` (predictor coding and the design matrix) -> ``stats`` (per-group sufficient statistics) ->
``grouped`` (:class:`GroupedData` rows, :class:`GroupedStats` statistics) -> ``reduce`` (Dask or pandas
reduction to statistics) -> ``prepare`` (the user's entry point). ``datasets`` ships example data.
"""

from hierpool.data import datasets
from hierpool.data.grouped import GroupedData, GroupedStats
from hierpool.data.terms import design_matrix

__all__ = ["GroupedData", "GroupedStats", "datasets", "design_matrix"]
