"""Sentence embeddings and the serving query encoders."""
