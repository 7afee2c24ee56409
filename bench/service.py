"""``moodscape bench``: the real service over a synthetic store, driven over HTTP with real query
texts by the lean load generator (:mod:`bench.httpload`); full and baseline alternate in blocks
after a warm-up, so both see the same machine state. Optional soak run with a hot swap.
"""

import ast
import asyncio
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import msgspec
import numpy as np
import polars as pl

from bench import synthstore as SS
from bench.httpload import HttpPool
from bench.server import hardlink_version, proc_cpu_s, proc_status_mb, start_service
from pipelines import store
from pipelines.index import bundle as B

ROUNDS = 4  # full/baseline blocks alternate this many times
WARMUP = 16  # requests per mode before measuring
TOP_K = 10


# ------------------------------------------------------------------------------------ queries
def real_queries(*, count: int, seed: int = 0, data_dir: Path = store.DATA_DIR) -> list[str]:
    """``count`` distinct real query texts, shuffled (repeats only if the sources run out)."""
    texts: list[str] = []
    for f in sorted((data_dir / "queries" / "deezer_music_ner").glob("*.csv")):
        texts += [t for t in pl.read_csv(f)["original"].drop_nulls().to_list() if 3 <= len(t) <= 300]
    tags = (data_dir / "corpus" / "moodtheme_tags.txt").read_text().split()
    texts += [f"{t.split('---')[-1]} music" for t in tags]
    mc = pl.read_csv(data_dir / "corpus" / "musiccaps.csv")["aspect_list"].drop_nulls().to_list()
    texts += [", ".join(ast.literal_eval(a)[:4]) for a in mc[:3000]]
    texts = [t for t in dict.fromkeys(x.strip() for x in texts) if t]
    random.Random(seed).shuffle(texts)
    out = texts[:count]
    while len(out) < count:
        out += texts[: count - len(out)]
    return out


# ------------------------------------------------------------------------------------ load
@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    wall_s: float = 0.0
    error_samples: list[str] = field(default_factory=list)
    client_cpu_s: float = 0.0  # this process's CPU over the measured blocks
    server_cpu_s: float | None = None  # the service's CPU over the measured blocks (None: pid unknown)

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms, dtype=np.float64)
        n = len(lat) + self.errors
        pct = (lambda q: round(float(np.percentile(lat, q)), 2)) if len(lat) else (lambda q: None)
        return {
            "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
            "qps": round(len(lat) / self.wall_s, 2) if self.wall_s > 0 else 0.0,
            "errors": int(self.errors), "requests": int(n),
            "client_cpu_ms_per_request": round(self.client_cpu_s * 1000 / n, 3) if n else None,
            "server_cpu_ms_per_request": (round(self.server_cpu_s * 1000 / n, 3)
                                          if n and self.server_cpu_s is not None else None),
            **({"error_samples": self.error_samples[:5]} if self.error_samples else {}),
        }


class _CpuMeter:
    """Adds this process's and the service's CPU seconds spent inside a ``with`` block to a Tally."""

    def __init__(self, *, tally: Tally, server_pid: int | None) -> None:
        self.tally, self.server_pid = tally, server_pid

    def __enter__(self) -> Self:
        self.c0 = time.process_time()
        self.s0 = proc_cpu_s(self.server_pid) if self.server_pid is not None else 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.tally.client_cpu_s += time.process_time() - self.c0
        if self.server_pid is not None:
            self.tally.server_cpu_s = (self.tally.server_cpu_s or 0.0) + proc_cpu_s(self.server_pid) - self.s0


def _results_ok(status: int, data: bytes) -> bool:
    """Status 200 and a JSON object whose ``results`` is a list."""
    if status != 200:
        return False
    doc = msgspec.json.decode(data)
    return isinstance(doc, dict) and isinstance(doc.get("results"), list)


async def _one(client: HttpPool, path: str, body: dict[str, Any], tally: Tally) -> None:
    t = time.perf_counter()
    try:
        status, data = await client.post_json(path, body)
        ok = _results_ok(status, data)
        if not ok and len(tally.error_samples) < 5:
            tally.error_samples.append(f"{status}: {data[:200].decode('utf-8', 'replace')}")
    except Exception as exc:
        ok = False
        if len(tally.error_samples) < 5:
            tally.error_samples.append(repr(exc)[:200])
    if ok:
        tally.latencies_ms.append((time.perf_counter() - t) * 1000)
    else:
        tally.errors += 1


async def run_block(*, client: HttpPool, queries: list[str], mode: str, concurrency: int, tally: Tally) -> None:
    """Send ``queries`` in ``mode`` with ``concurrency`` in flight; add latencies and wall time to ``tally``."""
    it = iter(queries)

    async def worker() -> None:
        for q in it:
            await _one(client, "/recommend", {"query": q, "top_k": TOP_K, "mode": mode}, tally)

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    tally.wall_s += time.perf_counter() - t


async def measure(
    *, base_url: str, queries: list[str], concurrency: int, progress: bool, server_pid: int | None = None,
) -> dict[str, Tally]:
    """Warm-up, then ROUNDS alternating full/baseline blocks over the same query texts.

    With ``server_pid``, each mode's Tally also gets the service's CPU seconds over its blocks.
    """
    from tqdm import tqdm

    tallies = {"full": Tally(), "baseline": Tally()}
    async with HttpPool(base_url=base_url, size=max(1, concurrency), timeout_s=60.0) as client:
        warm = Tally()
        for mode in ("full", "baseline"):
            await run_block(client=client, queries=queries[-WARMUP:], mode=mode, concurrency=concurrency, tally=warm)
        blocks = np.array_split(np.arange(len(queries)), ROUNDS)
        bar = tqdm(total=2 * len(queries), desc="bench requests", disable=not progress)
        for r, block in enumerate(blocks):
            order = ("full", "baseline") if r % 2 == 0 else ("baseline", "full")
            for mode in order:
                qs = [queries[i] for i in block]
                with _CpuMeter(tally=tallies[mode], server_pid=server_pid):
                    await run_block(client=client, queries=qs, mode=mode, concurrency=concurrency,
                                    tally=tallies[mode])
                bar.update(len(qs))
        bar.close()
    return tallies


async def soak(
    *, base_url: str, queries: list[str], clients: int, seconds: float, layout: store.StoreLayout | None,
    progress: bool,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """``clients`` concurrent clients for ``seconds``; with ``layout``, hot-swap a new version at half time.

    With ``server_pid``, the summary's CPU figures include the service's CPU over the whole soak.
    """
    tally = Tally()
    stop_at = time.perf_counter() + seconds
    swap: dict[str, Any] = {}

    async def health_version(pool: HttpPool) -> str | None:
        status, data = await pool.get("/health")
        doc = msgspec.json.decode(data) if status == 200 else None
        return doc.get("store_version") if isinstance(doc, dict) else None

    # One extra connection so /health polls never queue behind the recommendation clients.
    async with HttpPool(base_url=base_url, size=clients + 1, timeout_s=120.0) as client:

        async def worker(i: int) -> None:
            j = i
            while time.perf_counter() < stop_at:
                await _one(client, "/recommend",
                           {"query": queries[j % len(queries)], "top_k": TOP_K, "mode": "full"}, tally)
                j += clients

        async def swapper() -> None:
            await asyncio.sleep(seconds / 2)
            old = await health_version(client)
            if old is None:
                swap.update(error="could not read store_version from /health")
                return
            new = f"{old}-swap{int(time.time())}"
            await asyncio.to_thread(hardlink_version, layout=layout, source_version=old, new_version=new)
            t = time.perf_counter()
            await asyncio.to_thread(layout.publish, new)
            swap.update(old=old, new=new, seen_after_s=None)
            while time.perf_counter() < stop_at:
                await asyncio.sleep(0.25)
                try:
                    if await health_version(client) == new:
                        swap["seen_after_s"] = round(time.perf_counter() - t, 2)
                        return
                except Exception:
                    pass

        t0 = time.perf_counter()
        jobs = [worker(i) for i in range(clients)] + ([swapper()] if layout is not None else [])
        with _CpuMeter(tally=tally, server_pid=server_pid):
            await asyncio.gather(*jobs)
        tally.wall_s = time.perf_counter() - t0
    out = {"seconds": seconds, "clients": clients, **tally.summary()}
    if layout is not None:
        out["swap"] = swap
    return out


# ------------------------------------------------------------------------------------ driver
def run_benchmark(
    *,
    n_tracks: int,
    out_dir: Path,
    queries: int = 400,
    concurrency: int = 8,
    cache: Path | None = None,
    factory: str | None = None,
    publish_vectors: bool | None = None,
    seed: int = 0,
    prototypes: int = 4000,
    audio_clips: int = 42,
    mood_model_rows: int = 3000,
    load_seconds: float = 0.0,
    clients: int = 100,
    swap: bool = False,
    service_env: dict[str, str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Build/reuse the synthetic store, start the service (response cache off), measure, and write
    ``out_dir/bench.json``::

        {"tracks", "full": {"p50_ms","p95_ms","p99_ms","qps","errors","requests",
                            "client_cpu_ms_per_request" (time.process_time of this process over the
                            mode's measured blocks / requests), "server_cpu_ms_per_request" (service
                            utime+stime from /proc/<pid>/stat over the same blocks / requests)},
         "baseline": {...},
         "rss_mb" (peak VmRSS = VmHWM of the service), "rss_end_mb", "build_s", "store": {...},
         "load": {...} (optional soak run with a hot swap)}
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = SS.SynthParams(n_tracks=n_tracks, seed=seed, prototypes=prototypes, audio_clips=audio_clips,
                            mood_model_rows=mood_model_rows, factory=factory,
                            publish_vectors=publish_vectors)
    cache = Path(cache or SS.default_cache_dir())
    t = time.perf_counter()
    root = SS.build_synth_store(params=params, cache=cache, progress=progress)
    build_s = time.perf_counter() - t
    build_info = json.loads((root / SS.BUILD_INFO).read_text())
    manifest = json.loads((SS.current_folder(root) / B.MANIFEST_FILE).read_text())
    texts = real_queries(count=queries, seed=seed)
    svc = start_service(home=root.parent, log_path=out_dir / "service.log", env=service_env)
    try:
        ready = proc_status_mb(svc.proc.pid)
        tallies = asyncio.run(measure(base_url=svc.base_url, queries=texts, concurrency=concurrency,
                                      progress=progress, server_pid=svc.proc.pid))
        status = proc_status_mb(svc.proc.pid)
        load = None
        if load_seconds > 0:
            load = asyncio.run(soak(base_url=svc.base_url, queries=real_queries(count=5000, seed=seed + 1),
                                    clients=clients, seconds=load_seconds,
                                    layout=store.StoreLayout(root) if swap else None,
                                    progress=progress, server_pid=svc.proc.pid))
            status_after = proc_status_mb(svc.proc.pid)
            load["rss_mb"] = round(status_after.get("VmHWM", 0.0), 1)
    finally:
        svc.stop()
    result: dict[str, Any] = {
        "tracks": n_tracks,
        "full": tallies["full"].summary(),
        "baseline": tallies["baseline"].summary(),
        "rss_mb": round(max(status.get("VmHWM", 0.0), svc.rss_peak_mb), 1),
        "rss_end_mb": round(status.get("VmRSS", 0.0), 1),
        "rss_ready_mb": round(ready.get("VmRSS", 0.0), 1),
        "build_s": round(float(build_info["build_s"]), 1),
        "store_reused": build_s < float(build_info["build_s"]) * 0.5,
        "queries": queries,
        "concurrency": concurrency,
        "store": {"root": str(root), "version": manifest["version"], "indices": manifest["indices"],
                  "vectors_published": manifest.get("vectors_published", True)},
        "service_env": {"MOODSCAPE_CACHE_SIZE": "0", **(service_env or {})},
        "cpus": os.cpu_count(),
    }
    if load is not None:
        result["load"] = load
    store.write_json(result, out_dir / "bench.json")
    return result
