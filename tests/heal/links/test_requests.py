"""One hop's requests: HEAD first and when GET takes over, how much of a body is read, and what
a request that gets no answer becomes (timeout, refused connection, unresolvable name).

Where a wrong behaviour would only be slower, the run gets a deadline it cannot meet that way:
the row then reads "deadline" instead of the expected outcome.
"""

import socket
from dataclasses import replace

from pipelines.heal.links.run import check_links
from pipelines.schema import HTTP_CODE, REASON, UNKNOWN, URL_STATUS, VALID
from tests.heal.links.conftest import FAST, STALL_S, one
from tests.net.loopback import LoopbackServer, RecordingBackend

# Generous per-request timeouts under a run deadline well below STALL_S: a row ends "deadline"
# exactly when the checker waited for a stalled server instead of moving on.
PATIENT = replace(FAST, read_timeout_s=30.0, total_timeout_s=30.0, deadline_s=STALL_S / 2)


def test_head_fallbacks_to_get(server: LoopbackServer) -> None:
    frame = check_links([("a", server.base + "/drop-head")], config=FAST)
    assert frame[URL_STATUS].to_list() == [VALID]
    assert server.methods() == ["HEAD", "GET"]  # HEAD dropped, GET answered
    with server.lock:
        server.hits.clear()
    frame = check_links([("a", server.base + "/head405"), ("b", server.base + "/ok")],
                        config=replace(FAST, concurrency=1))
    assert frame[URL_STATUS].to_list() == [VALID, VALID]
    # 405 to HEAD → GET; the host is then remembered as HEAD-less and gets GET directly
    assert [(h[0], h[1]) for h in server.hits] == [("HEAD", "/head405"), ("GET", "/head405"), ("GET", "/ok")]


def test_head_that_never_answers_falls_back_to_get_after_the_read_timeout(server: LoopbackServer) -> None:
    row = one(server.base + "/hang-head", config=replace(PATIENT, read_timeout_s=0.3))
    assert (row[URL_STATUS], row[REASON], row[HTTP_CODE]) == (VALID, "ok", 200)
    assert server.methods() == ["HEAD", "GET"]


def test_stalled_body_reads_only_a_prefix(server: LoopbackServer) -> None:
    row = one(server.base + "/head405-stalled-body", config=replace(PATIENT, max_body_bytes=4096))
    assert (row[URL_STATUS], row[REASON], row[HTTP_CODE]) == (VALID, "ok", 200)  # not "deadline"
    assert server.methods() == ["HEAD", "GET"]


def test_stalled_403_body_prefix_still_detects_the_challenge(server: LoopbackServer) -> None:
    row = one(server.base + "/captcha-stalled", config=replace(PATIENT, max_body_bytes=2048))
    assert (row[URL_STATUS], row[REASON], row[HTTP_CODE]) == (UNKNOWN, "blocked_by_cdn", 403)


def test_stalled_short_body_after_200_head_is_not_fetched(server: LoopbackServer) -> None:
    row = one(server.base + "/ok-stalled-short-body", config=PATIENT)
    assert (row[URL_STATUS], row[HTTP_CODE]) == (VALID, 200)
    assert server.methods() == ["HEAD"]  # HEAD answered 200: no GET, the stalled body never touched


def test_get_200_whose_short_body_stalls(server: LoopbackServer) -> None:
    """GET answered 200 but the body stalls below the prefix limit: the status line is what counts
    (the read timeout ends the body, not the exchange's total budget, which would mean "timeout")."""
    row = one(server.base + "/ok-stalled-short-body?head=405")
    assert server.methods() == ["HEAD", "GET"]
    assert (row[URL_STATUS], row[REASON], row[HTTP_CODE]) == (VALID, "ok", 200)


def test_slow_response_times_out(server: LoopbackServer) -> None:
    row = one(server.base + "/slow")  # answers after 1.5 s; read timeout 0.3 s
    assert (row[URL_STATUS], row[REASON], row[HTTP_CODE]) == (UNKNOWN, "timeout", None)
    assert server.methods() == ["HEAD", "GET"]  # HEAD timed out, GET was tried and timed out too


def test_connection_refused_is_connect_error() -> None:
    # a loopback port nobody listens on (bound, then closed)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    row = one(f"http://127.0.0.1:{port}/x")
    assert (row[URL_STATUS], row[REASON]) == (UNKNOWN, "connect_error")


def test_unresolvable_host_is_dns_error() -> None:
    # a 64-character label cannot even be encoded for the resolver: fails locally, no DNS packet
    backend = RecordingBackend()
    row = one("http://" + "a" * 64 + ".example/t", network_backend=backend)
    assert (row[URL_STATUS], row[REASON]) == (UNKNOWN, "dns_error")
    assert backend.connects == []
