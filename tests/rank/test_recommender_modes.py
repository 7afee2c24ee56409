"""Recommendation modes over the real test bundle (see conftest): the hand weights, the ablations,
mode validation at the edge and in Python, and the learned-ranker hook of ``mode="full"``."""

import msgspec
import numpy as np
import pytest

from pipelines.errors import InvalidInputError
from pipelines.index import bundle as B
from pipelines.rank import recommender as ranking
from pipelines.rank import types
from pipelines.rank.types import RecommendRequest, TargetMood

QUERY = "sad mellow piano ballad"


def _ids(res: types.RecommendResponse) -> list[str]:
    return [t.track_id for t in res.results]


def test_full_is_hand_without_a_ranker(rec) -> None:
    assert rec.ranker is None
    full = rec.recommend(RecommendRequest(query=QUERY, top_k=15))
    hand = rec.recommend(RecommendRequest(query=QUERY, top_k=15, mode="hand"))
    assert _ids(full) == _ids(hand) and [t.score for t in full.results] == [t.score for t in hand.results]


@pytest.mark.parametrize(("mode", "signal"), [("no_text", "text"), ("no_audio", "audio"), ("no_mood", "mood")])
def test_ablation_zeroes_its_signal(rec, mode: str, signal: str) -> None:
    res = rec.recommend(RecommendRequest(query=QUERY, top_k=10, mode=mode, explain=True))
    assert len(res.results) == 10
    for t in res.results:
        assert t.explanation[f"w_{signal}"] == 0.0 and t.signals[signal] == 0.0
        assert abs(sum(t.signals.values()) - t.score) < 1e-5


def test_ablations_change_what_they_remove(rec) -> None:
    target = TargetMood(valence=-0.6, arousal=-0.4)
    va = rec.priors.va

    def mood_dist(res) -> float:
        return float(np.linalg.norm(va[rec.rows_of(_ids(res))] - [-0.6, -0.4], axis=1).mean())

    full = rec.recommend(RecommendRequest(query="rock guitar solo", top_k=10, target=target))
    no_mood = rec.recommend(RecommendRequest(query="rock guitar solo", top_k=10, target=target, mode="no_mood"))
    assert mood_dist(full) < mood_dist(no_mood)
    q = rec.understand("rock guitar solo").embedding
    text = rec.bundle.text.vectors

    def text_sim(res) -> float:
        return float((np.asarray(text[np.sort(rec.rows_of(_ids(res)))]) @ q).mean())

    no_text = rec.recommend(RecommendRequest(query="rock guitar solo", top_k=10, target=target, mode="no_text"))
    assert text_sim(full) > text_sim(no_text)


def test_mode_is_validated_at_the_edge_and_in_python(rec) -> None:
    for mode in types.MODES:
        req = msgspec.json.decode(msgspec.json.encode({"query": "calm", "mode": mode}), type=RecommendRequest)
        assert req.mode == mode
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"query": "calm", "mode": "bogus"}', type=RecommendRequest)
    with pytest.raises(InvalidInputError) as e:
        rec.recommend(RecommendRequest(query="calm", mode="bogus"))  # type: ignore[arg-type]
    assert e.value.field == "mode"


class MoodDistanceRanker:
    """A real (if simple) ranker: candidates closer to the query's mood score higher; it records
    what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def predict(self, cands, qu, priors, breakdown) -> np.ndarray:
        self.calls.append((len(cands), len(breakdown.total)))
        assert priors.audio_conf.shape == priors.mood_source.shape == priors.audio_extracted.shape
        va = np.nan_to_num(priors.va[cands.rows], nan=9.0)
        return -np.linalg.norm(va - [qu.valence, qu.arousal], axis=1) * 10.0 + 3.0  # any scale


def test_ranker_orders_full_mode_and_hand_still_explains(bundle_dir, mood_adapter, rec) -> None:
    ranker = MoodDistanceRanker()
    r = ranking.Recommender(B.load_bundle(bundle_dir), query_mood=mood_adapter, ranker=ranker)
    try:
        req = dict(query=QUERY, top_k=12, diversity=0.0, explain=True, target=TargetMood(valence=0.7, arousal=0.6))
        res = r.recommend(RecommendRequest(**req))
        assert ranker.calls and ranker.calls[0][0] == ranker.calls[0][1] == res.metadata.total_candidates
        scores = [t.score for t in res.results]
        assert all(0.0 <= s <= 1.0 for s in scores) and scores[0] == pytest.approx(1.0, abs=1e-6)
        # relevance is the ranker's: the first pick is the candidate nearest the target mood
        qu = r.steer(r.understand(QUERY), seed_rows=np.zeros(0, np.int64), target=req["target"])
        cands = r.retrieve(qu, r.allowed_ids(None))
        nearest = cands.rows[np.argmax(ranker.predict(cands, qu, r.priors, r.score_breakdown(cands, qu)))]
        assert res.results[0].track_id == r.bundle.tracks["track_id"][int(nearest)]
        dist = np.linalg.norm(r.priors.va[r.rows_of(_ids(res))] - [0.7, 0.6], axis=1)
        assert dist.mean() < np.linalg.norm(r.priors.va - [0.7, 0.6], axis=1).min() + 0.3
        for t in res.results:  # the hand breakdown still explains each result
            assert {"text", "audio", "mood", "collab"} <= set(t.signals) and "w_mood" in t.explanation
        # the hand weights and the ablations ignore the ranker
        calls = len(ranker.calls)
        for mode in ("hand", "no_text", "baseline"):
            got = r.recommend(RecommendRequest(**{**req, "mode": mode}))
            assert _ids(got) == _ids(rec.recommend(RecommendRequest(**{**req, "mode": mode})))
        assert len(ranker.calls) == calls
    finally:
        r.close()


def test_unit_relevance_maps_within_the_request() -> None:
    got = ranking.unit_relevance(np.array([-3.0, 1.0, 5.0, np.nan]))
    np.testing.assert_allclose(got, [0.0, 0.5, 1.0, 0.0])
    assert (ranking.unit_relevance(np.array([2.0, 2.0])) == 1.0).all()
    assert len(ranking.unit_relevance(np.zeros(0))) == 0
