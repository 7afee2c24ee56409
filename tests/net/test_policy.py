"""Network policy: address classification, inet_aton host spellings, URL checks, resolution.

Classification only: nothing here connects anywhere. The only resolution is of `localhost` and of
IP literals (no DNS traffic).
"""

import asyncio
import ipaddress

import pytest

from pipelines.net.policy import (
    DNSResolutionError,
    NetworkPolicy,
    PolicyViolation,
    classify_address,
    parse_host_literal,
)


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("10.0.0.1", "private"),
        ("10.255.255.255", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("169.254.169.254", "metadata"),
        ("169.254.10.1", "link_local"),
        ("100.64.0.1", "cgnat"),
        ("100.127.255.255", "cgnat"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("192.0.2.5", "reserved"),
        ("198.18.0.1", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fc00::1", "ula"),
        ("fd12:3456::1", "ula"),
        ("fe80::1", "link_local"),
        ("fe80::1%eth0", "link_local"),
        ("ff02::1", "multicast"),
        ("fec0::1", "reserved"),
        ("2001:db8::1", "reserved"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::ffff:8.8.8.8", "ipv4_mapped"),
        ("::127.0.0.1", "reserved"),  # deprecated IPv4-compatible form
        ("2002:7f00:1::1", "loopback"),  # 6to4 embedding 127.0.0.1
        ("2002:c0a8:101::1", "private"),  # 6to4 embedding 192.168.1.1
        ("64:ff9b::a00:1", "private"),  # NAT64 embedding 10.0.0.1
        ("64:ff9b::7f00:1", "loopback"),
        ("fd00:ec2::254", "metadata"),
    ],
)
def test_non_public_addresses_are_classified(ip: str, reason: str) -> None:
    assert classify_address(ip) == reason


@pytest.mark.parametrize(
    "ip",
    ["8.8.8.8", "1.1.1.1", "172.32.0.1", "172.15.255.255", "100.128.0.1", "151.101.1.140",
     "2606:4700:4700::1111", "2001:4860:4860::8888", "64:ff9b::808:808", "2002:808:808::1"],
)
def test_public_addresses_are_none(ip: str) -> None:
    assert classify_address(ip) is None


def test_classify_rejects_non_addresses() -> None:
    with pytest.raises(ValueError):
        classify_address("example.com")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("167772161", "10.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
        ("8.8.8.8", "8.8.8.8"),
    ],
)
def test_inet_aton_spellings(host: str, expected: str) -> None:
    assert parse_host_literal(host) == ipaddress.ip_address(expected)


@pytest.mark.parametrize(
    "host", ["example.com", "soundcloud.com", "256.1.1.1", "1.2.3.4.5", "08.1.1.1", "1..2", "", "0x1g.1",
             "1.2.3.4294967296", "[::zz]"],
)
def test_names_and_invalid_literals_are_not_literals(host: str) -> None:
    assert parse_host_literal(host) is None


def test_odd_spellings_classify_as_loopback() -> None:
    for host in ("2130706433", "127.1", "0x7f.0.0.1", "0177.0.0.1"):
        literal = parse_host_literal(host)
        assert literal is not None and classify_address(literal) == "loopback"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://127.1:8080/x", "loopback"),
        ("http://0x7f.1/", "loopback"),
        ("http://10.0.0.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:8.8.8.8]/", "ipv4_mapped"),
        ("http://[fd00::1]/", "ula"),
        ("http://0.0.0.0:8000/", "unspecified"),
        ("ftp://example.com/a", "scheme_not_allowed"),
        ("file:///etc/passwd", "scheme_not_allowed"),
        ("javascript:alert(1)", "scheme_not_allowed"),
        ("http://user:pw@example.com/", "credentials_in_url"),
        ("http:///nohost", "no_host"),
        ("http://0177.0.0.1/", "invalid_url"),  # httpx refuses this spelling outright
    ],
)
def test_check_url_refuses(url: str, reason: str) -> None:
    assert NetworkPolicy().check_url(url) == (False, reason)


def test_check_url_accepts_public_and_names() -> None:
    policy = NetworkPolicy()
    for url in ("https://soundcloud.com/artist/track", "http://8.8.8.8/", "https://www.youtube.com/watch?v=x"):
        assert policy.check_url(url) == (True, None)


def test_allow_hosts_names_addresses_and_networks() -> None:
    assert NetworkPolicy(allow_hosts=frozenset({"127.0.0.1"})).check_url("http://127.0.0.1:9/") == (True, None)
    # the allowed address is matched whatever its spelling
    assert NetworkPolicy(allow_hosts=frozenset({"127.0.0.1"})).check_url("http://2130706433/") == (True, None)
    assert NetworkPolicy(allow_hosts=frozenset({"127.0.0.0/8"})).check_url("http://127.9.9.9/") == (True, None)
    assert NetworkPolicy(allow_hosts=frozenset({"127.0.0.1"})).check_url("http://127.0.0.2/") == (False, "loopback")
    assert NetworkPolicy(allow_hosts=frozenset({"127.0.0.1"})).check_url("http://10.0.0.1/") == (False, "private")


def test_allow_private_does_not_open_metadata_or_link_local() -> None:
    policy = NetworkPolicy(allow_private=True)
    assert policy.check_url("http://10.0.0.1/") == (True, None)
    assert policy.check_url("http://[fd00::1]/") == (True, None)
    assert policy.check_url("http://169.254.169.254/") == (False, "metadata")
    assert policy.check_url("http://169.254.1.1/") == (False, "link_local")
    assert policy.check_url("http://224.0.0.1/") == (False, "multicast")


def test_resolve_literals_without_dns() -> None:
    allowed = NetworkPolicy(allow_hosts=frozenset({"127.0.0.1"}))
    assert asyncio.run(allowed.resolve("2130706433", 80)) == ["127.0.0.1"]
    with pytest.raises(PolicyViolation) as info:
        asyncio.run(NetworkPolicy().resolve("127.0.0.1", 80))
    assert info.value.reason == "loopback"
    with pytest.raises(PolicyViolation) as info:
        asyncio.run(allowed.resolve("0xa.1", 80))
    assert info.value.reason == "private"


def test_resolve_name_checks_every_address() -> None:
    # `localhost` resolves through /etc/hosts (no DNS traffic) to loopback addresses only.
    with pytest.raises(PolicyViolation) as info:
        asyncio.run(NetworkPolicy().resolve("localhost", 80))
    assert info.value.reason == "loopback"
    addresses = asyncio.run(NetworkPolicy(allow_hosts=frozenset({"LOCALHOST"})).resolve("localhost", 80))
    assert addresses and all(classify_address(a) == "loopback" for a in addresses)
    # allowing only 127.0.0.1 is not enough if the name also maps to ::1
    by_address = NetworkPolicy(allow_hosts=frozenset({"127.0.0.1"}))
    try:
        got = asyncio.run(by_address.resolve("localhost", 80))
    except PolicyViolation as exc:
        assert exc.reason == "loopback"  # the host's localhost also maps to ::1
    else:
        assert got == ["127.0.0.1"]


def test_resolve_unresolvable_name_is_dns_error() -> None:
    # A 64-character label cannot be encoded for the resolver: fails locally, no DNS traffic.
    with pytest.raises(DNSResolutionError):
        asyncio.run(NetworkPolicy().resolve("a" * 64 + ".example", 80, timeout_s=3.0))
