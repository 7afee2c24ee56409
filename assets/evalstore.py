"""Build an evaluation store from a CORPUS with the same asset code the pipeline uses.

The corpus-dependent assets are materialized in-process into a scratch ``MOODSCAPE_HOME``; the
trained models (query mood, audio mood) are taken from the main store when it has them, so
nothing is fitted during an evaluation (and never to its labels, which this module never sees).
"""

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
from assets.definitions import materialize_all
from assets.settings import MoodscapeSettings
from pipelines import store

MODEL_ASSETS = {"emopia_audio", "query_mood_model", "audio_mood_model"}
NOT_FOR_EVAL = {"evaluation_report"}  # an evaluation store never evaluates itself
MODEL_FILES = ("query_mood", "audio_mood")


@contextmanager
def home_at(path: Path) -> Iterator[Path]:
    """Temporarily point ``MOODSCAPE_HOME`` at ``path``."""
    old = os.environ.get("MOODSCAPE_HOME")
    os.environ["MOODSCAPE_HOME"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("MOODSCAPE_HOME", None)
        else:
            os.environ["MOODSCAPE_HOME"] = old


def build_store_from_corpus(*, corpus: pl.DataFrame, workdir: Path, offline: bool, workers: int = 2,
                            source_home: Path | None = None, emopia_limit: int | None = None) -> Path:
    """Materialize a store for ``corpus`` under ``workdir`` and return the published version folder."""
    source_home = source_home or store.home()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    crawl_file = workdir / "corpus.parquet"
    corpus.write_parquet(crawl_file)
    with home_at(workdir / "home"):
        have_models = all((source_home / "store" / "models" / f"{m}.joblib").exists() for m in MODEL_FILES)
        if have_models:
            for m in MODEL_FILES:
                target = store.model_path(m)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source_home / "store" / "models" / f"{m}.joblib", target)
            exclude = MODEL_ASSETS | NOT_FOR_EVAL
        else:
            print(f"no trained models under {source_home}: training them from the open data first", flush=True)
            exclude = NOT_FOR_EVAL
        settings = MoodscapeSettings(crawl=str(crawl_file), offline=offline, workers=workers, emopia_limit=emopia_limit, progress=True)
        results = materialize_all(resources={"settings": settings}, exclude=exclude, raise_on_error=True)
        if not all(r.success for r in results):
            raise RuntimeError("evaluation store build failed")
        folder = store.current_version_dir()
        if folder is None:
            raise RuntimeError("evaluation store has no published version")
        return folder
