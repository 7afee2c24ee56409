"""A replica's local copy of the object store's published version.

With ``MOODSCAPE_STORE_URL`` set, the service serves from a local cache store (its ``MOODSCAPE_HOME``):
:class:`VersionMirror` pulls the remote ``CURRENT`` version into it at startup and then first thing
in every reload poll tick (``RecommenderHolder(sync=…)``; :func:`pipelines.index.remote_store.pull_current`:
the whole version downloaded and checked before the local pointer moves), and the availability
overlay when it changed. The ordinary
hot reload then swaps to them, so every replica over one object store converges on the same version
without a request failing.
"""

import logging

from pipelines.index.remote_store import RemoteStore, pull_current, pull_overlay
from pipelines.store import StoreLayout

log = logging.getLogger(__name__)


class VersionMirror:
    """Keeps ``local`` publishing the version ``remote`` publishes."""

    def __init__(self, *, remote: RemoteStore, local: StoreLayout) -> None:
        self.remote = remote
        self.local = local
        self.last_error: str | None = None
        self.last_version: str | None = None
        self._overlay_tag: str | None = None

    def pull(self) -> str | None:
        """One pull of the version and of the availability overlay (raises what :func:`pull_current`
        raises); returns the version cached."""
        version = pull_current(remote=self.remote, local=self.local)
        self._overlay_tag = pull_overlay(remote=self.remote, local=self.local, seen=self._overlay_tag)
        self.last_version = version
        self.last_error = None
        return version

    def sync(self) -> None:
        """One pull that never raises (the holder's poll runs it each tick): a failure keeps the
        cached version serving and is reported in ``last_error``."""
        try:
            self.pull()
        except Exception as exc:
            self.last_error = f"pulling from {self.remote.url} failed: {exc}"
            log.exception("pulling the published version from %s failed", self.remote.url)
