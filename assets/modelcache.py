"""Content-keyed reuse of the models that do not depend on the crawl, and content data versions.

A model asset decorated with :func:`reuses_model` fingerprints what it is trained from: its Dagster
code version, the content of the shipped data it reads, the settings that shape it and the
fingerprints of the models it builds on. The fingerprint, the model file's content hash and the
training metadata are kept beside the model; a run that finds the same fingerprint and an untouched
model file returns the original metadata with ``reused=True`` instead of training again. The
fingerprint is the asset's data version, so its readers go stale only when the model really changed.
"""

import functools
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
from dagster import AssetExecutionContext, DataVersion, MaterializeResult, deserialize_value, serialize_value

from pipelines.store import DATA_DIR, StoreLayout, atomic_path

HASHES = "content_hashes.json"  # in the models folder: path → size, mtime_ns, sha256
_CHUNK = 1 << 20


class ContentHashes:
    """sha256 of files and folders, each file hashed once per (size, mtime_ns), kept in one JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.known: dict[str, list] = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            self.known = {}
        self.changed = False

    def of_file(self, path: Path) -> str:
        st = path.stat()
        key = str(path.resolve())
        hit = self.known.get(key)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
        self.known[key] = [st.st_size, st.st_mtime_ns, h.hexdigest()]
        self.changed = True
        return h.hexdigest()

    def of(self, path: Path) -> str:
        """A file's hash; a folder's: of its files' relative paths and hashes; "missing" when absent."""
        if path.is_file():
            return self.of_file(path)
        if not path.is_dir():
            return "missing"
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
            h.update(f"{f.relative_to(path).as_posix()}\0{self.of_file(f)}\n".encode())
        return h.hexdigest()

    def save(self) -> None:
        if self.changed:
            with atomic_path(self.path, ".json") as tmp:
                tmp.write_text(json.dumps(self.known, sort_keys=True))
            self.changed = False


def fingerprint_file(layout: StoreLayout, asset: str) -> Path:
    """Where the fingerprint, model hash and training metadata of ``asset`` are kept."""
    return layout.models_dir / f"{asset}.fingerprint.json"


def recorded(layout: StoreLayout, asset: str) -> dict | None:
    try:
        return json.loads(fingerprint_file(layout, asset).read_text())
    except (FileNotFoundError, ValueError):
        return None


def fingerprint(
    *, code_version: str | None, data: Mapping[str, str], settings: Mapping[str, Any],
    upstream: Mapping[str, str | None],
) -> str:
    """The content key of a model: code version, data hashes, settings and upstream fingerprints."""
    parts = {"code_version": code_version, "data": dict(data), "settings": dict(settings), "upstream": dict(upstream)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def table_version(df: pl.DataFrame) -> DataVersion:
    """A data version from a table's content (columns, types and rows, in order)."""
    h = hashlib.sha256(json.dumps([[c, str(t)] for c, t in df.schema.items()]).encode())
    h.update(df.hash_rows(seed=0).to_numpy().tobytes())
    return DataVersion(h.hexdigest()[:24])


def _with(result: MaterializeResult, metadata: Mapping[str, Any], version: str) -> MaterializeResult:
    return MaterializeResult(
        asset_key=result.asset_key, metadata=dict(metadata), check_results=result.check_results,
        data_version=DataVersion(version), tags=result.tags,
    )


def _serializable(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The entries Dagster can serialize (an odd value is left out rather than failing the run)."""
    out = {}
    for k, v in metadata.items():
        try:
            serialize_value(v)
        except Exception:
            continue
        out[k] = v
    return out


class ModelCache:
    """The fingerprint of one model asset's run and the model it names (``artifact``)."""

    def __init__(self, layout: StoreLayout, asset: str, artifact: Path, key: str, hashes: ContentHashes) -> None:
        self.layout, self.asset, self.artifact, self.key, self.hashes = layout, asset, artifact, key, hashes

    def reuse(self, run_id: str) -> MaterializeResult | None:
        """The stored model's materialization when its fingerprint is this one and its file is untouched."""
        rec = recorded(self.layout, self.asset)
        if rec is None or rec.get("fingerprint") != self.key or not self.artifact.is_file():
            return None
        if self.hashes.of_file(self.artifact) != rec.get("artifact_sha256"):
            return None
        try:
            metadata = deserialize_value(rec["metadata"], dict)
        except Exception:  # metadata written by another Dagster version: train again
            return None
        metadata |= {"reused": True, "fingerprint": self.key, "trained_run_id": rec.get("run_id", ""),
                     "reused_run_id": run_id}
        return _with(MaterializeResult(), metadata, self.key)

    def record(self, result: MaterializeResult, run_id: str) -> MaterializeResult:
        """Keep the fingerprint, the model's hash and ``result``'s metadata beside the model; return
        ``result`` with ``reused=False``, the fingerprint, and the fingerprint as its data version."""
        metadata = dict(result.metadata or {})
        entry = {
            "fingerprint": self.key,
            "artifact": self.artifact.name,
            "artifact_sha256": self.hashes.of_file(self.artifact) if self.artifact.is_file() else None,
            "run_id": run_id,
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "metadata": serialize_value(_serializable(metadata)),
        }
        with atomic_path(fingerprint_file(self.layout, self.asset), ".json") as tmp:
            tmp.write_text(json.dumps(entry, indent=1))
        return _with(result, {**metadata, "reused": False, "fingerprint": self.key}, self.key)


def reuses_model(
    *,
    artifact: Callable[[StoreLayout], Path],
    data: Sequence[str] = (),
    settings: Callable[[Any], Mapping[str, Any]] | None = None,
    upstream: Sequence[str] = (),
    valid: Callable[[StoreLayout], bool] | None = None,
) -> Callable:
    """Decorate a model asset's function (under ``@asset``) to reuse its stored model by fingerprint.

    ``artifact(layout)``: the model file it writes; ``data``: the paths under ``data/`` it reads;
    ``settings(settings resource)``: the settings that change the model; ``upstream``: the model assets
    it builds on (their fingerprints count); ``valid(layout)``: a further check that the stored
    output is complete. The function needs the ``store`` resource.
    """

    def wrap(fn: Callable[..., MaterializeResult]) -> Callable[..., MaterializeResult]:
        @functools.wraps(fn)
        def run(context: AssetExecutionContext, **resources: Any) -> MaterializeResult:
            layout: StoreLayout = resources["store"].layout()
            asset = context.asset_key.to_user_string()
            hashes = ContentHashes(layout.models_dir / HASHES)
            key = fingerprint(
                code_version=context.assets_def.code_versions_by_key.get(context.asset_key),
                data={rel: hashes.of(DATA_DIR / rel) for rel in data},
                settings=settings(resources["settings"]) if settings else {},
                upstream={name: (recorded(layout, name) or {}).get("fingerprint") for name in upstream},
            )
            cache = ModelCache(layout, asset, artifact(layout), key, hashes)
            hit = cache.reuse(context.run_id) if valid is None or valid(layout) else None
            if hit is not None:
                hashes.save()
                context.log.info(f"{asset}: the stored model has fingerprint {key}: reused, not trained")
                return hit
            result = fn(context, **resources)
            out = cache.record(result, context.run_id)
            hashes.save()
            return out

        return run

    return wrap
