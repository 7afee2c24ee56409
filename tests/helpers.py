"""Small helpers shared by test modules (brute-force references, not code under test)."""

import re
from http.server import BaseHTTPRequestHandler

from pipelines import store
from pipelines.mood.lexicon import resolve_open_file


def genres_of(value: str | None) -> set[str]:
    """The lower-cased genres of a genre cell ("a|b", "a, b", "a/b"), for brute-force filter checks."""
    return {g.strip().lower() for g in re.split(r"[,|;/]", value or "") if g.strip()}


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
