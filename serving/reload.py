"""Hot reload: the served Recommender lives in a holder that can swap it without failing requests.

Every request takes a *lease* on the current generation (a refcount under a lock). A reload
(background poll of the store's published-version pointer every ``interval_s`` seconds, or
``POST /admin/reload``) loads the new bundle, builds and warms its Recommender off the request
path, swaps the reference atomically, and closes the old Recommender only when its last lease is
released. A failed load keeps the old version serving and is reported (``last_error``).

The same poll reads the store's availability overlay (link statuses newer than the version,
``pipelines.heal.links.overlay``) whenever its file changes and applies it to the served
Recommender, and to each new version before it is swapped in. A missing or unreadable overlay
keeps the last good one (``overlay_error``).
"""

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipelines.errors import ConflictError, UnavailableError
from pipelines.heal.links.overlay import Overlay, read_overlay
from pipelines.index.bundle import Bundle, load_bundle
from pipelines.rank.recommender import Recommender
from pipelines.rank.types import RecommendRequest
from pipelines.store import StoreLayout

log = logging.getLogger(__name__)

RecommenderFactory = Callable[[Bundle], Recommender]


@dataclass(eq=False)
class Generation:
    """One loaded version: its Recommender, the pointer value it came from, and its leases."""

    recommender: Recommender
    pointer: str | None  # the published version id it came from (None for a fixed bundle_dir)
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
        rec.recommend(RecommendRequest(query="warm-up", top_k=1))
    except Exception:
        rec.close()
        raise
    return Generation(recommender=rec, pointer=pointer, loaded_at=datetime.now(UTC))


class RecommenderHolder:
    """The current :class:`Generation`, leased per request, swapped by :meth:`reload`.

    ``store_root`` None means a fixed bundle: no polling, :meth:`reload` is refused.
    """

    def __init__(
        self,
        *,
        initial: Generation,
        factory: RecommenderFactory,
        store_root: Path | None = None,
        interval_s: float = 2.0,
        sync: Callable[[], None] | None = None,
    ) -> None:
        self._gen = initial
        self._sync = sync  # run first in every poll tick (e.g. a mirror pulling from an object store)
        self._factory = factory
        self.store_root = None if store_root is None else Path(store_root)
        self._layout = None if store_root is None else StoreLayout(Path(store_root))
        self.interval_s = float(interval_s)
        self._lock = threading.Lock()  # guards _gen and lease counts
        self._reload_lock = threading.RLock()  # one reload or overlay change at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self._failed_pointer: str | None = None
        self.overlay: Overlay | None = None  # the availability overlay applied (the last good one)
        self.overlay_error: str | None = None
        self._overlay_seen: tuple[int, int, int] | None = None  # (mtime_ns, size, inode) last read

    @property
    def current(self) -> Generation:
        return self._gen

    @property
    def reloadable(self) -> bool:
        return self.store_root is not None

    # ------------------------------------------------------------------ leases
    @contextmanager
    def lease(self) -> Iterator[Recommender]:
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
        if close_now:
            self._close(old)
        log.info("now serving store version %s (was %s)", new.version, old.version)

    # ------------------------------------------------------------------ reload
    def reload(self, *, force: bool = False) -> tuple[Generation, bool]:
        """Load the store's published version if it changed (or ``force``).

        Returns ``(generation now served, whether a swap happened)``. Raises ConflictError for a
        fixed bundle, UnavailableError when nothing is published or loading fails (the old version
        keeps serving).
        """
        if self._layout is None:
            raise ConflictError("serving a fixed bundle_dir: nothing to reload")
        with self._reload_lock:
            pointer = self._layout.current_version()
            if pointer is None:
                raise UnavailableError(
                    f"reload failed, still serving the old version: {self._layout.current_pointer} is missing or empty"
                )
            if pointer == self._gen.pointer and not force:
                return self._gen, False
            try:
                new = build_generation(folder=self._layout.version_dir(pointer), pointer=pointer, factory=self._factory)
            except Exception as exc:
                self.last_error = f"loading version {pointer!r} failed: {exc}"
                self._failed_pointer = pointer
                log.exception("loading version %r failed; still serving %s", pointer, self._gen.version)
                raise UnavailableError(f"reload failed, still serving the old version: {exc}") from exc
            self.last_error = None
            self._failed_pointer = None
            self._apply_overlay(new)
            self._swap(new)
            return new, True

    # ------------------------------------------------------------------ availability
    def _apply_overlay(self, gen: Generation) -> None:
        if self.overlay is not None:
            gen.recommender.apply_availability(self.overlay.statuses, version=self.overlay.written_at)

    def refresh_availability(self) -> bool:
        """Read the store's availability overlay if its file changed and apply it; True when applied.

        A missing or unreadable file keeps the overlay applied before (logged, ``overlay_error``).
        """
        if self._layout is None:
            return False
        path = self._layout.availability_overlay
        with self._reload_lock:
            try:
                st = path.stat()
                seen = (st.st_mtime_ns, st.st_size, st.st_ino)
            except FileNotFoundError:
                seen = None
            if seen == self._overlay_seen:
                return False
            self._overlay_seen = seen
            if seen is None:
                if self.overlay is not None:
                    self.overlay_error = f"{path} is missing; still applying the overlay of {self.overlay.written_at}"
                    log.warning("%s", self.overlay_error)
                return False
            try:
                overlay = read_overlay(path)
            except Exception as exc:  # a torn or foreign file: keep the last good overlay
                kept = "none" if self.overlay is None else self.overlay.written_at
                self.overlay_error = f"reading {path} failed: {exc}; still applying the overlay of {kept}"
                log.warning("%s", self.overlay_error)
                return False
            self.overlay, self.overlay_error = overlay, None
            self._apply_overlay(self._gen)
        log.info("availability overlay of %s applied to version %s (%d tracks, %d DEAD)",
                 overlay.written_at, self._gen.version, overlay.table.height, overlay.dead)
        return True

    def _poll_once(self) -> None:
        if self._sync is not None:
            try:
                self._sync()
            except Exception:  # the local store keeps what it has; keep polling
                log.exception("syncing the store before the reload check failed")
        pointer = self._layout.current_version() if self._layout is not None else None
        if pointer is not None and pointer != self._gen.pointer and pointer != self._failed_pointer:
            try:
                self.reload()
            except Exception:  # logged by reload(); keep polling
                pass
        try:
            self.refresh_availability()
        except Exception:  # the served version keeps its statuses; keep polling
            log.exception("applying the availability overlay failed")

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._poll_once()

    def start(self) -> None:
        """Apply the availability overlay, then poll the published version and the overlay (no
        polling for a fixed bundle or a non-positive interval)."""
        if self._layout is None or self._thread is not None:
            return
        try:
            self.refresh_availability()
        except Exception:
            log.exception("applying the availability overlay failed")
        if self.interval_s <= 0:
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
