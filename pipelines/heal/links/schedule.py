"""Which URL a link-check worker takes next: per-host lanes, the earliest-ready host first.

URLs are grouped by the host:port of their first hop. A worker takes a URL only from a host with
fewer than ``per_host`` of its URLs in flight, choosing the host whose next request may start
soonest (its spacing, Retry-After or backoff elapsed first), so a slow, penalised or
one-at-a-time host never holds the other hosts' URLs back. URLs without a host (empty, invalid,
refused before any request) form one lane without a limit.
"""

import asyncio
import heapq
from collections import deque
from collections.abc import Callable, Iterable


class HostLanes:
    """Hands out URLs one at a time (`take`), honouring a per-host in-flight limit; `done` frees a slot.

    ``key_of(url)`` is a URL's host key (None: no network, no limit); ``ready_at(key)`` is the
    event-loop time at which that host may start its next request. Memory O(URLs); each `take`
    and `done` costs O(log hosts).
    """

    def __init__(self, *, urls: Iterable[str | None], key_of: Callable[[str | None], str | None], per_host: int,
                 ready_at: Callable[[str], float]) -> None:
        if per_host < 1:
            raise ValueError("per_host must be ≥ 1")
        self._per_host = per_host
        self._ready_at = ready_at
        self._pending: dict[str | None, deque[str | None]] = {}
        for url in urls:
            self._pending.setdefault(key_of(url), deque()).append(url)
        self._left = sum(len(q) for q in self._pending.values())
        self._active: dict[str | None, int] = {}
        self._seq = 0
        self._heap: list[tuple[float, int, str | None]] = []
        self._queued: set[str | None] = set()
        self._changed = asyncio.Event()
        for key in self._pending:
            self._push(key, at=0.0)

    @property
    def left(self) -> int:
        """URLs not handed out yet."""
        return self._left

    def _push(self, key: str | None, *, at: float) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, key))
        self._queued.add(key)
        self._changed.set()

    def _requeue(self, key: str | None) -> None:
        if key in self._queued or not self._pending.get(key):
            return
        if key is not None and self._active.get(key, 0) >= self._per_host:
            return
        self._push(key, at=0.0 if key is None else self._ready_at(key))

    async def _wait_change(self, timeout_s: float | None) -> None:
        self._changed.clear()
        try:
            async with asyncio.timeout(timeout_s):
                await self._changed.wait()
        except TimeoutError:
            pass

    async def take(self, *, not_after: float | None = None) -> tuple[str | None, str | None] | None:
        """The next (host key, URL) to check, or None when every URL has been handed out.

        Waits while every host with URLs left is at its limit or not ready yet; from event-loop
        time ``not_after`` on (the run's deadline) a URL is handed out without waiting.
        """
        loop = asyncio.get_running_loop()
        while self._left:
            if not self._heap:
                await self._wait_change(None if not_after is None else max(0.0, not_after - loop.time()))
                if not_after is not None and loop.time() >= not_after and not self._heap:
                    key = next(k for k, q in self._pending.items() if q)
                    return key, self._hand_out(key)
                continue
            at, _, key = self._heap[0]
            actual = 0.0 if key is None else self._ready_at(key)
            if actual > at:  # the host was penalised or spaced since it was queued
                heapq.heapreplace(self._heap, (actual, self._seq + 1, key))
                self._seq += 1
                continue
            now = loop.time()
            if at > now and (not_after is None or now < not_after):
                wait = at - now if not_after is None else min(at, not_after) - now
                await self._wait_change(wait)
                continue
            heapq.heappop(self._heap)
            self._queued.discard(key)
            url = self._hand_out(key)
            self._requeue(key)
            return key, url
        return None

    def _hand_out(self, key: str | None) -> str | None:
        queue = self._pending[key]
        url = queue.popleft()
        if not queue:
            del self._pending[key]
        self._left -= 1
        self._active[key] = self._active.get(key, 0) + 1
        return url

    def done(self, key: str | None) -> None:
        """The URL taken for ``key`` is finished: its host's slot is free again."""
        active = self._active.get(key, 0) - 1
        if active > 0:
            self._active[key] = active
        else:
            self._active.pop(key, None)
        self._requeue(key)
