"""The resources every asset runs with, by deployment: where the store is, and how a run behaves.

- ``local`` (``dagster dev``, the CLI): the store of ``MOODSCAPE_HOME`` as it is when the run starts
- ``test``: a store under an explicit home folder
- ``prod`` (``MOODSCAPE_DAGSTER_PROFILE=prod``): the store of ``MOODSCAPE_HOME``, read by each run
"""

import os
from pathlib import Path

import numpy as np
import polars as pl
from dagster import ConfigurableResource, EnvVar

from assets.settings import MoodscapeSettings
from pipelines.store import StoreLayout, home, layout, read_array, read_table, write_table

DEPLOYMENTS = ("local", "test", "prod")


class StoreResource(ConfigurableResource):
    """The store root: ``<home>/store`` (``home`` empty: ``MOODSCAPE_HOME`` when the run reads it)."""

    home: str | None = None

    def layout(self) -> StoreLayout:
        return StoreLayout.under_home(Path(self.home)) if self.home else layout()

    def home_dir(self) -> Path:
        return Path(self.home).resolve() if self.home else home()

    def inbox(self) -> Path:
        """Crawl files dropped here are picked up by the inbox sensor (one batch partition per file)."""
        return self.layout().inbox

    def load(self, name: str) -> pl.DataFrame:
        """The table an upstream asset wrote (FileNotFoundError naming it when it is missing)."""
        path = self.layout().table(name)
        if not path.exists():
            raise FileNotFoundError(f"table {name!r} is missing at {path}: materialize its asset first")
        return read_table(path)

    def load_optional(self, name: str, partition: str | None = None) -> pl.DataFrame | None:
        path = self.layout().table(name, partition)
        return read_table(path) if path.exists() else None

    def write(self, df: pl.DataFrame, name: str, partition: str | None = None) -> Path:
        return write_table(df, self.layout().table(name, partition))

    def text_embeddings(self) -> tuple[pl.DataFrame, np.ndarray]:
        """(table aligned with the vectors: track_id, text_doc, has_text; vectors (n, 384))."""
        return self.load("text_embeddings"), read_array(self.layout().array("text_embeddings"))


def deployment() -> str:
    """``prod`` under the production Dagster profile, else ``local``."""
    return "prod" if os.environ.get("MOODSCAPE_DAGSTER_PROFILE") == "prod" else "local"


def resources_for(name: str, *, home_dir: Path | None = None, settings: MoodscapeSettings | None = None) -> dict:
    """The ``settings`` and ``store`` resources of one deployment (``test`` needs ``home_dir``)."""
    if name not in DEPLOYMENTS:
        raise ValueError(f"unknown deployment {name!r}: one of {', '.join(DEPLOYMENTS)}")
    if name == "test":
        if home_dir is None:
            raise ValueError("the test deployment needs an explicit home folder")
        return {"settings": settings or MoodscapeSettings(offline=True), "store": StoreResource(home=str(home_dir))}
    if name == "prod":
        return {"settings": settings or MoodscapeSettings(), "store": StoreResource(home=EnvVar("MOODSCAPE_HOME"))}
    return {
        "settings": settings or MoodscapeSettings(),
        "store": StoreResource(home=str(home_dir) if home_dir is not None else None),
    }
