#!/usr/bin/env python
"""Side-by-side service benchmark in one run: an earlier commit ("before") vs the working tree ("after").

    .venv/bin/python scripts/bench_before_after.py BEFORE_COMMIT [--tracks N] [--concurrency 2,3,4]
        [--before-cache DIR] [--after-cache DIR]

Each side serves its own synthetic store (built or reused by that side's ``moodscape bench``, so
index-layout changes are compared with the layout each side publishes; give the sides different
caches when the layout changed). Both services are started the same way (``moodscape serve`` from
that side's checkout) and driven by the *current* load generator (:mod:`bench.service`,
real query texts over HTTP on loopback), one after the other, at each concurrency: full and
baseline alternate in blocks. Prints JSON: per side, ready/peak RSS and per concurrency the
full/baseline latency, QPS and client/server CPU per request.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import server  # noqa: E402
from bench import service as B  # noqa: E402

SYNTH_ARGS = ["--prototypes", "2000", "--audio-clips", "42", "--mood-model-rows", "1000"]


def ensure_store(*, checkout: Path, tracks: int, cache: Path, work: Path) -> Path:
    """Build or reuse that side's synthetic store with its own ``moodscape bench``; its root."""
    out = work / f"build-{checkout.name}"
    cmd = [sys.executable, "-m", "moodscape.cli", "bench", "--tracks", str(tracks), "--queries", "8",
           "--concurrency", "1", "--quiet", "--cache", str(cache), "--out", str(out), *SYNTH_ARGS]
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    subprocess.run(cmd, cwd=checkout, env=env, check=True, stdout=subprocess.DEVNULL)
    return Path(json.loads((out / "bench.json").read_text())["store"]["root"])


def serve(*, checkout: Path, root: Path, log: Path) -> server.Service:
    """``moodscape serve`` from ``checkout`` over ``root`` (response cache off), ready."""
    return server.start_service(home=root.parent, log_path=log, env={"PYTHONPATH": str(checkout)}, cwd=checkout)


def measure_side(*, checkout: Path, root: Path, concurrency: list[int], queries: list[str], log: Path) -> dict:
    svc = serve(checkout=checkout, root=root, log=log)
    out: dict = {"store": str(root), "rss_ready_mb": round(server.proc_status_mb(svc.proc.pid).get("VmRSS", 0.0), 1)}
    try:
        for c in concurrency:
            tallies = asyncio.run(B.measure(base_url=svc.base_url, queries=queries, concurrency=c,
                                            progress=False, server_pid=svc.proc.pid))
            out[f"c{c}"] = {mode: t.summary() for mode, t in tallies.items()}
        out["rss_peak_mb"] = round(max(server.proc_status_mb(svc.proc.pid).get("VmHWM", 0.0), svc.rss_peak_mb), 1)
    finally:
        svc.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", help="commit to compare against the working tree")
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--concurrency", default="2,4", help="comma-separated client counts")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--before-cache", type=Path, default=None, help="synthetic store cache of the before side")
    ap.add_argument("--after-cache", type=Path, default=None, help="synthetic store cache of the after side")
    args = ap.parse_args()
    default_cache = Path(os.environ.get("MOODSCAPE_SYNTH_CACHE") or REPO / ".moodscape" / "synth")
    concurrency = [int(x) for x in args.concurrency.split(",") if x.strip()]
    queries = B.real_queries(count=args.queries)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        before = work / "before"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(before), args.before],
                       check=True)
        try:
            result = {}
            for name, checkout, cache in (("before", before, args.before_cache or default_cache),
                                          ("after", REPO, args.after_cache or default_cache)):
                root = ensure_store(checkout=checkout, tracks=args.tracks, cache=cache, work=work)
                result[name] = measure_side(checkout=checkout, root=root, concurrency=concurrency,
                                            queries=queries, log=work / f"{name}.log")
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(before)], check=False)
    print(json.dumps({"tracks": args.tracks, "before_commit": args.before, **result}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
