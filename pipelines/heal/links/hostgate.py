"""Politeness towards one host: concurrency, spacing of request starts, backoff and Retry-After."""

import asyncio
import email.utils
import random
import time
from datetime import timezone


class HostGate:
    """Per host:port gate: at most ``per_host`` requests in flight, starts at least
    ``min_interval_s`` apart, none before ``not_before`` (set by `penalise`). Use with ``async with``.

    ``failures`` counts consecutive 429/5xx answers; ``head_unsupported`` remembers a host that
    refused HEAD, so its next URLs go straight to GET.
    """

    def __init__(self, *, per_host: int, min_interval_s: float) -> None:
        self._sem = asyncio.Semaphore(per_host)
        self._lock = asyncio.Lock()
        self._min_interval = min_interval_s
        self._next_start = 0.0
        self.not_before = 0.0
        self.failures = 0
        self.head_unsupported = False

    async def __aenter__(self) -> "HostGate":
        await self._sem.acquire()
        try:
            async with self._lock:
                loop = asyncio.get_running_loop()
                while (wait := max(self._next_start, self.not_before) - loop.time()) > 0:
                    await asyncio.sleep(wait)
                self._next_start = loop.time() + self._min_interval
        except BaseException:
            self._sem.release()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._sem.release()

    def ready_at(self) -> float:
        """The event-loop time from which the next request may start (spacing and penalty)."""
        return max(self._next_start, self.not_before)

    def penalise(self, *, delay_s: float) -> None:
        """No request to this host starts within ``delay_s`` from now."""
        loop = asyncio.get_running_loop()
        self.not_before = max(self.not_before, loop.time() + delay_s)


def backoff_delay(*, failures: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Exponential backoff after ``failures`` consecutive failures, capped, with "equal jitter"."""
    base = min(base_s * 2 ** max(failures - 1, 0), cap_s)
    return base * (0.5 + rng.random() / 2)


def parse_retry_after(*, value: str | None, cap_s: float, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), capped; None if absent/bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), cap_s)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    delta = when.timestamp() - (time.time() if now is None else now)
    return min(max(delta, 0.0), cap_s)
