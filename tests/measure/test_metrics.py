"""Evaluation metrics against hand-computed cases."""

import math

import numpy as np
import pytest

from pipelines.measure import metrics as M

SQ2 = math.sqrt(2.0)


def test_sign_and_quadrant_accuracy_zero_is_positive():
    # signs (0 positive): pred + − + −, label + + + − → agree T F T T
    assert M.sign_accuracy([0.5, -0.2, 0.0, -1e-4], [0.1, 0.3, 0.2, -0.5]) == pytest.approx(0.75)
    # item 1 both right; 2 arousal wrong; 3 right (0 vs 0.3 both positive); 4 valence wrong
    q = M.quadrant_accuracy([0.5, -0.5, 0.0, 0.2], [0.5, 0.5, -0.1, 0.0],
                             [1.0, -1.0, 0.3, -0.2], [1.0, -1.0, -1.0, 0.4])
    assert q == pytest.approx(0.5)
    assert math.isnan(M.sign_accuracy([], []))


def test_query_and_track_mood_metrics():
    pred = np.array([[1.0, 0.1], [2.0, 0.2], [3.0, 0.3]])
    lab = np.array([[1.0, 0.3], [2.0, 0.2], [3.0, 0.1]])
    m = M.query_mood_metrics(pred, lab)
    assert set(m) == {"valence_r", "arousal_r", "valence_ccc", "arousal_ccc", "n"}
    assert m["valence_r"] == pytest.approx(1.0) and m["arousal_r"] == pytest.approx(-1.0)
    assert m["valence_ccc"] == pytest.approx(1.0)
    # arousal: var 0.02/3 each, cov −0.02/3, equal means → −1
    assert m["arousal_ccc"] == pytest.approx(-1.0) and m["n"] == 3

    pred = np.array([[0.5, 0.5], [-0.2, 0.4], [0.3, -0.3], [0.9, 0.1]])
    lab = np.array([[0.4, 0.6], [0.1, 0.2], [0.2, -0.5], [-0.3, 0.2]])
    t = M.track_mood_metrics(pred, lab, ["audio", "audio", "text", "text"])
    assert set(t) == {"valence_r", "arousal_r", "valence_accuracy", "arousal_accuracy",
                      "quadrant_accuracy", "n", "by_source"}
    # valence signs pred + − + +, label + + + − → 2/4; arousal all agree; quadrant = 2/4
    assert t["valence_accuracy"] == 0.5 and t["arousal_accuracy"] == 1.0
    assert t["quadrant_accuracy"] == 0.5 and t["n"] == 4
    # two points per source: r is ±1 (audio: v 0.5,−0.2 vs 0.4,0.1 → +1; text: 0.3,0.9 vs 0.2,−0.3 → −1)
    assert t["by_source"]["audio"] == {"n": 2, "valence_r": pytest.approx(1.0), "arousal_r": pytest.approx(1.0)}
    assert t["by_source"]["text"]["valence_r"] == pytest.approx(-1.0)
    assert t["by_source"]["text"]["arousal_r"] == pytest.approx(1.0)



# target (0.5, 0.5): relevant = both signs ≥ 0 → a, d, e.  Gains max(0, 1 − dist/√2):
# a: dist 0 → 1;  b: dist 1 → 1 − 1/√2;  c, d, e: dist √0.5 → 0.5;  f: dist √4.5 → 0
LABELS = {"a": (0.5, 0.5), "b": (-0.5, 0.5), "c": (0.6, -0.2), "d": (0.0, 0.0),
          "e": (1.0, 1.0), "f": (-1.0, -1.0)}
TARGET = (0.5, 0.5)
RANKED = ["b", "a", "x", "d"]  # x has no label


def test_precision_recall_hand():
    assert M.precision_at_k(ranked_track_ids=RANKED, labels=LABELS, target=TARGET) == pytest.approx(0.2)
    assert M.precision_at_k(ranked_track_ids=RANKED, labels=LABELS, target=TARGET, k=2) == 0.5
    # 2 relevant in the list / min(50, 3 relevant in corpus)
    assert M.recall_at_k(ranked_track_ids=RANKED, labels=LABELS, target=TARGET) == pytest.approx(2 / 3)
    assert M.recall_at_k(ranked_track_ids=RANKED, labels=LABELS, target=TARGET, k=2) == pytest.approx(0.5)
    # target (−0.1, 0.9): only b is relevant (v < 0, a ≥ 0) → 1 / min(50, 1)
    assert M.recall_at_k(ranked_track_ids=["b"], labels=LABELS, target=(-0.1, 0.9)) == 1.0
    assert math.isnan(M.recall_at_k(ranked_track_ids=["a"], labels={"a": (0.5, 0.5)}, target=(-1, -1)))


def test_ndcg_hand():
    # DCG = (1 − 1/√2)/log2 2 + 1/log2 3 + 0/log2 4 + 0.5/log2 5 = 1.13916125
    # ideal gains 1, .5, .5, .5, 1 − 1/√2, 0 → 1 + .5/log2 3 + .5/2 + .5/log2 5 + .29289/log2 6 = 1.89410972
    got = M.ndcg_at_k(ranked_track_ids=RANKED, labels=LABELS, target=TARGET)
    assert got == pytest.approx(1.1391612514 / 1.8941097197, rel=1e-9)
    assert got == pytest.approx(0.60142305, abs=1e-8)
    ideal = ["a", "c", "d", "e", "b", "f"]
    assert M.ndcg_at_k(ranked_track_ids=ideal, labels=LABELS, target=TARGET) == pytest.approx(1.0)
    assert math.isnan(M.ndcg_at_k(ranked_track_ids=["f"], labels={"f": (-1, -1)}, target=(1, 1)))


def test_mood_alignment_hand():
    # distances b 1, a 0, x (unlabelled) 2√2, d √0.5 → 1 − (1 + 2√2 + √.5)/4/(2√2) = 0.59911165
    got = M.mood_alignment_at_k(ranked_track_ids=RANKED, labels=LABELS, target=TARGET)
    assert got == pytest.approx(1 - (1 + 2 * SQ2 + math.sqrt(0.5)) / 4 / (2 * SQ2))
    assert got == pytest.approx(0.59911165, abs=1e-8)
    assert M.mood_alignment_at_k(ranked_track_ids=["a"], labels=LABELS, target=TARGET) == 1.0
    assert M.mood_alignment_at_k(ranked_track_ids=["f"], labels=LABELS, target=(1, 1)) == pytest.approx(0.0)


def test_artist_diversity_and_ild_hand():
    # non-null, case-folded: a a b c a → 3 distinct / 5
    assert M.artist_diversity(artists=["A", "a ", None, "B", "", "C", "A"]) == pytest.approx(0.6)
    assert math.isnan(M.artist_diversity(artists=[None, ""]))
    # cos(1,2)=0, cos(1,3)=cos(2,3)=1/√2 → mean of 1, 1−1/√2, 1−1/√2 = 0.52859548
    v = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert M.ild(vectors=v) == pytest.approx((1 + 2 * (1 - 1 / SQ2)) / 3)
    assert M.ild(vectors=np.ones((4, 3))) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(M.ild(vectors=np.ones((1, 3))))


def test_ranking_metrics_keys_and_mean():
    m = M.ranking_metrics(
        ranked_track_ids=RANKED, labels=LABELS, target=TARGET,
        artists=["p", "q", None, "p"], text_vectors=np.eye(4),
    )
    assert list(m) == list(M.RANKING_KEYS)
    assert m["artist_diversity@50"] == pytest.approx(2 / 3)
    assert m["ild@50"] == pytest.approx(1.0)  # orthogonal vectors
    mean = M.mean_metrics([{"x": 1.0, "y": float("nan")}, {"x": 3.0, "y": 2.0}])
    assert mean == {"x": 2.0, "y": 2.0}
    assert math.isnan(M.mean_metrics([{"x": float("nan")}])["x"])


def test_latency_summary_hand():
    # linear interpolation over 1..5: p50 = 3, p95 = 1 + .95·4 = 4.8, p99 = 4.96
    assert M.latency_summary([5, 1, 3, 2, 4]) == pytest.approx({"p50": 3.0, "p95": 4.8, "p99": 4.96})
