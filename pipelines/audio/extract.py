"""Audio features of many files: a forkserver process pool of warmed-up workers.

``extract_many`` returns one row per input (a file that fails gives null features and an
``audio_error``); a worker that dies (a decoder crash) only costs its own item an error row.
"""

import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from pipelines.audio.features import FEATURE_COLUMNS, SR, extract_features, features_from_signal
from pipelines.schema import AUDIO_ERROR, TRACK_ID

EXTRACT_S = "extract_s"  # seconds spent on one file

_WARM = False
_POOL_DIED = "BrokenProcessPool: worker process died"


def warmup() -> None:
    """Run every code path once on 2 s of noise so numba compiles (or loads its cache) now."""
    global _WARM
    if _WARM:
        return
    rng = np.random.default_rng(0)
    features_from_signal(y=(0.1 * rng.standard_normal(2 * SR)).astype(np.float32), sr=SR)
    _WARM = True


def _init_worker() -> None:
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)  # one core per worker process
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        pass
    warmup()


def _extract_one(
    track_id: str, path: str, sr: int, duration: float, offset: float = 0.0
) -> tuple[str, dict[str, float] | None, str | None, float]:
    start = time.perf_counter()
    try:
        feats = extract_features(path=path, sr=sr, offset=offset, duration=duration)
        return track_id, feats, None, time.perf_counter() - start
    except Exception as exc:  # one bad file must not fail the batch
        return track_id, None, f"{type(exc).__name__}: {exc}"[:500], time.perf_counter() - start


def _frame(rows: list[tuple[str, dict[str, float] | None, str | None, float]]) -> pl.DataFrame:
    data: dict[str, list] = {TRACK_ID: [r[0] for r in rows]}
    for c in FEATURE_COLUMNS:
        data[c] = [None if r[1] is None else r[1][c] for r in rows]
    data[AUDIO_ERROR] = [r[2] for r in rows]
    data[EXTRACT_S] = [r[3] for r in rows]
    schema = {TRACK_ID: pl.String, **{c: pl.Float64 for c in FEATURE_COLUMNS}}
    schema |= {AUDIO_ERROR: pl.String, EXTRACT_S: pl.Float64}
    return pl.DataFrame(data, schema=schema)


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

    Columns: ``track_id``, every ``FEATURE_COLUMNS`` entry (Float64, null on failure),
    ``audio_error`` (String, null when OK), ``extract_s`` (seconds spent). ``workers=1`` runs in
    this process; otherwise a forkserver process pool whose workers warm up once. If a worker dies
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
