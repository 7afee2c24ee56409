"""The Dagster code location: thin assets over ``pipelines``, checks, schedules, one Definitions."""
