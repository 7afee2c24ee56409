"""Hearing the audio: features, extraction, downloads, the retrieval space, MIDI rendering."""
