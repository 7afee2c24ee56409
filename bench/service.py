"""End-to-end HTTP benchmark of the real service over a synthetic store (``moodscape bench``).

The service is started as a subprocess (``python -m moodscape.cli serve --host 127.0.0.1``) with
``MOODSCAPE_HOME`` pointing at the synthetic store and its response cache disabled
(``MOODSCAPE_CACHE_SIZE=0``). Real query texts (Deezer music-NER requests, MTG-Jamendo mood/theme
tags, MusicCaps aspect lists) are sent over HTTP by a lean asyncio HTTP/1.1 load generator
(:mod:`bench.httpload`, keep-alive pool) with ``concurrency`` requests in flight; on a small
machine the client shares the cores with the service, so its CPU cost per request is kept low and
reported. Full and baseline run in the same process, interleaved in alternating blocks after a
warm-up, so both see the same machine state.

Output ``bench.json``::

    {"tracks", "full": {"p50_ms","p95_ms","p99_ms","qps","errors","requests",
                        "client_cpu_ms_per_request" (time.process_time of this process over the
                        mode's measured blocks / requests), "server_cpu_ms_per_request" (service
                        utime+stime from /proc/<pid>/stat over the same blocks / requests)},
     "baseline": {...},
     "rss_mb" (peak VmRSS = VmHWM of the service), "rss_end_mb", "build_s", "store": {...},
     "load": {...} (optional soak run with a hot swap)}
"""

import ast
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import msgspec
import numpy as np
import polars as pl

from pipelines import store
from bench import synthstore as SS
from bench.httpload import HttpPool

READY_TIMEOUT_S = 900.0
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


# ------------------------------------------------------------------------------------ service
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status_mb(pid: int) -> dict[str, float]:
    """VmRSS / VmHWM of ``pid`` in MiB (from /proc/<pid>/status)."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) / 1024.0
    except FileNotFoundError:
        pass
    return out


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (utime + stime, all threads) ``pid`` has used so far, from /proc/<pid>/stat; 0.0 if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = raw[raw.rindex(")") + 2:].split()  # comm may contain spaces; fields after it start at #3 (state)
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # #14 utime, #15 stime


@dataclass
class Service:
    """A running ``moodscape serve`` subprocess."""

    proc: subprocess.Popen
    base_url: str
    log_path: Path
    rss_peak_mb: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample_rss(self, interval_s: float = 0.25) -> None:
        def loop() -> None:
            while not self._stop.is_set() and self.proc.poll() is None:
                self.rss_peak_mb = max(self.rss_peak_mb, proc_status_mb(self.proc.pid).get("VmRSS", 0.0))
                self._stop.wait(interval_s)

        threading.Thread(target=loop, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_service(*, home: Path, log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> Service:
    """Start the real service on loopback over ``<home>/store`` and wait for /health.

    ``cwd``: the checkout whose ``moodscape serve`` runs (default this one; give ``PYTHONPATH`` in
    ``env`` too when it is another).
    """
    import httpx

    port = _free_port()
    full_env = {**os.environ, "MOODSCAPE_HOME": str(home), "MOODSCAPE_CACHE_SIZE": "0",
                "NUMBA_CACHE_DIR": str(store.REPO_ROOT / ".numba_cache"), **(env or {})}
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moodscape.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=str(cwd or store.REPO_ROOT), start_new_session=True,
    )
    svc = Service(proc=proc, base_url=f"http://127.0.0.1:{port}", log_path=log_path)
    svc.sample_rss()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited with {proc.returncode}; see {log_path}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{svc.base_url}/health", timeout=2.0).status_code == 200:
                return svc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    svc.stop()
    raise TimeoutError(f"service not ready after {READY_TIMEOUT_S}s; see {log_path}")


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
    except Exception as exc:  # noqa: BLE001 — every failure counts as an error
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


def hardlink_version(*, store_root: Path, source_version: str, new_version: str) -> Path:
    """A new version folder whose files are hard links of ``source_version`` (manifest rewritten)."""
    src = store_root / "versions" / source_version
    tmp = store_root / "versions" / f".{new_version}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in src.iterdir():
        if f.name == "manifest.json":
            m = json.loads(f.read_text())
            m["version"] = new_version
            (tmp / f.name).write_text(json.dumps(m, indent=2, sort_keys=True))
        else:
            os.link(f, tmp / f.name)
    dst = store_root / "versions" / new_version
    os.replace(tmp, dst)
    return dst


def switch_current(*, store_root: Path, version: str) -> None:
    with store.atomic_path(store_root / "CURRENT") as tmp:
        tmp.write_text(version + "\n")


async def soak(
    *, base_url: str, queries: list[str], clients: int, seconds: float, store_root: Path | None, progress: bool,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """``clients`` concurrent clients for ``seconds``; with ``store_root``, hot-swap a new version at half time.

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
            await asyncio.to_thread(hardlink_version, store_root=store_root, source_version=old, new_version=new)
            t = time.perf_counter()
            await asyncio.to_thread(switch_current, store_root=store_root, version=new)
            swap.update(old=old, new=new, seen_after_s=None)
            while time.perf_counter() < stop_at:
                await asyncio.sleep(0.25)
                try:
                    if await health_version(client) == new:
                        swap["seen_after_s"] = round(time.perf_counter() - t, 2)
                        return
                except Exception:  # noqa: BLE001
                    pass

        t0 = time.perf_counter()
        jobs = [worker(i) for i in range(clients)] + ([swapper()] if store_root is not None else [])
        with _CpuMeter(tally=tally, server_pid=server_pid):
            await asyncio.gather(*jobs)
        tally.wall_s = time.perf_counter() - t0
    out = {"seconds": seconds, "clients": clients, **tally.summary()}
    if store_root is not None:
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
    """Build/reuse the synthetic store, start the service, measure, write ``out_dir/bench.json``."""
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
    folder = SS.current_folder(root)
    manifest = json.loads((folder / "manifest.json").read_text())
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
                                    clients=clients, seconds=load_seconds, store_root=root if swap else None,
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
