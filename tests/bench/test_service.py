"""``moodscape bench`` end to end over real HTTP (loopback), and the load generator's block runner
against a loopback server.

The synthetic store (``tests.bench.test_synthstore.PARAMS``) and its real inputs are cached in
``<MOODSCAPE_HOME>/cache/bench-test``, so only the first run on a machine pays for them.
"""

import asyncio
import json
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer

import pytest

from bench import service
from bench.httpload import HttpPool
from pipelines import store
from tests.bench.test_synthstore import SMALL, N
from tests.helpers import LoopbackHandler


@pytest.fixture(scope="module")
def bench_result(tmp_path_factory) -> dict:
    synth_cache = store.home() / "cache" / "bench-test"
    out = tmp_path_factory.mktemp("bench")
    cmd = [
        sys.executable, "-m", "moodscape.cli", "bench", "--tracks", str(N), "--queries", "24",
        "--concurrency", "4", "--out", str(out), "--cache", str(synth_cache), *SMALL,
        "--load-seconds", "4", "--clients", "8", "--swap", "--quiet",
    ]
    proc = subprocess.run(cmd, cwd=store.REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads((out / "bench.json").read_text())


def test_bench_json_over_real_http(bench_result: dict) -> None:
    r = bench_result
    assert r["tracks"] == N
    for mode in ("full", "baseline"):
        m = r[mode]
        assert set(m) >= {"p50_ms", "p95_ms", "p99_ms", "qps", "errors"}
        assert m["errors"] == 0, m
        assert m["requests"] == 24
        assert m["p50_ms"] <= m["p95_ms"] <= m["p99_ms"]
    assert isinstance(r["rss_mb"], float) and r["rss_mb"] > 100  # torch + MiniLM alone exceed this
    assert isinstance(r["build_s"], float)
    load = r["load"]
    assert load["errors"] == 0 and load["requests"] > 0, load
    assert load["swap"]["new"] != load["swap"]["old"]


class _RecommendHandler(LoopbackHandler):
    """POST /recommend → ``{"results": [...]}``, except for the query "bad" (no results list)."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        out = {"results": [{"q": body["query"]}]} if body["query"] != "bad" else {"detail": "nope"}
        self.reply(200, body=json.dumps(out).encode(), ctype="application/json")


def test_run_block_counts_a_200_without_results_as_an_error() -> None:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _RecommendHandler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    tally = service.Tally()

    async def go() -> None:
        async with HttpPool(base_url=f"http://127.0.0.1:{srv.server_address[1]}", size=2, timeout_s=5) as pool:
            await service.run_block(client=pool, queries=["a", "bad", "c", "d"], mode="full",
                                    concurrency=2, tally=tally)

    try:
        asyncio.run(go())
    finally:
        srv.shutdown()
        srv.server_close()
    s = tally.summary()
    assert s["requests"] == 4 and s["errors"] == 1 and len(tally.latencies_ms) == 3
    assert tally.error_samples and tally.error_samples[0].startswith("200:")
