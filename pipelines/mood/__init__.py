"""Valence and arousal: word norms, query mood, tag mood, the audio mood model, fusion."""
