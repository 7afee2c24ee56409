"""Response cache: an in-process LRU, optionally backed by a Redis shared by API replicas.

Keys are the normalised request (query lower-cased with whitespace collapsed; every other field as
canonical, key-sorted msgspec JSON, defaults included) plus the served store version, so a hot
reload never serves a response computed from the previous version.

Redis is optional (``ServingSettings.redis_url``). Its calls use short socket timeouts, and a circuit
breaker skips Redis for ``breaker_s`` seconds after any error: requests keep being served from the
LRU or computed, never failed, while Redis is down.
"""

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import msgspec

from serving.settings import ServingSettings

log = logging.getLogger(__name__)

T = TypeVar("T", bound=msgspec.Struct)

DEFAULT_SIZE = ServingSettings.cache_size
DEFAULT_TTL_S = ServingSettings.redis_ttl_s
DEFAULT_BREAKER_S = 5.0
DEFAULT_SOCKET_TIMEOUT_S = 0.1
KEY_PREFIX = "moodscape:resp:v1:"
RedisState = Literal["absent", "up", "down"]


def normalise_query(query: str) -> str:
    """Lower-case, whitespace-collapsed query (what the ranking sees up to case and spacing)."""
    return " ".join(query.lower().split())


def cache_key(*, kind: str, store_version: str, request: msgspec.Struct | dict[str, Any]) -> str:
    """A stable hex key of ``kind`` + ``store_version`` + the normalised request (all fields)."""
    body = msgspec.to_builtins(request)
    if isinstance(body, dict) and isinstance(body.get("query"), str):
        body["query"] = normalise_query(body["query"])
    canonical = msgspec.json.encode([kind, store_version, body], order="sorted")
    return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True)
class CacheStats:
    size: int
    capacity: int
    hits: int  # LRU hits + Redis hits
    misses: int
    redis_hits: int
    redis: RedisState


class ResponseCache:
    """Thread-safe LRU of response structs (``capacity`` 0 disables it), plus optional Redis bytes."""

    def __init__(
        self,
        *,
        capacity: int = DEFAULT_SIZE,
        redis_url: str | None = None,
        ttl_s: int = DEFAULT_TTL_S,
        breaker_s: float = DEFAULT_BREAKER_S,
        socket_timeout_s: float = DEFAULT_SOCKET_TIMEOUT_S,
    ) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity = capacity
        self.ttl_s = int(ttl_s)
        self.breaker_s = float(breaker_s)
        self._lru: OrderedDict[str, msgspec.Struct] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = self._misses = self._redis_hits = 0
        self._open_until = 0.0  # circuit breaker: Redis skipped until this monotonic time
        self._redis = None
        if redis_url:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # No client-side retries: the circuit breaker is the retry policy (a dead Redis must
            # cost one short timeout per breaker period, not a backoff loop per request).
            self._redis = redis.Redis.from_url(
                redis_url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s,
                retry=Retry(NoBackoff(), 0),
            )

    @classmethod
    def from_settings(cls, settings: ServingSettings) -> "ResponseCache":
        """The cache the settings describe (LRU size, optional Redis URL and TTL)."""
        return cls(capacity=settings.cache_size, redis_url=settings.redis_url, ttl_s=settings.redis_ttl_s)

    # ------------------------------------------------------------------ redis with a breaker
    def _redis_usable(self) -> bool:
        return self._redis is not None and time.monotonic() >= self._open_until

    def _trip(self, exc: Exception) -> None:
        first = time.monotonic() >= self._open_until
        self._open_until = time.monotonic() + self.breaker_s
        if first:
            log.warning("redis cache unavailable, skipping it for %.1f s: %s", self.breaker_s, exc)

    def _redis_get(self, key: str) -> bytes | None:
        if not self._redis_usable():
            return None
        try:
            return self._redis.get(KEY_PREFIX + key)
        except Exception as exc:  # redis.RedisError, OSError: the cache must never fail a request
            self._trip(exc)
            return None

    def _redis_set(self, key: str, value: bytes) -> None:
        if not self._redis_usable():
            return
        try:
            self._redis.set(KEY_PREFIX + key, value, ex=self.ttl_s)
        except Exception as exc:
            self._trip(exc)

    def redis_state(self) -> RedisState:
        """"absent" (not configured), "down" (breaker open or ping fails) or "up"."""
        if self._redis is None:
            return "absent"
        if not self._redis_usable():
            return "down"
        try:
            self._redis.ping()
        except Exception as exc:
            self._trip(exc)
            return "down"
        return "up"

    # ------------------------------------------------------------------ lookups
    def get_or_compute(self, *, key: str, type_: type[T], compute: Callable[[], T]) -> tuple[T, bool]:
        """``(value, hit)``: the cached response for ``key`` or ``compute()`` (then stored)."""
        if self.capacity:
            with self._lock:
                value = self._lru.get(key)
                if value is not None:
                    self._lru.move_to_end(key)
                    self._hits += 1
                    return value, True  # type: ignore[return-value]
        raw = self._redis_get(key)
        if raw is not None:
            try:
                value = msgspec.json.decode(raw, type=type_)
            except msgspec.DecodeError:  # written by an incompatible release: recompute
                value = None
            if value is not None:
                with self._lock:
                    self._hits += 1
                    self._redis_hits += 1
                self._lru_put(key, value)
                return value, True
        value = compute()
        with self._lock:
            self._misses += 1
        self._lru_put(key, value)
        self._redis_set(key, msgspec.json.encode(value))
        return value, False

    def _lru_put(self, key: str, value: msgspec.Struct) -> None:
        if not self.capacity:
            return
        with self._lock:
            self._lru[key] = value
            self._lru.move_to_end(key)
            while len(self._lru) > self.capacity:
                self._lru.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._lru.clear()

    def stats(self) -> CacheStats:
        state = self.redis_state()
        with self._lock:
            return CacheStats(
                size=len(self._lru), capacity=self.capacity, hits=self._hits, misses=self._misses,
                redis_hits=self._redis_hits, redis=state,
            )

    def close(self) -> None:
        if self._redis is not None:
            try:
                self._redis.close()
            except Exception:  # closing a dead connection pool is not an error worth raising
                pass
