"""How a link's final answer becomes a status: every rule against a live loopback server, the
classification of single responses, and what counts as the same resource after a redirect."""

from dataclasses import replace

import httpx
import pytest

from pipelines.heal.links.checker import classify, same_resource
from pipelines.heal.links.run import check_links
from pipelines.schema import (
    BLOCKED,
    DEAD,
    FINAL_URL,
    HTTP_CODE,
    MOVED,
    REASON,
    REQUIRES_AUTH,
    UNKNOWN,
    URL_STATUS,
    VALID,
)
from tests.heal.links.conftest import FAST, rows_by_track
from tests.net.loopback import LoopbackServer, RecordingBackend

EXPECTED = [
    # path, status, reason, http_code, final path (None: not checked here)
    ("/ok", VALID, "ok", 200, None),
    ("/head405", VALID, "ok", 200, None),
    ("/drop-head", VALID, "ok", 200, None),
    ("/moved", MOVED, "redirected", 200, "/ok"),
    ("/slash", VALID, "ok", 200, "/slash/"),
    ("/loop-a", UNKNOWN, "redirect_loop", 302, "/loop-a"),
    ("/chain/0", UNKNOWN, "too_many_redirects", 302, "/chain/6"),
    ("/no-location", UNKNOWN, "redirect_without_location", 302, None),
    ("/gone404", DEAD, "http_404", 404, None),
    ("/gone410", DEAD, "http_410", 410, None),
    ("/auth401", REQUIRES_AUTH, "http_401", 401, None),
    ("/forbidden", REQUIRES_AUTH, "http_403", 403, None),
    ("/cdn403", UNKNOWN, "blocked_by_cdn", 403, None),
    ("/captcha403", UNKNOWN, "blocked_by_cdn", 403, None),
    ("/rate-once", VALID, "ok", 200, None),
    ("/err500", UNKNOWN, "http_5xx", 500, None),
    ("/to-private", BLOCKED, "private", 302, None),
    ("/to-metadata", BLOCKED, "metadata", 302, None),
    ("/to-ftp", BLOCKED, "scheme_not_allowed", 302, None),
]


def test_status_rules_against_live_server(server: LoopbackServer) -> None:
    backend = RecordingBackend()
    items = [(path, server.base + path) for path, *_ in EXPECTED]
    rows = rows_by_track(check_links(items, config=FAST, network_backend=backend))
    for path, status, reason, code, final in EXPECTED:
        row = rows[path]
        assert (row[URL_STATUS], row[REASON], row[HTTP_CODE]) == (status, reason, code), path
        if final is not None:
            assert row[FINAL_URL] == server.base + final, path
    assert rows["/to-private"][FINAL_URL] == "http://10.0.0.1/"
    assert rows["/to-metadata"][FINAL_URL] == "http://169.254.169.254/latest/meta-data/"
    # Redirects to 10.0.0.1 / 169.254.169.254 / ftp were refused before any connection.
    assert backend.connects and all(host == "127.0.0.1" for host, _ in backend.connects)
    # the redirect chain stopped at max_hops: /chain/0 .. /chain/5 fetched, /chain/6 never
    chain = sorted(p for p in server.paths() if p.startswith("/chain/"))
    assert "/chain/5" in chain and "/chain/6" not in chain
    # the 429 was retried once after Retry-After: 0
    assert server.paths().count("/rate-once") == 2


def test_403_reads_body_prefix_for_captcha(server: LoopbackServer) -> None:
    rows = check_links([("a", server.base + "/captcha403")], config=replace(FAST, max_body_bytes=4096))
    assert rows[REASON].to_list() == ["blocked_by_cdn"]
    assert server.methods() == ["HEAD", "GET"]
    # with no body read allowed, the captcha page is indistinguishable from a plain 403
    rows = check_links([("a", server.base + "/captcha403")], config=replace(FAST, max_body_bytes=0))
    assert rows[REASON].to_list() == ["http_403"]


@pytest.mark.parametrize(
    ("code", "headers", "body", "same", "status", "reason"),
    [
        (200, {}, b"", True, VALID, "ok"),
        (204, {}, b"", False, MOVED, "redirected"),
        (407, {}, b"", True, REQUIRES_AUTH, "http_407"),
        (403, {"server": "cloudflare"}, b"", True, UNKNOWN, "blocked_by_cdn"),
        (403, {}, b"Are you a robot?", True, UNKNOWN, "blocked_by_cdn"),
        (403, {"server": "nginx"}, b"forbidden", True, REQUIRES_AUTH, "http_403"),
        (410, {}, b"", True, DEAD, "http_410"),
        (429, {}, b"", True, UNKNOWN, "rate_limited"),
        (503, {}, b"", True, UNKNOWN, "http_5xx"),
        (418, {}, b"", True, UNKNOWN, "http_418"),
    ],
)
def test_classify_one_response(code: int, headers: dict[str, str], body: bytes, same: bool,
                               status: str, reason: str) -> None:
    out = classify(code=code, headers=httpx.Headers(headers), body=body, same=same, final_url="https://x.org/t")
    assert (out.url_status, out.reason, out.http_code, out.final_url) == (status, reason, code, "https://x.org/t")


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("http://x.com/t", "https://x.com/t", True),
        ("http://x.com/t", "https://x.com/t/", True),
        ("http://x.com:80/t", "http://X.COM/t", True),
        ("https://x.com/t", "http://x.com/t", False),  # downgrade is not the same resource
        ("http://x.com/t", "http://x.com/u", False),
        ("http://x.com/t?a=1", "http://x.com/t?a=2", False),
        ("http://x.com/t", "http://www.x.com/t", False),
        ("http://x.com:8080/t", "https://x.com:8080/t", True),
        ("http://x.com:8080/t", "http://x.com:8081/t", False),
        ("http://127.0.0.1:8080/t", "https://127.0.0.1:8080/t", True),  # scheme only, explicit port kept
        ("http://x.com/t", "https://x.com:443/t", True),  # explicit default port
        ("http://x.com:80/t", "https://x.com/t/", True),
        ("http://x.com/t", "https://x.com:8443/t", False),  # scheme and port change
        ("http://x.com:8080/t", "https://x.com/t", False),
        ("http://x.com/T", "https://x.com/t", False),  # paths are case-sensitive
        ("http://x.com/t", "https://x.com/t?a=1", False),
    ],
)
def test_same_resource(a: str, b: str, same: bool) -> None:
    assert same_resource(httpx.URL(a), httpx.URL(b)) is same
