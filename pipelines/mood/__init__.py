"""Valence and arousal: word norms, query mood, tag mood, the audio mood model, fusion."""

import importlib
from typing import Any

# Audio mood models written before this package was split pickled their classes as
# ``pipelines.mood.<class>``; resolve those names to where the classes live now.
_MOVED_CLASSES = {
    "AudioMoodModel": "pipelines.mood.audio_model",
    "ScaledLogisticRegression": "pipelines.mood.audio_model",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED_CLASSES:
        return getattr(importlib.import_module(_MOVED_CLASSES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
