"""Vector indices and the published serving version."""
