"""Loopback HTTP hosts that answer after a fixed latency and count what each of them sees.

`HostFarm` binds one asyncio HTTP/1.1 server (keep-alive) per loopback address 127.0.0.<first+i>;
every request is answered 200 (or ``status``/``headers``/``body``) after ``latency_s``. Each host
counts its requests, the most it had in flight at once, and its closest pair of request starts.
Run in-process on a thread (`HostFarm.start`) or as ``python -m bench.linkfarm`` (the link-check
benchmark): one JSON line with the bases when ready, then ``stats`` / ``reset`` on stdin.
"""

import argparse
import asyncio
import json
import sys
import threading
import time
from dataclasses import dataclass, field

_MAX_HEADER_BYTES = 64 * 1024


@dataclass
class HostStats:
    """What one host saw: requests, peak concurrency, closest start gap, first start / last end."""

    requests: int = 0
    inflight: int = 0
    max_inflight: int = 0
    min_gap_s: float | None = None
    first_start: float | None = None
    last_start: float | None = None
    last_end: float | None = None
    paths: list[str] = field(default_factory=list)

    def started(self, *, path: str, now: float) -> None:
        self.requests += 1
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        if self.last_start is not None:
            gap = now - self.last_start
            self.min_gap_s = gap if self.min_gap_s is None else min(self.min_gap_s, gap)
        self.first_start = now if self.first_start is None else self.first_start
        self.last_start = now
        self.paths.append(path)

    def ended(self, *, now: float) -> None:
        self.inflight -= 1
        self.last_end = now

    def summary(self) -> dict:
        return {"requests": self.requests, "max_inflight": self.max_inflight, "min_gap_s": self.min_gap_s,
                "first_start": self.first_start, "last_end": self.last_end}


class HostFarm:
    """``hosts`` loopback HTTP servers (127.0.0.<first_octet + i>, ephemeral ports)."""

    def __init__(self, *, hosts: int, latency_s: float, first_octet: int = 10, status: int = 200,
                 headers: dict[str, str] | None = None, body: bytes = b"ok") -> None:
        if not 1 <= hosts <= 254 - first_octet:
            raise ValueError(f"hosts must be in 1..{254 - first_octet}")
        self.n_hosts = hosts
        self.latency_s = latency_s
        self.first_octet = first_octet
        self.status = status
        self.headers = dict(headers or {})
        self.body = body
        self.stats: list[HostStats] = [HostStats() for _ in range(hosts)]
        self.bases: list[str] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def open(self) -> list[str]:
        """Bind every host on the running loop; returns their base URLs (``http://ip:port``)."""
        for i in range(self.n_hosts):
            ip = f"127.0.0.{self.first_octet + i}"
            server = await asyncio.start_server(
                lambda r, w, i=i: self._serve(i, r, w), host=ip, port=0, backlog=512)
            self._servers.append(server)
            self.bases.append(f"http://{ip}:{server.sockets[0].getsockname()[1]}")
        return self.bases

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    def snapshot(self) -> list[dict]:
        """Per-host summaries (thread-safe)."""
        with self._lock:
            return [s.summary() for s in self.stats]

    def paths(self, host: int) -> list[str]:
        with self._lock:
            return list(self.stats[host].paths)

    def reset(self) -> None:
        with self._lock:
            self.stats = [HostStats() for _ in range(self.n_hosts)]

    def _head(self, *, status: int, length: int) -> bytes:
        lines = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Status'}", f"Content-Length: {length}",
                 "Content-Type: text/plain", *(f"{k}: {v}" for k, v in self.headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _serve(self, host: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    raw = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                if len(raw) > _MAX_HEADER_BYTES:
                    return
                request_line = raw.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
                method = request_line[0] if request_line else ""
                path = request_line[1] if len(request_line) > 1 else "/"
                with self._lock:
                    stats = self.stats[host]
                    stats.started(path=path, now=time.monotonic())
                try:
                    await asyncio.sleep(self.latency_s)
                    payload = b"" if method == "HEAD" else self.body
                    writer.write(self._head(status=self.status, length=len(self.body)) + payload)
                    await writer.drain()
                finally:
                    with self._lock:
                        stats.ended(now=time.monotonic())
                if b"connection: close" in raw.lower():
                    return
        finally:
            writer.close()

    # --- on a background thread (tests) -------------------------------------------------------

    def start(self) -> "HostFarm":
        """Serve on a daemon thread with its own event loop; returns once every host is bound."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.open())
            except BaseException as exc:  # bind failure: report it to the caller
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.close())
            loop.close()

        self._thread = threading.Thread(target=run, name="host-farm", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> "HostFarm":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _serve_stdio(farm: HostFarm) -> None:
    """Print the bases as one JSON line; answer ``stats`` (per-host summaries) and ``reset`` lines."""
    await farm.open()
    print(json.dumps({"bases": farm.bases}), flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        command = line.strip()
        if not line or command == "quit":
            break
        if command == "stats":
            print(json.dumps({"hosts": farm.snapshot()}), flush=True)
        elif command == "reset":
            farm.reset()
            print(json.dumps({"reset": True}), flush=True)
    await farm.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.linkfarm", description=__doc__)
    parser.add_argument("--hosts", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds before each answer")
    args = parser.parse_args(argv)
    asyncio.run(_serve_stdio(HostFarm(hosts=args.hosts, latency_s=args.latency)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
