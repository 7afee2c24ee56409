"""Moodscape's pure processing library.

Nothing here imports dagster or litestar: the Dagster code location (`assets/`) and the
HTTP service (`serving/`) are thin layers over these modules.
"""
