"""Measuring quality on labelled corpora: the evaluation run, metrics and report."""
