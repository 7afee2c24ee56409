"""Small helpers shared by test modules (brute-force references, not code under test)."""

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from pipelines import schema as S
from pipelines import store
from pipelines.mood.lexicon import resolve_open_file


def genres_of(value: str | None) -> set[str]:
    """The lower-cased genres of a genre cell ("a|b", "a, b", "a/b"), for brute-force filter checks."""
    return {g.strip().lower() for g in re.split(S.GENRE_SPLIT_PATTERN, value or "") if g.strip()}


@contextmanager
def serving_client(*, bundle_dir: Path, mood_adapter: Any, **app_kwargs: Any) -> Iterator[Any]:
    """A Litestar TestClient of the real app serving ``bundle_dir`` with the test mood adapter."""
    from litestar.testing import TestClient

    from pipelines.rank.recommender import Recommender
    from serving.app import create_app

    app = create_app(
        bundle_dir=bundle_dir, recommender_factory=lambda b: Recommender(b, query_mood=mood_adapter), **app_kwargs
    )
    with TestClient(app=app) as client:
        yield client


@contextmanager
def uvicorn_on_loopback(app: Any, *, start_timeout_s: float = 120.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free 127.0.0.1 port; yields its base URL."""
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def result_ids(response: Any) -> list[str]:
    """The track ids of a 200 recommendation response (asserts the status)."""
    assert response.status_code == 200, response.text
    return [t["track_id"] for t in response.json()["results"]]


def have_open_file(relative: str) -> bool:
    """Whether an open-data file (project copy, else the shared copy) exists, for skipif marks."""
    try:
        resolve_open_file(data_dir=store.DATA_DIR, relative=relative)
    except FileNotFoundError:
        return False
    return True


class LoopbackHandler(BaseHTTPRequestHandler):
    """Base of the tests' loopback HTTP handlers: HTTP/1.1, quiet, and one way to answer."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def reply(self, status: int, *, headers: dict[str, str] | None = None, body: bytes = b"",
              ctype: str | None = None) -> None:
        """Status, headers (+ Content-Type ``ctype``), Content-Length, and the body unless HEAD.

        A client that stops reading early (a size cap, a refused type) is expected, not an error.
        """
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


def load_script(name: str) -> Any:
    """``scripts/<name>.py`` imported as a module (the scripts are not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def probe_definitions(expression: str, env: dict[str, str]) -> Any:
    """JSON value of ``expression`` (``defs`` in scope) from ``assets.definitions`` imported in a
    fresh interpreter under ``env`` (the Definitions read the environment once, at import)."""
    import json
    import subprocess
    import sys

    code = f"import json; from assets.definitions import defs; print(json.dumps({expression}))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])



@contextmanager
def moto_s3_endpoint(bucket: str = "moodscape-test") -> Iterator[tuple[str, str]]:
    """A real S3 API on loopback (moto's threaded server, its own port): yields (endpoint URL, bucket)."""
    import os

    import boto3
    from moto.server import ThreadedMotoServer

    keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        yield endpoint, bucket
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def http_on_loopback(handler: type) -> Iterator[str]:
    """Serve ``handler`` (a BaseHTTPRequestHandler class) on a free 127.0.0.1 port in a thread; yields its base URL."""
    import threading
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class RecommendLoad:
    """What :func:`recommend_load` saw: 200s with 10 results per base URL and served version, and failures."""

    outcomes: dict[str, Counter[str]]
    failures: list[str]


@contextmanager
def recommend_load(bases: list[str], *, queries: list[str], threads_per_base: int) -> Iterator[RecommendLoad]:
    """Client threads posting ``/recommend`` to every base URL until the block ends (then joined).

    A non-200, a short result list, a reset connection or a timeout is a failure."""
    import threading

    import httpx

    load = RecommendLoad(outcomes={b: Counter() for b in bases}, failures=[])
    stop, lock = threading.Event(), threading.Lock()

    def hammer(base: str, worker: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as c:
            i = worker
            while not stop.is_set():
                i += 1
                try:
                    r = c.post("/recommend", json={"query": queries[i % len(queries)], "top_k": 10})
                    ok = r.status_code == 200 and len(r.json()["results"]) == 10
                    with lock:
                        if ok:
                            load.outcomes[base][r.json()["metadata"]["store_version"]] += 1
                        else:
                            load.failures.append(f"{base} {r.status_code} {r.text[:200]}")
                except Exception as exc:
                    with lock:
                        load.failures.append(f"{base} {exc!r}")

    workers = [threading.Thread(target=hammer, args=(b, w)) for b in bases for w in range(threads_per_base)]
    for w in workers:
        w.start()
    try:
        yield load
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=60)
