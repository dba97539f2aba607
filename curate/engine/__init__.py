"""Execution apart from logic: the Dask cluster, run-directory state, and the stage runner."""
