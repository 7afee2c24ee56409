"""How a link's final answer becomes a status and a reason.

Statuses (`schema.LINK_STATUSES`) and the ``reason`` each comes with:

* VALID ("ok") — 2xx for the same resource (an http→https upgrade, default-port or
  trailing-slash-only redirect still counts as the same resource);
* MOVED ("redirected") — 2xx after redirects to a different resource; ``final_url`` holds it;
* REQUIRES_AUTH ("http_401", "http_403", "http_407"); DEAD ("http_404", "http_410");
* BLOCKED — refused by the network policy before any connection: "loopback", "private",
  "metadata", "scheme_not_allowed", "invalid_url", ... (at the first URL or at any redirect hop);
* UNKNOWN — "no_url", "offline", "deadline", "timeout", "connect_error", "dns_error",
  "tls_error", "connection_reset", "protocol_error", "redirect_loop", "too_many_redirects",
  "redirect_without_location", "rate_limited", "blocked_by_cloudfront", "blocked_by_cdn", "http_5xx",
  "http_<code>". A CDN block page (403 from CloudFront or a bot wall) is temporary (UNKNOWN).
"""

from dataclasses import dataclass

import httpx

from pipelines.schema import DEAD, MOVED, REQUIRES_AUTH, UNKNOWN, VALID

DEFAULT_PORTS = {"http": 80, "https": 443}
_CLOUDFRONT_HEADERS = ("x-amz-cf-pop", "x-amz-cf-id")
_CDN_HEADERS = ("cf-ray", "cf-mitigated", "x-datadome", "x-sucuri-id", "x-iinfo")
_CDN_SERVERS = ("cloudflare", "akamaighost", "ddos-guard", "sucuri", "imperva", "datadome")
_CDN_BODY_MARKERS = (
    b"captcha", b"cf-chl", b"challenge-platform", b"attention required", b"datadome",
    b"verify you are a human", b"are you a robot", b"ddos protection",
)


@dataclass(frozen=True, kw_only=True)
class LinkOutcome:
    """What checking one URL found: a `schema.LINK_STATUSES` value and its reason."""

    url_status: str
    reason: str
    http_code: int | None = None  # the last HTTP status received
    final_url: str | None = None  # the last URL reached or redirected to


def same_resource(a: httpx.URL, b: httpx.URL) -> bool:
    """Same host, port (http→https upgrade allowed), query and path up to a trailing slash."""
    if a.host != b.host or a.query != b.query:
        return False
    port_a = a.port or DEFAULT_PORTS.get(a.scheme)
    port_b = b.port or DEFAULT_PORTS.get(b.scheme)
    upgrade = a.scheme == "http" and b.scheme == "https" and a.port is None and b.port is None
    if port_a != port_b and not upgrade:
        return False
    if a.scheme != b.scheme and not (a.scheme == "http" and b.scheme == "https"):
        return False
    return (a.path.rstrip("/") or "/") == (b.path.rstrip("/") or "/")


def looks_like_cloudfront_block(*, headers: httpx.Headers, body: bytes) -> bool:
    """True when a 403 is CloudFront's own error page ("Request blocked"): ``x-cache: Error from
    cloudfront``, an ``x-amz-cf-pop``/``x-amz-cf-id`` header, or a body naming both."""
    if "error from cloudfront" in headers.get("x-cache", "").lower():
        return True
    if any(h in headers for h in _CLOUDFRONT_HEADERS):
        return True
    low = body.lower()
    return b"request blocked" in low and b"cloudfront" in low


def looks_like_cdn_block(*, headers: httpx.Headers, body: bytes) -> bool:
    """True when a 403 carries a CDN/bot-wall signature (headers or a challenge/captcha body)."""
    if any(h in headers for h in _CDN_HEADERS):
        return True
    server = headers.get("server", "").lower()
    if any(s in server for s in _CDN_SERVERS):
        return True
    low = body.lower()
    return any(m in low for m in _CDN_BODY_MARKERS)


def classify(*, code: int, headers: httpx.Headers, body: bytes, same: bool, final_url: str) -> LinkOutcome:
    """The outcome of a final (non-redirect) response ``code``; ``same``: it is the resource first asked for."""
    def out(status: str, reason: str) -> LinkOutcome:
        return LinkOutcome(url_status=status, reason=reason, http_code=code, final_url=final_url)

    if 200 <= code < 300:
        return out(VALID, "ok") if same else out(MOVED, "redirected")
    if code in (401, 407):
        return out(REQUIRES_AUTH, f"http_{code}")
    if code == 403:
        if looks_like_cloudfront_block(headers=headers, body=body):
            return out(UNKNOWN, "blocked_by_cloudfront")
        if looks_like_cdn_block(headers=headers, body=body):
            return out(UNKNOWN, "blocked_by_cdn")
        return out(REQUIRES_AUTH, "http_403")
    if code in (404, 410):
        return out(DEAD, f"http_{code}")
    if code == 429:
        return out(UNKNOWN, "rate_limited")
    if code >= 500:
        return out(UNKNOWN, "http_5xx")
    return out(UNKNOWN, f"http_{code}")
