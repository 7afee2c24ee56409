"""Healing the crawl: ingest, link checks, the music filter, metadata imputation."""
