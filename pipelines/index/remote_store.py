"""Published versions on an object store (``s3://bucket/prefix``, or any fsspec URL).

The pipeline builds in its local working store (``MOODSCAPE_HOME``) and, when ``MOODSCAPE_STORE_URL``
is set, :func:`push_version` copies a published version there: every file of the version folder,
its manifest last, then the ``CURRENT`` pointer (one object PUT, atomic on S3). A reader never sees
a pointer to an incomplete version. The remote keys follow the local layout
(:class:`pipelines.store.StoreLayout` over the URL's path), so nothing here spells folder names.

A service replica keeps a local read-through cache of the versions it serves
(:func:`pull_current`): when the remote pointer names a version the cache lacks, the whole version
folder is downloaded into a temp folder, checked (manifest present, every file the size the
object store says), renamed into place, and only then is the local pointer switched — the local
hot reload (:mod:`serving.reload`) takes it from there. The index files are memory-mapped from
that local copy. Intermediate tables, models and the Dagster instance stay on the pipeline's
local disk: only published versions travel.

S3-compatible endpoints (MinIO, moto, Ceph) through ``MOODSCAPE_STORE_ENDPOINT_URL``; credentials
the usual AWS way (``AWS_ACCESS_KEY_ID``… or an instance role).
"""

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec

from pipelines.errors import InvalidInputError, UnavailableError
from pipelines.index.bundle import MANIFEST_FILE
from pipelines.store import StoreLayout, atomic_path

log = logging.getLogger(__name__)

URL_VAR = "MOODSCAPE_STORE_URL"
ENDPOINT_VAR = "MOODSCAPE_STORE_ENDPOINT_URL"
KEEP_LOCAL_VERSIONS = 3  # the served one, the one before (may still hold leases), one spare


@dataclass(frozen=True)
class RemoteStore:
    """An fsspec filesystem and the store prefix on it."""

    fs: Any
    prefix: PurePosixPath
    url: str

    @classmethod
    def from_url(cls, url: str, *, endpoint_url: str | None = None) -> "RemoteStore":
        """``s3://bucket/prefix`` (or ``memory://``, ``file://``…); ``endpoint_url`` for S3-compatible servers."""
        if "://" not in url:
            raise InvalidInputError(f"{url!r} is not a URL (expected e.g. s3://bucket/prefix)", field=URL_VAR)
        protocol = url.split("://", 1)[0]
        options: dict[str, Any] = {}
        if endpoint_url and protocol in ("s3", "s3a"):
            options["client_kwargs"] = {"endpoint_url": endpoint_url}
            options["skip_instance_cache"] = True  # one client per endpoint, not a cached one
        fs, path = fsspec.core.url_to_fs(url, **options)
        return cls(fs=fs, prefix=PurePosixPath(path.rstrip("/")), url=url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "RemoteStore | None":
        """The remote store ``MOODSCAPE_STORE_URL`` names, or None when it is unset."""
        env = os.environ if environ is None else environ
        url = (env.get(URL_VAR) or "").strip()
        return cls.from_url(url, endpoint_url=(env.get(ENDPOINT_VAR) or "").strip() or None) if url else None

    @property
    def layout(self) -> StoreLayout:
        return StoreLayout(self.prefix)  # type: ignore[arg-type]  # a PurePosixPath: keys, not files

    def current_version(self) -> str | None:
        """The version the remote ``CURRENT`` names, or None when nothing is published there."""
        try:
            raw = self.fs.cat_file(str(self.layout.current_pointer))
        except FileNotFoundError:
            return None
        return raw.decode().strip() or None

    def version_files(self, version: str) -> dict[str, int]:
        """Relative path → size of every object of a remote version folder."""
        base = str(self.layout.version_dir(version))
        self.fs.invalidate_cache(base)  # a listing cached before the upload finished must not be trusted
        found = self.fs.find(base, detail=True)
        root = PurePosixPath(base.lstrip("/"))
        return {str(PurePosixPath(k.lstrip("/")).relative_to(root)): int(v.get("size") or 0) for k, v in found.items()}


def push_version(*, local: StoreLayout, remote: RemoteStore, version: str) -> int:
    """Copy the local published ``version`` to ``remote`` and point the remote ``CURRENT`` at it.

    Files first, the manifest last, the pointer after that. Returns the number of files copied.
    Cost: one upload per file (multipart for large ones, by fsspec).
    """
    folder = local.version_dir(version)
    manifest = folder / MANIFEST_FILE
    if not manifest.exists():
        raise UnavailableError(f"version {version} has no manifest under {folder}; refusing to push it")
    target = remote.layout.version_dir(version)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p != manifest)
    for path in [*files, manifest]:
        remote.fs.put_file(str(path), str(target / path.relative_to(folder).as_posix()))
    remote.fs.pipe_file(str(remote.layout.current_pointer), (version + "\n").encode())
    log.info("pushed version %s to %s (%d files)", version, remote.url, len(files) + 1)
    return len(files) + 1


def pull_current(*, remote: RemoteStore, local: StoreLayout) -> str | None:
    """Make the local cache serve what the remote ``CURRENT`` names (download it if missing).

    Returns the version now published locally (None when the remote has none). A partial or
    inconsistent download raises UnavailableError and leaves the local pointer unchanged.
    """
    version = remote.current_version()
    if version is None:
        return None
    if local.current_version() == version:
        return version
    folder = local.version_dir(version)
    if not (folder / MANIFEST_FILE).exists():
        _download(remote=remote, version=version, folder=folder)
    local.publish(version)
    _prune(local, keep=version)
    log.info("now caching version %s from %s", version, remote.url)
    return version


def push_overlay(*, local: StoreLayout, remote: RemoteStore) -> bool:
    """Copy the local availability overlay to ``remote`` (one PUT: readers see the old or the new
    object, never a mix). Returns False when there is no local overlay."""
    path = local.availability_overlay
    if not path.exists():
        return False
    remote.fs.put_file(str(path), str(remote.layout.availability_overlay))
    return True


def pull_overlay(*, remote: RemoteStore, local: StoreLayout, seen: str | None = None) -> str | None:
    """Copy the remote availability overlay into the local store when it changed since ``seen``
    (its ETag or size+mtime). Returns the remote overlay's tag now held locally (None: there is none)."""
    key = str(remote.layout.availability_overlay)
    try:
        info = remote.fs.info(key, refresh=True)  # never a cached listing
    except FileNotFoundError:
        return None
    tag = str(info.get("ETag") or f"{info.get('size')}:{info.get('LastModified') or info.get('mtime')}")
    if tag != seen:
        with atomic_path(local.availability_overlay, ".parquet") as tmp:
            remote.fs.get_file(key, str(tmp))
    return tag


def _download(*, remote: RemoteStore, version: str, folder: Path) -> None:
    expected = remote.version_files(version)
    if MANIFEST_FILE not in expected:
        raise UnavailableError(f"remote version {version} at {remote.url} has no manifest")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=folder.parent))
    try:
        base = remote.layout.version_dir(version)
        for rel in sorted(expected):
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            remote.fs.get_file(str(base / rel), str(dest))
            got = dest.stat().st_size
            if got != expected[rel]:
                raise UnavailableError(f"{rel} of version {version}: {got} bytes, expected {expected[rel]}")
        if folder.exists():  # a leftover without a manifest: never served, safe to replace
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _prune(local: StoreLayout, *, keep: str) -> None:
    """Drop cached versions beyond the newest few (files still mapped by an old generation stay
    readable until it closes: unlinking does not invalidate open maps)."""
    if not local.versions.exists():
        return
    done = [p for p in local.versions.iterdir() if p.is_dir() and (p / MANIFEST_FILE).exists() and p.name != keep]
    done.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in done[KEEP_LOCAL_VERSIONS - 1:]:
        shutil.rmtree(old, ignore_errors=True)

