"""Following redirects by hand: relative Location headers, trailing-slash and http→https moves
that keep the resource (VALID) and those that do not (MOVED), over real TLS on loopback."""

from dataclasses import replace
from pathlib import Path

import pytest

from pipelines.heal.links.run import check_links
from pipelines.schema import FINAL_URL, HTTP_CODE, MOVED, REASON, UNKNOWN, URL_STATUS, VALID
from tests.heal.links.conftest import FAST, one
from tests.net.loopback import LoopbackServer, RecordingBackend


@pytest.mark.parametrize(
    ("path", "status", "reason", "final_path", "fetched"),
    [
        ("/rel/a/b", MOVED, "redirected", "/rel/d?x=1", ["/rel/a/b", "/rel/c", "/rel/d?x=1"]),
        ("/rel/query", MOVED, "redirected", "/rel/query?page=2", ["/rel/query", "/rel/query?page=2"]),
        ("/rel/slash", VALID, "ok", "/rel/slash/", ["/rel/slash", "/rel/slash/"]),
        ("/rel/fragment", MOVED, "redirected", "/ok#t=30", ["/rel/fragment", "/ok"]),
    ],
)
def test_relative_location_headers(server: LoopbackServer, path: str, status: str, reason: str,
                                   final_path: str, fetched: list[str]) -> None:
    row = one(server.base + path)
    assert (row[URL_STATUS], row[REASON], row[HTTP_CODE]) == (status, reason, 200)
    assert row[FINAL_URL] == server.base + final_path
    assert server.paths() == fetched  # every hop went to this server, resolved as expected


def test_scheme_only_301_to_https_on_ip_literal_is_valid(server: LoopbackServer,
                                                         cert: tuple[Path, Path] | None) -> None:
    if cert is None:
        pytest.skip("openssl CLI not available to make a test certificate")
    row = one(server.base + "/upgrade", config=replace(FAST, ca_file=str(cert[0])))
    assert (row[URL_STATUS], row[REASON], row[HTTP_CODE]) == (VALID, "ok", 200)
    assert row[FINAL_URL] == f"https://127.0.0.1:{server.port}/upgrade"
    assert [h[3] for h in server.hits] == [False, True]  # first hop plain HTTP, final answer over TLS


def test_https_upgrade_by_name_is_valid_and_needs_a_trusted_certificate(
    server: LoopbackServer, cert: tuple[Path, Path] | None,
) -> None:
    if cert is None:
        pytest.skip("openssl CLI not available to make a test certificate")
    backend = RecordingBackend()
    cfg = replace(FAST, allow_hosts=frozenset({"localhost"}), ca_file=str(cert[0]))
    row = one(f"http://localhost:{server.port}/upgrade", config=cfg, network_backend=backend)
    assert (row[URL_STATUS], row[REASON], row[FINAL_URL]) == (VALID, "ok", f"https://localhost:{server.port}/upgrade")
    assert server.hits[-1][3] is True  # the final answer came over TLS
    assert all(h in ("127.0.0.1", "::1") for h, _ in backend.connects)
    # without trusting the test CA the same https URL fails certificate verification (SNI = name)
    frame = check_links([("a", f"https://localhost:{server.port}/ok")], config=replace(cfg, ca_file=None))
    assert (frame[URL_STATUS][0], frame[REASON][0]) == (UNKNOWN, "tls_error")
