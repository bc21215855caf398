"""Layer 1, data: from a DataFrame (or Dask, or Parquet/CSV files) to what a model factory takes.

``terms`` (predictor coding and the design matrix) -> ``stats`` (per-group sufficient statistics) ->
``grouped`` (:class:`GroupedData` rows, :class:`GroupedStats` statistics) -> ``reduce`` (Dask or pandas
reduction to statistics) -> ``prepare`` (the user's entry point). ``datasets`` ships example data.
"""

# Nothing is imported here: ``import hierpool`` and the CLI's checks load only the modules they use.
