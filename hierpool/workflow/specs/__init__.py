"""Model specs shipped inside the package (read with ``importlib.resources``); ``episodes.toml`` is the
spec that ``hierpool demo`` runs."""
