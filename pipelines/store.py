"""Where every artifact lives, and how it is written (atomically) and read.

One root (``MOODSCAPE_HOME``, default ``<repo>/.moodscape``) holds:

- ``dagster/``               the Dagster instance home (runs, event log, schedules)
- ``store/tables/NAME.parquet``       tables written by assets (one file per table or partition)
- ``store/models/NAME.joblib``        trained models
- ``store/audio/...``                 audio the pipeline rendered itself (EMOPIA MIDI → ogg)
- ``store/versions/VERSION/``         a published serving bundle (tracks, indices, manifest)
- ``store/CURRENT``                   the published version id (switched atomically, last)
- ``store/availability.parquet``      link statuses newer than the published version (hot-reloaded)

Serving reads only ``versions/$(CURRENT)``; it never opens anything Dagster is writing.
"""

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import polars as pl

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"


def home() -> Path:
    """The Moodscape home folder (``MOODSCAPE_HOME`` or ``<repo>/.moodscape``)."""
    return Path(os.environ.get("MOODSCAPE_HOME") or REPO_ROOT / ".moodscape").resolve()


def dagster_home() -> Path:
    return home() / "dagster"


@dataclass(frozen=True)
class StoreLayout:
    """Every path under one store root (``<home>/store``); nothing else spells these names."""

    root: Path

    @classmethod
    def under_home(cls, home_dir: Path) -> "StoreLayout":
        return cls(Path(home_dir).resolve() / "store")

    @classmethod
    def from_env(cls) -> "StoreLayout":
        """The layout of ``MOODSCAPE_HOME`` (the default store of the CLI and the service)."""
        return cls.under_home(home())

    def table(self, name: str, partition: str | None = None) -> Path:
        base = self.root / "tables"
        return base / f"{name}.parquet" if partition is None else base / name / f"{partition}.parquet"

    def batch_tables(self, name: str) -> list[Path]:
        """Every partition file of a batch-partitioned table, sorted by name."""
        folder = self.root / "tables" / name
        return sorted(folder.glob("*.parquet")) if folder.is_dir() else []

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model(self, name: str) -> Path:
        return self.models_dir / f"{name}.joblib"

    def audio(self, name: str) -> Path:
        return self.root / "audio" / name

    def array(self, name: str) -> Path:
        return self.root / "arrays" / f"{name}.npy"

    @property
    def indices(self) -> Path:
        return self.root / "indices"

    def index_file(self, name: str) -> Path:
        """The FAISS file the ``<name>_index`` asset writes (published as is)."""
        return self.indices / f"{name}.faiss"

    @property
    def audio_space_file(self) -> Path:
        """The fitted audio space (scaler + PCA) the audio index projects with."""
        return self.indices / "audio_space.joblib"

    @property
    def evaluation(self) -> Path:
        """Where the ``evaluation_report`` asset writes its report."""
        return self.root / "evaluation"

    @property
    def inbox(self) -> Path:
        """Crawl files dropped here (``<home>/inbox``) become batch partitions."""
        return self.root.parent / "inbox"

    @property
    def versions(self) -> Path:
        return self.root / "versions"

    def version_dir(self, version: str) -> Path:
        return self.versions / version

    @property
    def current_pointer(self) -> Path:
        return self.root / "CURRENT"

    @property
    def availability_overlay(self) -> Path:
        """The link statuses checked since the published version was built (beside ``CURRENT``,
        replaced atomically after each re-check; the service reloads it without a rebuild)."""
        return self.root / "availability.parquet"

    def current_version(self) -> str | None:
        """The published version id named by ``CURRENT``, or None when nothing is published."""
        try:
            value = self.current_pointer.read_text().strip()
        except FileNotFoundError:
            return None
        return value or None

    def current_version_dir(self) -> Path | None:
        version = self.current_version()
        return None if version is None else self.version_dir(version)

    def publish(self, version: str) -> None:
        """Switch ``CURRENT`` to ``version`` atomically (the folder must already be complete)."""
        if not (self.version_dir(version) / "manifest.json").exists():
            raise FileNotFoundError(f"version {version} has no manifest; refusing to publish")
        with atomic_path(self.current_pointer) as tmp:
            tmp.write_text(version + "\n")


def layout() -> StoreLayout:
    """The store layout of the current ``MOODSCAPE_HOME``."""
    return StoreLayout.from_env()


def store_root() -> Path:
    return layout().root


def crawl_path() -> Path | None:
    """The crawl file named by ``MOODSCAPE_CRAWL``, or None for the bundled demo corpus."""
    value = os.environ.get("MOODSCAPE_CRAWL")
    return Path(value).resolve() if value else None


def table_path(name: str, partition: str | None = None) -> Path:
    return layout().table(name, partition)


def model_path(name: str) -> Path:
    return layout().model(name)


def audio_dir(name: str) -> Path:
    return layout().audio(name)


def versions_dir() -> Path:
    return layout().versions


def current_pointer() -> Path:
    return layout().current_pointer


@contextmanager
def atomic_path(target: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success it replaces ``target`` in one rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_table(df: pl.DataFrame, path: Path) -> Path:
    with atomic_path(path, ".parquet") as tmp:
        df.write_parquet(tmp)
    return path


def read_table(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path)


def write_json(obj: Any, path: Path) -> Path:
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    return path


def read_current_version() -> str | None:
    return layout().current_version()


def publish_version(version: str) -> None:
    """Switch ``CURRENT`` to ``version`` atomically (the folder must already be complete)."""
    layout().publish(version)


def current_version_dir() -> Path | None:
    return layout().current_version_dir()


def array_path(name: str) -> Path:
    return layout().array(name)


def index_dir() -> Path:
    return layout().indices


def write_array(arr, path: Path) -> Path:
    import numpy as np

    with atomic_path(path, ".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, arr)
    return path


def read_array(path: Path, *, mmap: bool = False):
    import numpy as np

    return np.load(path, mmap_mode="r" if mmap else None)


def inbox_dir() -> Path:
    """Crawl files dropped here are picked up by the inbox sensor (one batch partition per file)."""
    return layout().inbox


def batch_table_paths(name: str) -> list[Path]:
    """Every partition file of a batch-partitioned table, sorted by name."""
    return layout().batch_tables(name)


def read_model(path: Path, *, legacy_modules: dict[str, ModuleType] | None = None) -> Any:
    """A joblib model file. ``legacy_modules`` maps module names under which earlier releases pickled
    a class (e.g. ``pipelines.querymood``) to the module that holds it now; an old name is registered
    only while nothing else owns it, so models written before a module moved still load."""
    for name, module in (legacy_modules or {}).items():
        sys.modules.setdefault(name, module)
    import joblib

    return joblib.load(path)

