"""The ``moodscape`` command line (entry point only; the work lives in pipelines/, assets/, serving/)."""
