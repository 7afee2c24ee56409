"""``run_evaluation(ablate=True)`` over the real Recommender on the conftest bundle: every mode is
reported side by side in report.json and report.md; without ``ablate`` only full and baseline."""

import json

import polars as pl
import pytest

from pipelines import schema as S
from pipelines.measure import run as ev
from pipelines.measure.handle import BundleStoreHandle
from pipelines.measure.inputs import QUERY
from pipelines.store import DATA_DIR

EMOBANK = DATA_DIR / "text" / "emobank_train_dev.csv"


@pytest.fixture(scope="module")
def eval_inputs(tmp_path_factory, bundle_dir):
    """CORPUS = the bundle's tracks; LABELS = their stored moods (test condition: the ranking
    section is exercised, not claimed good); QUERIES = 40 real EmoBank dev sentences."""
    if not EMOBANK.exists():
        pytest.skip(f"{EMOBANK} absent")
    folder = tmp_path_factory.mktemp("ablate")
    tracks = pl.read_parquet(bundle_dir / "tracks.parquet")
    tracks.select(S.TRACK_ID, S.TITLE, S.ARTIST, S.GENRE).write_csv(folder / "corpus.csv")
    tracks.select(S.TRACK_ID, S.VALENCE, S.AROUSAL).write_csv(folder / "labels.csv")
    eb = pl.read_csv(EMOBANK).filter((pl.col("split") == "dev") & (pl.col("text").str.len_chars() > 20))
    unit = lambda c: ((pl.col(c) - 3.0) / 2.0).clip(-1.0, 1.0)
    eb.head(60).select(pl.col("text").alias(QUERY), unit("V").alias(S.VALENCE), unit("A").alias(S.AROUSAL)) \
        .unique(QUERY, keep="first").write_csv(folder / "queries.csv")
    return folder


def _evaluate(folder, bundle_dir, mood_adapter, out, **kw) -> dict:
    handles: list[BundleStoreHandle] = []

    def build_store(corpus, workdir):
        handles.append(BundleStoreHandle(bundle_dir, query_mood=mood_adapter))
        return handles[-1]

    try:
        return ev.run_evaluation(
            corpus_path=folder / "corpus.csv", labels_path=folder / "labels.csv",
            queries_path=folder / "queries.csv", out_dir=out, build_store=build_store, progress=False, **kw,
        )
    finally:
        for h in handles:
            h.close()


def test_ablate_reports_every_mode(eval_inputs, bundle_dir, mood_adapter, tmp_path) -> None:
    report = _evaluate(eval_inputs, bundle_dir, mood_adapter, tmp_path / "ablate", ablate=True, max_queries=30)
    modes = {**ev.RANKING_MODES, **ev.ABLATION_MODES}
    assert report["n_queries"] == 30
    assert list(report["ranking"]) == list(modes) and list(report["latency_ms"]) == list(modes)
    on_disk = json.loads((tmp_path / "ablate" / "report.json").read_text())
    assert set(on_disk["ranking"]) == set(modes)
    table_head = next(line for line in (tmp_path / "ablate" / "report.md").read_text().splitlines()
                      if line.startswith("| metric"))
    assert all(f" {m} " in table_head for m in modes)
    rk = report["ranking"]
    assert rk["full"] == rk["hand"]  # no ranker in the bundle: full is the hand weights
    # labels are the stored moods here, so leaving the mood out must cost mood alignment
    assert rk["no_mood"]["mood_alignment@10"] < rk["full"]["mood_alignment@10"]
    assert all(set(rk[m]) == set(rk["full"]) for m in modes)  # every mode reports the same metrics


def test_without_ablate_only_full_and_baseline(eval_inputs, bundle_dir, mood_adapter, tmp_path) -> None:
    report = _evaluate(eval_inputs, bundle_dir, mood_adapter, tmp_path / "plain", max_queries=10)
    assert list(report["ranking"]) == list(ev.RANKING_MODES) and report["n_queries"] == 10
