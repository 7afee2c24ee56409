"""Hot reload: the served Recommender lives in a holder that can swap it without failing requests.

Every request takes a *lease* on the current generation (a refcount under a lock). A reload
(background poll of ``<store_root>/CURRENT`` every ``MOODSCAPE_RELOAD_INTERVAL_S`` seconds, or
``POST /admin/reload``) loads the new bundle, builds and warms its Recommender off the request
path, swaps the reference atomically, and closes the old Recommender only when its last lease is
released. A failed load keeps the old version serving and is reported (``last_error``).
"""

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipelines.rank import recommender as ranking
from pipelines.index.bundle import Bundle, load_bundle

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 2.0

RecommenderFactory = Callable[[Bundle], ranking.Recommender]


def read_pointer(store_root: Path) -> str | None:
    """The version id in ``<store_root>/CURRENT`` (None when absent or empty)."""
    try:
        value = (Path(store_root) / "CURRENT").read_text().strip()
    except FileNotFoundError:
        return None
    return value or None


def interval_from_env() -> float:
    """``MOODSCAPE_RELOAD_INTERVAL_S`` (default 2 s)."""
    return float(os.environ.get("MOODSCAPE_RELOAD_INTERVAL_S", DEFAULT_INTERVAL_S))


@dataclass(eq=False)
class Generation:
    """One loaded version: its Recommender, the pointer value it came from, and its leases."""

    recommender: ranking.Recommender
    pointer: str | None  # the CURRENT value (None for a fixed bundle_dir)
    loaded_at: datetime
    leases: int = 0
    retired: bool = False
    closed: bool = field(default=False)

    @property
    def version(self) -> str:
        return self.recommender.bundle.version


def build_generation(*, folder: Path, pointer: str | None, factory: RecommenderFactory) -> Generation:
    """Load ``folder``, build its Recommender and warm it (sentence model, indices, DuckDB)."""
    rec = factory(load_bundle(folder))
    try:
        rec.encoder(["warm-up"])
        rec.recommend(ranking.RecommendRequest(query="warm-up", top_k=1))
    except Exception:
        rec.close()
        raise
    return Generation(recommender=rec, pointer=pointer, loaded_at=datetime.now(UTC))


class RecommenderHolder:
    """The current :class:`Generation`, leased per request, swapped by :meth:`reload`.

    ``store_root`` None means a fixed bundle: no polling, :meth:`reload` is refused.
    ``on_swap(recommender)`` is called after each swap (e.g. to mirror it into ``app.state``).
    """

    def __init__(
        self,
        *,
        initial: Generation,
        factory: RecommenderFactory,
        store_root: Path | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        on_swap: Callable[[ranking.Recommender], None] | None = None,
    ) -> None:
        self._gen = initial
        self._factory = factory
        self.store_root = None if store_root is None else Path(store_root)
        self.interval_s = float(interval_s)
        self._on_swap = on_swap
        self._lock = threading.Lock()  # guards _gen and lease counts
        self._reload_lock = threading.Lock()  # one reload at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self._failed_pointer: str | None = None

    @property
    def current(self) -> Generation:
        return self._gen

    @property
    def reloadable(self) -> bool:
        return self.store_root is not None

    # ------------------------------------------------------------------ leases
    @contextmanager
    def lease(self) -> Iterator[ranking.Recommender]:
        """The current Recommender, kept open until the ``with`` block ends (even across a swap)."""
        with self._lock:
            gen = self._gen
            gen.leases += 1
        try:
            yield gen.recommender
        finally:
            with self._lock:
                gen.leases -= 1
                close_now = gen.retired and gen.leases == 0 and not gen.closed
                if close_now:
                    gen.closed = True
            if close_now:
                self._close(gen)

    @staticmethod
    def _close(gen: Generation) -> None:
        try:
            gen.recommender.close()
            log.info("closed store version %s", gen.version)
        except Exception:  # the old version is gone either way; a close failure must not fail a request
            log.exception("closing store version %s failed", gen.version)

    def _swap(self, new: Generation) -> None:
        with self._lock:
            old, self._gen = self._gen, new
            old.retired = True
            close_now = old.leases == 0 and not old.closed
            if close_now:
                old.closed = True
        if self._on_swap is not None:
            self._on_swap(new.recommender)
        if close_now:
            self._close(old)
        log.info("now serving store version %s (was %s)", new.version, old.version)

    # ------------------------------------------------------------------ reload
    def reload(self, *, force: bool = False) -> tuple[Generation, bool]:
        """Load ``<store_root>/versions/<CURRENT>`` if CURRENT changed (or ``force``).

        Returns ``(generation now served, whether a swap happened)``. Raises RuntimeError for a
        fixed bundle, and whatever loading raised (the old version keeps serving).
        """
        if self.store_root is None:
            raise RuntimeError("serving a fixed bundle_dir: nothing to reload")
        with self._reload_lock:
            pointer = read_pointer(self.store_root)
            if pointer is None:
                raise FileNotFoundError(f"{self.store_root / 'CURRENT'} is missing or empty")
            if pointer == self._gen.pointer and not force:
                return self._gen, False
            folder = self.store_root / "versions" / pointer
            try:
                new = build_generation(folder=folder, pointer=pointer, factory=self._factory)
            except Exception as exc:
                self.last_error = f"loading version {pointer!r} failed: {exc}"
                self._failed_pointer = pointer
                raise
            self.last_error = None
            self._failed_pointer = None
            self._swap(new)
            return new, True

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            pointer = read_pointer(self.store_root) if self.store_root else None
            if pointer is None or pointer == self._gen.pointer or pointer == self._failed_pointer:
                continue
            try:
                self.reload()
            except Exception:
                log.exception("hot reload to %r failed; still serving %s", pointer, self._gen.version)

    def start(self) -> None:
        """Start polling CURRENT (no-op for a fixed bundle or a non-positive interval)."""
        if self.store_root is None or self.interval_s <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._poll, name="moodscape-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and close the current Recommender (the app is shutting down)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        with self._reload_lock, self._lock:
            gen = self._gen
            gen.retired = True
            close_now = gen.leases == 0 and not gen.closed
            if close_now:
                gen.closed = True
        if close_now:
            self._close(gen)
