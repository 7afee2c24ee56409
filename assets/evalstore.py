"""Build an evaluation store from a CORPUS with the same asset code the pipeline uses.

The store graph is materialized in-process into a scratch home folder; the trained models (query
mood, audio mood, and the learned ranker when there is one) are taken from the main store when it
has them, so nothing is fitted during an evaluation (and never to its labels, which this module
never sees).
"""

import shutil
from pathlib import Path

import polars as pl

from assets.graph import materialize_graph, store_assets, store_checks
from assets.resources import StoreResource
from assets.settings import MoodscapeSettings
from pipelines.store import StoreLayout, home

MODEL_ASSETS = {"emopia_audio", "query_mood_model", "audio_mood_model"}
MODEL_FILES = ("query_mood", "audio_mood")
RANKER_MODEL, RANKER_ASSET = "ranker", "learned_ranker"  # copied (and not retrained) when the source has one
PRIORS_MODEL, PRIORS_ASSET = "tag_priors", "tag_priors"  # copied (and not learned again) when the source has them


def build_store_from_corpus(
    *,
    corpus: pl.DataFrame,
    workdir: Path,
    offline: bool,
    workers: int = 2,
    source_home: Path | None = None,
    emopia_limit: int | None = None,
) -> Path:
    """Materialize a store for ``corpus`` under ``workdir`` and return the published version folder."""
    source = StoreLayout.under_home(source_home or home())
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    crawl_file = workdir / "corpus.parquet"
    corpus.write_parquet(crawl_file)
    store = StoreResource(home=str(workdir / "home"))
    target = store.layout()
    have_models = all(source.model(m).exists() for m in MODEL_FILES)
    if have_models:
        for m in MODEL_FILES:
            target.model(m).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source.model(m), target.model(m))
        exclude = set(MODEL_ASSETS)
        if source.model(RANKER_MODEL).exists():
            shutil.copyfile(source.model(RANKER_MODEL), target.model(RANKER_MODEL))
            exclude.add(RANKER_ASSET)
        if source.model(PRIORS_MODEL).exists():
            shutil.copyfile(source.model(PRIORS_MODEL), target.model(PRIORS_MODEL))
            exclude.add(PRIORS_ASSET)
    else:
        print(f"no trained models under {source.root}: training them from the open data first", flush=True)
        exclude = set()
    settings = MoodscapeSettings(
        crawl=str(crawl_file), offline=offline, workers=workers, emopia_limit=emopia_limit, progress=True
    )
    results = materialize_graph(
        store_assets,
        store_checks,
        resources={"settings": settings, "store": store},
        exclude=exclude,
        raise_on_error=True,
    )
    if not all(r.success for r in results):
        raise RuntimeError("evaluation store build failed")
    folder = target.current_version_dir()
    if folder is None:
        raise RuntimeError("evaluation store has no published version")
    return folder
