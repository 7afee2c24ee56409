"""A replica's local copy of the object store's published version.

With ``MOODSCAPE_STORE_URL`` set, the service serves from a local cache store (its ``MOODSCAPE_HOME``):
:class:`VersionMirror` pulls the remote ``CURRENT`` version into it at startup and then every
``interval_s`` seconds (:func:`pipelines.index.remote_store.pull_current`: whole version downloaded and
checked before the local pointer moves), and the availability overlay when it changed. The ordinary
hot reload then swaps to them, so every replica over one object store converges on the same version
without a request failing.
"""

import logging
import threading

from pipelines.index.remote_store import RemoteStore, pull_current, pull_overlay
from pipelines.store import StoreLayout

log = logging.getLogger(__name__)


class VersionMirror:
    """Polls ``remote`` and keeps ``local`` publishing the same version."""

    def __init__(self, *, remote: RemoteStore, local: StoreLayout, interval_s: float = 2.0) -> None:
        self.remote = remote
        self.local = local
        self.interval_s = float(interval_s)
        self.last_error: str | None = None
        self.last_version: str | None = None
        self._overlay_tag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pull(self) -> str | None:
        """One pull of the version and of the availability overlay (raises what :func:`pull_current`
        raises); returns the version cached."""
        version = pull_current(remote=self.remote, local=self.local)
        self._overlay_tag = pull_overlay(remote=self.remote, local=self.local, seen=self._overlay_tag)
        self.last_version = version
        self.last_error = None
        return version

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.pull()
            except Exception as exc:  # keep serving the cached version; report and retry next tick
                self.last_error = f"pulling from {self.remote.url} failed: {exc}"
                log.exception("pulling the published version from %s failed", self.remote.url)

    def start(self) -> None:
        if self.interval_s <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._poll, name="moodscape-mirror", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
