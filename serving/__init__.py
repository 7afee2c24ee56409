"""Moodscape HTTP service (Litestar + msgspec) over the published store version.

Imports ``pipelines`` (never dagster). ``serving.app.create_app`` is the factory.
"""
