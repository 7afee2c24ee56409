"""The learned ranker: artist/query-disjoint folds, selection and fit, save/load, a bundle's ranker
ordering the full mode of the Recommender (and the hand weights without one)."""

import shutil

import numpy as np
import pytest

from pipelines.index.bundle import RANKER_FILE, load_bundle
from pipelines.rank.features import FEATURE_NAMES
from pipelines.rank.learned import LearnedRanker, ranker_for_bundle
from pipelines.rank.ranker_fit import fold_masks, ndcg_by_query, select_and_fit
from pipelines.rank.ranker_training import Examples
from pipelines.rank.types import RecommendRequest

MOOD = FEATURE_NAMES.index("mood_sim")
TEXT = FEATURE_NAMES.index("text_sim")


def _examples(n_queries: int = 60, per_query: int = 40, seed: int = 0) -> Examples:
    """Pairs whose grade follows mood_sim (text_sim is noise), in 30 artist groups."""
    rng = np.random.default_rng(seed)
    n = n_queries * per_query
    x = rng.normal(size=(n, len(FEATURE_NAMES))).astype(np.float32)
    x[:, MOOD] = rng.uniform(size=n)
    y = np.digitize(x[:, MOOD] + rng.normal(scale=0.05, size=n), [0.4, 0.6, 0.8, 0.9]).astype(np.int32)
    return Examples(
        x=x, y=y, qid=np.repeat(np.arange(n_queries), per_query),
        group=np.array([f"artist:{i % 30}" for i in rng.permutation(n)], dtype=object),
        hand=x[:, TEXT].copy(), kind=np.array(["jamendo"] * n, dtype=object),
    )


def test_folds_are_artist_and_query_disjoint() -> None:
    ex = _examples()
    folds = fold_masks(ex, n_folds=4)
    assert len(folds) == 4
    for train, test in folds:
        assert test.any() and train.any() and not (train & test).any()
        assert not set(ex.group[train]) & set(ex.group[test])
        assert not set(ex.qid[train]) & set(ex.qid[test])
    tested = np.zeros(len(ex.y), bool)
    for _, test in folds:
        assert not (tested & test).any()
        tested |= test


def test_ndcg_is_one_for_the_ideal_order_and_lower_otherwise() -> None:
    y = np.array([0, 3, 1, 0, 2, 0])
    qid = np.zeros(6, np.int64)
    assert ndcg_by_query(scores=y.astype(float), y=y, qid=qid, k=3)[0] == pytest.approx(1.0)
    assert ndcg_by_query(scores=-y.astype(float), y=y, qid=qid, k=3)[0] < 0.5
    assert len(ndcg_by_query(scores=np.zeros(3), y=np.zeros(3, int), qid=np.zeros(3, int), k=3)) == 0


@pytest.fixture(scope="module")
def fitted() -> tuple[LearnedRanker, object]:
    return select_and_fit(_examples(), grid=((3, 0.2, 30), (2, 0.2, 10)), n_folds=3, threads=1)


def test_selection_beats_the_noise_baseline_and_reports_importances(fitted) -> None:
    ranker, report = fitted
    assert report.chosen in ((3, 0.2, 30), (2, 0.2, 10))
    assert len(report.cv) == 2
    for row in report.cv:
        assert row["ranker_ndcg@10"] > row["hand_ndcg@10"] + 0.1  # the hand score here is noise
        assert len(row["ranker_ndcg@10_folds"]) == 3
    assert max(report.importance, key=report.importance.get) == "mood_sim"
    assert sum(report.importance.values()) == pytest.approx(1.0, abs=1e-3)
    assert ranker.info["chosen"]["max_depth"] == report.chosen[0]
    assert report.counts["pairs"] == 60 * 40


def test_save_load_round_trip_scores_the_same(fitted, tmp_path) -> None:
    ranker, _ = fitted
    x = _examples(n_queries=2, seed=5).x
    loaded = LearnedRanker.load(ranker.save(tmp_path / "ranker.joblib"))
    np.testing.assert_allclose(loaded.scores(x), ranker.scores(x), rtol=1e-6)
    assert loaded.info == ranker.info
    s = loaded.scores(x)
    assert np.corrcoef(s, x[:, MOOD])[0, 1] > 0.8


def test_a_bundle_without_a_ranker_has_none(bundle_dir) -> None:
    assert ranker_for_bundle(load_bundle(bundle_dir)) is None


def test_a_published_ranker_orders_the_full_mode(bundle_dir, tmp_path, fitted, mood_adapter) -> None:
    from pipelines.rank.recommender import Recommender

    folder = tmp_path / bundle_dir.name
    shutil.copytree(bundle_dir, folder)
    ranker, _ = fitted
    ranker.save(folder / RANKER_FILE)
    bundle = load_bundle(folder)
    loaded = ranker_for_bundle(bundle)
    assert loaded is not None and loaded.terms is not None
    rec = Recommender(bundle, query_mood=mood_adapter, ranker=loaded, max_workers=0)
    try:
        full = rec.recommend(RecommendRequest(query="sad rainy piano", top_k=10, diversity=0.0))
        qu = rec.understand("sad rainy piano")
        cands = rec.retrieve(qu, rec.allowed_ids(None))
        sb = rec.score_breakdown(cands, qu)
        want = loaded.predict(cands, qu, rec.priors, sb)
        top = cands.rows[np.argsort(-want, kind="stable")[:10]]
        ids = bundle.tracks["track_id"].to_list()
        got = [t.track_id for t in full.results]
        assert got[0] == ids[int(top[0])]  # the ranker's best candidate leads (no diversity)
        assert set(got) <= {ids[int(r)] for r in cands.rows}
    finally:
        rec.close()
