"""Loopback HTTP(S) test servers with routes, and a socket backend that records every connect.

One port speaks both http and https (a connection opening with a TLS ClientHello is served over
TLS), so scheme-only redirects can be tested for real. Only loopback addresses are ever bound.
"""

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpcore

from tests.helpers import LoopbackHandler

Route = Callable[["RouteHandler"], None]


class LoopbackServer(ThreadingHTTPServer):
    """Serves ``routes`` (path without query → handler) on ``host``; records every request."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, *, host: str, routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> None:
        super().__init__((host, 0), RouteHandler)
        self.routes = routes
        self.tls = tls
        self.lock = threading.Lock()
        self.release = threading.Event()  # set at shutdown: stalled handlers stop waiting
        self.hits: list[tuple[str, str, str, bool]] = []  # method, path, Host header, over TLS
        self.counters: dict[str, int] = {}  # path (with query) → requests so far
        self.inflight = 0
        self.max_inflight = 0

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def base(self) -> str:
        return f"http://{self.server_address[0]}:{self.port}"

    def paths(self) -> list[str]:
        with self.lock:
            return [h[1] for h in self.hits]

    def methods(self) -> list[str]:
        with self.lock:
            return [h[0] for h in self.hits]

    def finish_request(self, request, client_address) -> None:
        serve_maybe_tls(self, request, client_address, self.tls)


class RouteHandler(LoopbackHandler):
    """Records the request, then answers with the server's route for its path (404 when none)."""

    server: LoopbackServer

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    @property
    def over_tls(self) -> bool:
        return isinstance(self.connection, ssl.SSLSocket)

    def count(self) -> int:
        """How many requests this path (with query) has had, this one included."""
        with self.server.lock:
            return self.server.counters[self.path]

    def stall(self, seconds: float) -> None:
        """Wait ``seconds`` or until the server shuts down."""
        self.server.release.wait(seconds)

    def _dispatch(self) -> None:
        srv = self.server
        with srv.lock:
            srv.hits.append((self.command, self.path, self.headers.get("Host", ""), self.over_tls))
            srv.counters[self.path] = srv.counters.get(self.path, 0) + 1
        route = srv.routes.get(self.path.split("?", 1)[0])
        if route is None:
            self.reply(404)
        else:
            route(self)


@contextmanager
def serving(*, routes: dict[str, Route], host: str = "127.0.0.1",
            tls: ssl.SSLContext | None = None) -> Iterator[LoopbackServer]:
    """A running `LoopbackServer`, shut down (stalled handlers released) on exit."""
    srv = LoopbackServer(host=host, routes=routes, tls=tls)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()


def serve_maybe_tls(server, request, client_address, tls_context: ssl.SSLContext | None) -> None:
    """Serve one connection as https when it opens with a TLS ClientHello (byte 0x16), else http."""
    if tls_context is not None:
        request.settimeout(5)
        try:
            first = request.recv(1, socket.MSG_PEEK)
        except OSError:
            return
        if first == b"\x16":
            try:
                request = tls_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return  # client refused our certificate
            try:
                server.RequestHandlerClass(request, client_address, server)
            finally:
                request.close()
            return
    server.RequestHandlerClass(request, client_address, server)


def make_cert(folder: Path) -> tuple[Path, Path] | None:
    """A self-signed (cert, key) for ``localhost`` and 127.0.0.1, or None without the openssl CLI."""
    if shutil.which("openssl") is None:
        return None
    cert, key = folder / "cert.pem", folder / "key.pem"
    cmd = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ]
    done = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
    return (cert, key) if done.returncode == 0 else None


def server_tls(cert: tuple[Path, Path] | None) -> ssl.SSLContext | None:
    """A server-side TLS context for ``cert`` (None when there is no certificate)."""
    if cert is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile=str(cert[0]), keyfile=str(cert[1]))
    return ctx


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Delegates to httpcore's anyio backend and records every (host, port) it is asked to connect to."""

    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.connects: list[tuple[str, int]] = []

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        self.connects.append((host, port))
        return await self.inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options,
        )

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise AssertionError("no unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)
