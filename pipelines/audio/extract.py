"""Audio features of many files: a forkserver process pool of warmed-up workers.

Each file is decoded once; the worker computes its librosa features and the backbone's tags and
embeddings. ``extract_many`` returns one row per input (a file that fails gives null features and
an ``audio_error``); a worker that dies (a decoder crash) only costs its own item an error row.
"""

import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from pipelines.audio import backbone
from pipelines.audio.backbone import BACKBONE_COLUMNS, BACKBONE_VERSION, backbone_outputs
from pipelines.audio.features import FEATURE_COLUMNS, SR, features_from_signal, load_clip
from pipelines.schema import AUDIO_ERROR, TRACK_ID

EXTRACT_S = "extract_s"  # seconds spent on one file
# What a row holds: cached rows of another version are extracted again.
EXTRACT_VERSION = f"librosa{len(FEATURE_COLUMNS)}+{BACKBONE_VERSION}"
EXTRACT_SCHEMA: dict[str, pl.DataType] = {
    TRACK_ID: pl.String,
    **{c: pl.Float64 for c in FEATURE_COLUMNS},
    **{c: pl.List(pl.Float32) for c in BACKBONE_COLUMNS},
    AUDIO_ERROR: pl.String,
    EXTRACT_S: pl.Float64,
}

_WARM = False
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_POOL_DIED = "BrokenProcessPool: worker process died"


def warmup() -> None:
    """Run every code path once on noise: numba compiles (or loads its cache), the backbone loads."""
    global _WARM
    if _WARM:
        return
    rng = np.random.default_rng(0)
    y = (0.1 * rng.standard_normal(2 * SR)).astype(np.float32)
    features_from_signal(y=y, sr=SR)
    backbone_outputs(y, SR)
    _WARM = True


def empty_frame() -> pl.DataFrame:
    """A frame with ``extract_many``'s columns and no rows."""
    return pl.DataFrame(schema=EXTRACT_SCHEMA)


def keep_freed_memory() -> None:
    """Have glibc's allocator keep freed blocks up to 32 MB for reuse in this process.

    The backbone allocates and frees several multi-MB tensors per 3 s patch; by default glibc
    hands such blocks back to the OS, so every patch page-faults them in again (about 1.5x the
    backbone's CPU time). No-op where the C library has no ``mallopt``.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # pragma: no cover - not glibc
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's maximum
    mallopt(_M_TRIM_THRESHOLD, 1 << 30)


def _init_worker() -> None:
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)  # one core per worker process
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        pass
    backbone.set_threads(1)
    keep_freed_memory()
    warmup()


def _extract_one(
    track_id: str, path: str, sr: int, duration: float, offset: float = 0.0
) -> tuple[str, dict | None, str | None, float]:
    start = time.perf_counter()
    try:
        y, sr_loaded = load_clip(path=path, sr=sr, offset=offset, duration=duration)
        feats: dict = features_from_signal(y=y, sr=sr_loaded)
        feats |= backbone_outputs(y, sr_loaded)
        return track_id, feats, None, time.perf_counter() - start
    except Exception as exc:  # one bad file must not fail the batch
        return track_id, None, f"{type(exc).__name__}: {exc}"[:500], time.perf_counter() - start


def _frame(rows: list[tuple[str, dict | None, str | None, float]]) -> pl.DataFrame:
    data: dict[str, list] = {TRACK_ID: [r[0] for r in rows]}
    for c in FEATURE_COLUMNS:
        data[c] = [None if r[1] is None else r[1][c] for r in rows]
    for c in BACKBONE_COLUMNS:
        data[c] = [None if r[1] is None else r[1][c].tolist() for r in rows]
    data[AUDIO_ERROR] = [r[2] for r in rows]
    data[EXTRACT_S] = [r[3] for r in rows]
    return pl.DataFrame(data, schema=EXTRACT_SCHEMA)


def extract_many(
    *,
    items: Sequence[tuple[str, str]],
    workers: int = 2,
    sr: int = SR,
    duration: float = 30.0,
    progress: bool = False,
    offset: float = 0.0,
) -> pl.DataFrame:
    """Features for ``(track_id, path)`` pairs → one row per item, in input order.

    Each file is analysed for ``duration`` s from ``offset`` s (see ``effective_offset`` for clips
    shorter than that).

    Columns (``EXTRACT_SCHEMA``): ``track_id``, every ``FEATURE_COLUMNS`` entry (Float64, null on
    failure), every ``BACKBONE_COLUMNS`` entry (List(Float32): 50 tag probabilities or
    ``EMBED_DIM`` embedding values, null on failure), ``audio_error`` (String, null when OK),
    ``extract_s`` (seconds spent). ``workers=1`` runs in this process; otherwise a forkserver
    process pool whose one-thread workers warm up once. If a worker dies
    (e.g. a decoder crash), the unfinished items are retried one at a time so only the culprit
    gets an error row.
    """
    items = [(str(t), str(p)) for t, p in items]
    results: dict[int, tuple] = {}
    bar = tqdm(total=len(items), disable=not progress, desc="audio features", unit="track")
    if workers <= 1 or len(items) <= 1:
        warmup()
        for i, (tid, path) in enumerate(items):
            results[i] = _extract_one(tid, path, sr, duration, offset)
            bar.update()
    else:
        # Compile (or load) numba's cache here first: workers that JIT-compile into an empty
        # NUMBA_CACHE_DIR at the same time race on its files and can crash (seen: null-pointer
        # segfaults on a cold cache); after this they only load the finished cache.
        warmup()
        broken: list[int] = []
        ctx = get_context("forkserver")
        with ProcessPoolExecutor(
            min(workers, len(items)), mp_context=ctx, initializer=_init_worker
        ) as pool:
            futures = {pool.submit(_extract_one, *items[i], sr, duration, offset): i for i in range(len(items))}
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    results[i] = fut.result()
                    bar.update()
                except BrokenProcessPool:
                    broken.append(i)
        for n, i in enumerate(sorted(broken)):  # a worker died: isolate it, one fresh pool per item
            _run_isolated(items=items, i=i, sr=sr, duration=duration, results=results, offset=offset)
            if n == 0 and len(broken) == len(items) and results[i][2] == _POOL_DIED:
                raise RuntimeError("audio worker processes die on start-up; see their stderr")
            bar.update()
    bar.close()
    return _frame([results[i] for i in range(len(items))])


def _run_isolated(
    *, items: list[tuple[str, str]], i: int, sr: int, duration: float, results: dict[int, tuple],
    offset: float = 0.0,
) -> None:
    """Extract item ``i`` in a fresh single-worker pool; a crash becomes an error row."""
    ctx = get_context("forkserver")
    try:
        with ProcessPoolExecutor(1, mp_context=ctx, initializer=_init_worker) as pool:
            results[i] = pool.submit(_extract_one, *items[i], sr, duration, offset).result()
    except BrokenProcessPool:
        results[i] = (items[i][0], None, _POOL_DIED, 0.0)
