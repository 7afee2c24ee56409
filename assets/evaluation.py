"""``evaluation_report``: the evaluation harness run on the dev-eval sets, headline numbers as metadata.

Runs only where ``../shared/data/dev-eval/`` exists (a developer's machine); elsewhere it records
that it skipped. The evaluation stores are built with the same asset code in scratch folders,
using the main store's trained models (nothing is fitted to the labels).
"""

import tempfile
from pathlib import Path

import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.evalstore import build_store_from_corpus
from assets.resources import StoreResource
from assets.settings import MoodscapeSettings
from pipelines.measure.deveval import DEFAULT_DEV_EVAL, build_deezer, build_emobank
from pipelines.measure.handle import BundleStoreHandle
from pipelines.measure.run import run_evaluation


def _headline(report: dict) -> dict:
    out: dict = {"n_tracks": report.get("n_tracks"), "n_queries": report.get("n_queries")}
    for section in ("query_mood", "track_mood"):
        for k, v in (report.get(section) or {}).items():
            if isinstance(v, (int, float)):
                out[f"{section}.{k}"] = v
    for mode, metrics in (report.get("ranking") or {}).items():
        for k, v in metrics.items():
            out[f"ranking.{mode}.{k}"] = v
    for mode, lat in (report.get("latency_ms") or {}).items():
        out[f"latency_ms.{mode}.p50"] = lat.get("p50")
    similar = report.get("sounds_like") or {}
    key = f"precision@{similar.get('k', 10)}"
    for method, res in (similar.get("methods") or {}).items():
        out[f"sounds_like.{method}.{key}"] = res.get(key)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items() if v is not None}


def _sample_queries(path: Path, n: int | None, out: Path) -> Path:
    if n is None:
        return path
    queries = pl.read_csv(path)
    if queries.height <= n:
        return path
    queries.sample(n=n, seed=0).write_csv(out)
    return out


@asset(
    group_name="evaluation", deps=["published_store", "query_mood_model", "audio_mood_model"], compute_kind="python",
    code_version="1",
)
def evaluation_report(
    context: AssetExecutionContext, settings: MoodscapeSettings, store: StoreResource
) -> MaterializeResult:
    """`moodscape evaluate` on the dev-eval sets: Deezer validation split (title/artist corpus with
    valence/arousal labels) × EmoBank dev sentences as queries. Full system vs SBERT-only baseline.

    Skips (and says so) where ``../shared/data/dev-eval/`` is absent, as on a user's fresh clone.
    """
    if not DEFAULT_DEV_EVAL.exists():
        context.log.info(f"skipped: {DEFAULT_DEV_EVAL} is absent (dev-eval data exists only on developer machines)")
        return MaterializeResult(metadata={"status": "skipped", "reason": f"{DEFAULT_DEV_EVAL} absent"})
    out_dir = store.layout().evaluation
    main_home = store.home_dir()
    with tempfile.TemporaryDirectory(prefix="moodscape-eval-") as tmp:
        tmp_path = Path(tmp)
        context.log.info(build_deezer(dev_eval=DEFAULT_DEV_EVAL, out=tmp_path))
        context.log.info(build_emobank(out=tmp_path))
        queries = _sample_queries(
            tmp_path / "emobank_dev" / "queries.csv", settings.eval_max_queries, tmp_path / "queries_sample.csv"
        )
        handles: list[BundleStoreHandle] = []

        def build_store(corpus: pl.DataFrame, workdir: Path) -> BundleStoreHandle:
            folder = build_store_from_corpus(
                corpus=corpus, workdir=workdir, offline=True, workers=settings.workers, source_home=main_home
            )
            handles.append(BundleStoreHandle(folder))
            return handles[-1]

        try:
            report = run_evaluation(
                corpus_path=tmp_path / "deezer_val" / "corpus.csv",
                labels_path=tmp_path / "deezer_val" / "labels.csv",
                queries_path=queries,
                out_dir=out_dir,
                build_store=build_store,
                progress=settings.progress,
            )
        finally:
            for h in handles:
                h.close()
    md = (out_dir / "report.md").read_text() if (out_dir / "report.md").exists() else ""
    return MaterializeResult(
        metadata={
            "status": "ran",
            **_headline(report),
            "report": MetadataValue.md(md[:60000]) if md else "missing",
            "report_json": MetadataValue.path(str(out_dir / "report.json")),
        }
    )
