"""Benchmarks and load tools (not product code): service, load generator, synthetic stores, audio."""
