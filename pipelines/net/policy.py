"""Outbound network policy: which URLs and addresses any outbound request may contact.

The link checker and the audio downloader fetch URLs taken from a crawl (untrusted input) and follow
redirects chosen by remote servers, so every hop is checked here before a socket is opened:

* `classify_address` says why an IP address is not a public (globally routable) one;
* `parse_host_literal` reads a URL host the way the C resolver would (``inet_aton`` spellings such
  as ``2130706433``, ``127.1``, ``0177.0.0.1`` and ``0x7f.1`` all mean 127.0.0.1);
* `NetworkPolicy.check_url` refuses bad schemes, credentials and non-public IP literals without DNS;
* `NetworkPolicy.resolve` resolves a host name and refuses it when ANY of its addresses is not
  public (unless allowed), returning the exact addresses the caller must then connect to, so no
  second resolution can happen between the check and the connect (DNS rebinding).
"""

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES: frozenset[str] = frozenset({"http", "https"})

# Reasons that `allow_private=True` lifts. Cloud metadata, link-local, multicast, reserved,
# unspecified and IPv4-mapped addresses stay refused unless a host/address is allowed by name.
PRIVATE_REASONS: frozenset[str] = frozenset({"private", "ula", "cgnat", "loopback"})

_METADATA_V4 = ipaddress.IPv4Address("169.254.169.254")
_METADATA_V6 = ipaddress.IPv6Address("fd00:ec2::254")  # AWS IMDS over IPv6

_V4_RULES: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.IPv4Network(net), reason)
    for net, reason in (
        ("0.0.0.0/8", "unspecified"),  # "this network"; 0.0.0.0 reaches the local host on Linux
        ("127.0.0.0/8", "loopback"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("100.64.0.0/10", "cgnat"),
        ("169.254.0.0/16", "link_local"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # includes 255.255.255.255
        ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
        ("192.0.2.0/24", "reserved"),  # documentation
        ("198.51.100.0/24", "reserved"),
        ("203.0.113.0/24", "reserved"),
        ("198.18.0.0/15", "reserved"),  # benchmarking
        ("192.88.99.0/24", "reserved"),  # deprecated 6to4 relay anycast
    )
)

_V6_RULES: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.IPv6Network(net), reason)
    for net, reason in (
        ("::1/128", "loopback"),
        ("::/128", "unspecified"),
        ("fc00::/7", "ula"),
        ("fe80::/10", "link_local"),
        ("fec0::/10", "reserved"),  # deprecated site-local (Python calls it global)
        ("ff00::/8", "multicast"),
        ("::/96", "reserved"),  # deprecated IPv4-compatible (::a.b.c.d; Python calls it global)
        ("64:ff9b:1::/48", "reserved"),  # local-use NAT64
        ("100::/64", "reserved"),  # discard-only
        ("2001:db8::/32", "reserved"),  # documentation
        ("2001:10::/28", "reserved"),  # ORCHID
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class PolicyViolation(Exception):
    """A URL or address the policy refuses; `reason` is a short machine-readable string."""

    def __init__(self, reason: str, *, target: str | None = None) -> None:
        super().__init__(f"{reason}: {target}" if target else reason)
        self.reason = reason
        self.target = target


class DNSResolutionError(Exception):
    """A host name that did not resolve (NXDOMAIN, no address, resolver timeout)."""


def _classify_v4(addr: ipaddress.IPv4Address) -> str | None:
    if addr == _METADATA_V4:
        return "metadata"
    for net, reason in _V4_RULES:
        if addr in net:
            return reason
    return None if addr.is_global else "reserved"


def classify_address(ip: str | IPAddress) -> str | None:
    """Why an IP address is not public, or None when it is globally routable.

    Reasons: loopback, private (RFC 1918), cgnat (100.64/10), link_local, metadata
    (169.254.169.254, fd00:ec2::254), multicast, reserved (240/4, documentation, benchmarking,
    other special-purpose blocks), unspecified (0/8, ::), ula (fc00::/7), ipv4_mapped.
    IPv6 forms that embed an IPv4 address (IPv4-mapped ::ffff:a.b.c.d, NAT64 64:ff9b::/96,
    6to4 2002::/16, Teredo client) report the embedded address's reason when it is not public;
    an IPv4-mapped address is refused ("ipv4_mapped") even when the embedded address is public.
    Raises ValueError for a string that is not an IP address.
    """
    addr = ip if isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else (
        ipaddress.ip_address(str(ip).strip().strip("[]"))
    )
    if isinstance(addr, ipaddress.IPv4Address):
        return _classify_v4(addr)
    if addr.scope_id is not None:
        addr = ipaddress.IPv6Address(addr.compressed.split("%", 1)[0])
    if addr.ipv4_mapped is not None:
        return _classify_v4(addr.ipv4_mapped) or "ipv4_mapped"
    if addr == _METADATA_V6:
        return "metadata"
    embedded: ipaddress.IPv4Address | None = None
    if addr in _NAT64:
        embedded = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    elif addr.sixtofour is not None:
        embedded = addr.sixtofour
    elif addr.teredo is not None:
        embedded = addr.teredo[1]
    if embedded is not None:
        inner = _classify_v4(embedded)
        if inner is not None:
            return inner
        if addr.teredo is not None:
            return None  # Teredo prefix 2001::/32 is "not global" to Python; client is public
    for net, reason in _V6_RULES:
        if addr in net:
            return reason
    return None if addr.is_global else "reserved"


def _parse_v4_part(text: str) -> int | None:
    if not text:
        return None
    low = text.lower()
    try:
        if low.startswith("0x"):
            return int(low[2:], 16) if low[2:] else 0
        if len(low) > 1 and low.startswith("0"):
            return int(low[1:], 8)
        return int(low, 10) if low.isdigit() else None
    except ValueError:
        return None


def parse_host_literal(host: str) -> IPAddress | None:
    """The IP address a URL host denotes literally, or None when it is a DNS name.

    Accepts bracketed or bare IPv6 and every IPv4 spelling that ``inet_aton`` accepts: one to four
    dot-separated parts, each decimal, octal (leading 0) or hex (0x), the last part filling the
    remaining bytes (``2130706433``, ``127.1``, ``0177.0.0.1``, ``0x7f.1`` are all 127.0.0.1).
    A single trailing dot is ignored. Out-of-range parts make the host "not a literal" (None),
    matching the resolver, which then treats it as a name.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    if text.endswith("."):
        text = text[:-1]
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = [_parse_v4_part(p) for p in parts]
    if any(v is None for v in values):
        return None
    head, last = values[:-1], values[-1]
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (5 - len(values))):  # type: ignore[operator]
        return None
    number = 0
    for v in head:
        number = (number << 8) | v  # type: ignore[operator]
    number = (number << (8 * (5 - len(values)))) | last  # type: ignore[operator]
    return ipaddress.IPv4Address(number)


def _normalise_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _split_allow(entries: frozenset[str]) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    names: set[str] = set()
    nets: list[IPNetwork] = []
    for entry in entries:
        norm = _normalise_host(entry)
        try:
            nets.append(ipaddress.ip_network(norm, strict=False))
        except ValueError:
            names.add(norm)
    return frozenset(names), tuple(nets)


@dataclass(frozen=True)
class NetworkPolicy:
    """Which hosts may be contacted.

    `allow_hosts` holds host names (exact, case-insensitive), IP addresses or CIDR networks
    (``"127.0.0.1"``, ``"127.0.0.0/8"``) that are allowed even when not public. `allow_private`
    additionally allows the reasons in `PRIVATE_REASONS` (RFC 1918, ULA, CGNAT, loopback); cloud
    metadata and the other special ranges stay refused unless allowed explicitly.
    """

    allow_hosts: frozenset[str] = frozenset()
    allow_private: bool = False
    _names: frozenset[str] = field(init=False, repr=False, compare=False)
    _nets: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names, nets = _split_allow(frozenset(self.allow_hosts))
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_nets", nets)

    def refusal(self, *, host: str, address: IPAddress) -> str | None:
        """The reason `address` (reached through `host`) is refused, or None when allowed."""
        reason = classify_address(address)
        if reason is None:
            return None
        if _normalise_host(host) in self._names or any(
            address.version == n.version and address in n for n in self._nets
        ):
            return None
        if self.allow_private and reason in PRIVATE_REASONS:
            return None
        return reason

    def check_url(self, url: str) -> tuple[bool, str | None]:
        """Static check of one URL without DNS: (True, None) or (False, reason).

        Reasons: invalid_url, scheme_not_allowed, no_host, credentials_in_url, or the address
        reason of a non-public IP-literal host.
        """
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            return False, "invalid_url"
        if parsed.scheme not in ALLOWED_SCHEMES:
            return False, "scheme_not_allowed"
        if not parsed.host:
            return False, "no_host"
        if parsed.userinfo:
            return False, "credentials_in_url"
        literal = parse_host_literal(parsed.host)
        if literal is not None:
            reason = self.refusal(host=parsed.host, address=literal)
            if reason is not None:
                return False, reason
        return True, None

    async def resolve(self, host: str, port: int, *, timeout_s: float | None = None) -> list[str]:
        """Resolve `host` and return every address (as strings) the caller may connect to.

        IP literals (any inet_aton spelling) are returned without DNS. Otherwise the name is
        resolved once with the event loop's `getaddrinfo` (a worker thread); the host is refused
        with `PolicyViolation` when ANY resolved address is refused, so an attacker-controlled
        name cannot mix a public and a private answer. Raises `DNSResolutionError` when the name
        does not resolve (or resolution exceeds `timeout_s`).
        """
        literal = parse_host_literal(host)
        if literal is not None:
            reason = self.refusal(host=host, address=literal)
            if reason is not None:
                raise PolicyViolation(reason, target=host)
            return [literal.compressed]
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP),
                timeout=timeout_s,
            )
        except (socket.gaierror, UnicodeError) as exc:
            raise DNSResolutionError(f"{host}: {exc}") from exc
        except TimeoutError as exc:
            raise DNSResolutionError(f"{host}: resolver timeout") from exc
        addresses: list[str] = []
        for family, *_rest, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            addr = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            reason = self.refusal(host=host, address=addr)
            if reason is not None:
                raise PolicyViolation(reason, target=f"{host} -> {addr}")
            text = addr.compressed
            if text not in addresses:
                addresses.append(text)
        if not addresses:
            raise DNSResolutionError(f"{host}: no address")
        return addresses
