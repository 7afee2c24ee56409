"""Confidence- and spread-aware hand scoring over the real test bundle's candidates (see conftest):
the spread rule, imputed audio counted by its confidence, mood evidence by confidence and source."""

import dataclasses

import numpy as np
import polars as pl
import pytest

from pipelines import schema as S
from pipelines.rank import retrieve, score

QUERY = "sad mellow piano ballad"


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _candidates(rec, query: str = QUERY):
    qu = rec.understand(query)
    return qu, rec.retrieve(qu, rec.allowed_ids(None))


def test_normalise_follows_the_spread_rule() -> None:
    rng = np.random.default_rng(0)
    sim = rng.uniform(0.2, 0.8, 300).astype(np.float32)  # test input: a signal with spread
    ones = np.ones(300, np.float32)
    v, spread = score.normalise(sim, ones, floor=0.05)
    assert (spread == 1.0).all() and 0.0 <= v.min() and v.max() <= 1.0
    assert _spearman(v, sim) == pytest.approx(1.0)
    flat, s0 = score.normalise(np.full(300, 0.9, np.float32), ones, floor=0.05)
    assert (s0 == 0.0).all() and (flat == 0.5).all()  # a constant carries nothing
    tiny = 0.9 + 0.01 * (sim - sim.mean()) / sim.std()  # sd 0.01 = a fifth of the floor
    np.testing.assert_allclose(score.normalise(tiny, ones, floor=0.05)[1], 0.2, atol=1e-3)
    none, s1 = score.normalise(sim, np.zeros(300, np.float32), floor=0.05)
    assert (s1 == 0.0).all() and (none == 0.5).all()  # no evidence anywhere: neutral
    half, _ = score.normalise(sim, np.full(300, 0.5, np.float32), floor=0.05)
    np.testing.assert_allclose(half - 0.5, (v - 0.5) * 0.5, atol=1e-6)  # half the evidence, half the move
    # groups are standardised on their own: a shifted copy of the signal gets the same values
    both, _ = score.normalise(np.r_[sim, sim + 0.3], np.r_[ones, ones], 0.05, groups=np.r_[ones, 0 * ones] > 0)
    np.testing.assert_allclose(both[:300], both[300:], atol=1e-6)


def test_a_constant_signal_carries_no_weight(rec) -> None:
    qu, cands = _candidates(rec)
    real = score.score(cands, qu, rec.priors)
    assert real.explanation["w_text"][0] > 0  # the real text similarities vary
    flat = dataclasses.replace(cands, text_sim=np.full(len(cands), 0.42, np.float32))
    got = score.score(flat, qu, rec.priors)
    assert (got.explanation["w_text"] == 0).all() and (got.contrib["text"] == 0).all()
    np.testing.assert_allclose(got.total, score.score(cands, qu, rec.priors, mode="no_text").total, atol=1e-6)
    # the bundle has no play counts: collab is constant 0 and has no weight either
    assert (real.explanation["w_collab"] == 0).all()
    for t in range(len(cands)):
        assert real.total[t] == pytest.approx(sum(float(c[t]) for c in real.contrib.values()), abs=1e-5)


def _audio_test_input(rec, cands, *, n_extracted: int, seed: int = 1):
    """Test input (the bundle has no audio): 64-d vectors stand for recordings, a shared direction
    (what all music has in common) plus an individual part of the same size; each imputed vector is
    the normalised mean of 40 random recordings, as the kNN imputation averages donors. The audio
    query is the mean of five recordings. Returns (candidates with audio similarities, priors with
    audio sources, extracted mask over the candidates)."""
    rng = np.random.default_rng(seed)
    c = len(cands)
    shared = rng.normal(size=64)
    rec_vecs = shared / np.linalg.norm(shared) + rng.normal(size=(200, 64)) / 8.0
    rec_vecs /= np.linalg.norm(rec_vecs, axis=1, keepdims=True)
    extracted = np.zeros(c, bool)
    extracted[rng.choice(c, n_extracted, replace=False)] = True
    vecs = np.empty((c, 64))
    vecs[extracted] = rec_vecs[:n_extracted]
    donors = rng.integers(0, 200, size=((~extracted).sum(), 40))
    vecs[~extracted] = rec_vecs[donors].mean(axis=1)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    query = rec_vecs[rng.choice(200, 5, replace=False)].mean(0)
    query /= np.linalg.norm(query)
    with_audio = dataclasses.replace(cands, audio_query=query.astype(np.float32),
                                     audio_sim=(vecs @ query).astype(np.float32))
    n = len(rec.bundle)
    is_extracted = np.zeros(n, bool)
    is_extracted[cands.rows[extracted]] = True
    tracks = rec.bundle.tracks.with_columns(
        pl.Series(S.AUDIO_SOURCE, np.where(is_extracted, "extracted", "ensemble")),
        pl.Series(S.AUDIO_CONFIDENCE, np.where(is_extracted, 1.0, 0.22)),  # the demo store's mean imputation confidence
    )
    priors = score.TrackPriors.from_tracks(tracks, has_audio=np.ones(n, bool), has_mood=rec.bundle.has_mood)
    return with_audio, priors, extracted


def test_track_priors_carry_audio_confidence_and_mood_source(rec) -> None:
    _, cands = _candidates(rec)
    _, priors, extracted = _audio_test_input(rec, cands, n_extracted=30)
    rows = cands.rows
    assert priors.audio_conf.dtype == np.float32 and priors.audio_extracted.dtype == bool
    np.testing.assert_array_equal(priors.audio_extracted[rows], extracted)
    np.testing.assert_allclose(priors.audio_conf[rows], np.where(extracted, 1.0, 0.22), atol=1e-6)
    assert priors.mood_source.dtype == np.int8
    assert set(priors.mood_source.tolist()) == {score.MOOD_SOURCES.index("text")}
    # the conftest bundle: no audio vectors, so no audio confidence
    assert (rec.priors.audio_conf == 0).all() and not rec.priors.audio_extracted.any()
    codes = score.mood_source_codes(pl.Series([None, "audio", "fused", "imputed", "somethingelse"]))
    assert [score.MOOD_SOURCES[i] for i in codes] == ["none", "audio", "fused", "imputed", "other"]


def test_imputed_audio_does_not_dominate(rec) -> None:
    qu, cands = _candidates(rec)
    with_audio, priors, extracted = _audio_test_input(rec, cands, n_extracted=30)
    imputed = ~extracted
    sims = with_audio.audio_sim
    assert sims[imputed].std() < 0.5 * sims[extracted].std()  # averaging flattens the imputed vectors
    sb = score.score(with_audio, qu, priors)
    audio = sb.contrib["audio"] - sb.explanation["w_audio"] * 0.5  # move away from the neutral value
    assert np.abs(audio[imputed]).mean() < 0.25 * np.abs(audio[extracted]).mean()  # a recording counts more
    assert abs(audio[imputed].mean()) < 1e-3  # no shared bonus for being an average
    # among the imputed tracks the order is the one without audio
    no_audio = score.score(with_audio, qu, priors, mode="no_audio")
    assert _spearman(sb.total[imputed], no_audio.total[imputed]) > 0.97
    # a recording that matches the audio query outweighs every imputed vector
    best = np.flatnonzero(extracted)[np.argmax(sims[extracted])]
    assert audio[best] > audio[imputed].max()
    # with imputed audio only, audio barely moves the ranking
    only_imputed, priors_i, _ = _audio_test_input(rec, cands, n_extracted=0)
    a, b = score.score(only_imputed, qu, priors_i), score.score(only_imputed, qu, priors_i, mode="no_audio")
    assert _spearman(a.total, b.total) > 0.97


def test_strong_mood_evidence_ranks_above_weak(rec) -> None:
    qu, cands = _candidates(rec)
    qu = dataclasses.replace(qu, valence=-0.5, arousal=-0.3, confidence=1.0, query_type="mood")
    rows = cands.rows
    # Test condition: every other candidate's mood is marked imputed (trust halved), moods unchanged.
    weak = np.zeros(len(rec.bundle), bool)
    weak[rows[::2]] = True
    tracks = rec.bundle.tracks.with_columns(pl.Series(S.MOOD_SOURCE, np.where(weak, "imputed", "text")))
    priors = score.TrackPriors.from_tracks(tracks, has_audio=rec.bundle.has_audio, has_mood=rec.bundle.has_mood)
    ev = priors.mood_evidence(rows)
    np.testing.assert_allclose(ev[weak[rows]], 0.5 * rec.priors.mood_evidence(rows)[weak[rows]], atol=1e-6)
    sb = score.score(cands, qu, priors)
    close = sb.explanation["mood_value"] > 0.5  # closer to the target than the candidates' mean
    strong_c, weak_c = close & ~weak[rows], close & weak[rows]
    assert strong_c.sum() >= 10 and weak_c.sum() >= 10
    assert sb.contrib["mood"][strong_c].mean() > sb.contrib["mood"][weak_c].mean()
    top = np.argsort(-sb.contrib["mood"])[:20]
    assert (~weak[rows[top]]).mean() >= 0.75  # the best mood matches are mostly strong evidence
    # and more confident moods count more, whatever the source
    conf = rec.priors.mood_conf[rows]
    lo, hi = np.argmin(conf), np.argmax(conf)
    assert rec.priors.mood_evidence(rows)[hi] > rec.priors.mood_evidence(rows)[lo]


def test_mood_match_counts_a_stronger_mood_of_the_same_kind_as_a_match() -> None:
    target = np.array([-0.3, 0.2], np.float32)
    va = np.array([[-0.3, 0.2], [-0.8, 0.7], [-0.1, 0.2], [0.3, 0.2], [-0.3, -0.2], [np.nan, 0.1]], np.float32)
    got = score.mood_match(va, target)
    assert got[0] == got[1] == 1.0  # at the target, or beyond it on its side: a full match
    np.testing.assert_allclose(got[2], 1 - 0.2 / score.MOOD_MAX_DIST, atol=1e-6)  # short of it by 0.2
    np.testing.assert_allclose(got[3], 1 - 0.6 / score.MOOD_MAX_DIST, atol=1e-6)  # across 0
    np.testing.assert_allclose(got[4], 1 - 0.4 / score.MOOD_MAX_DIST, atol=1e-6)
    assert got[5] == 0.0  # unknown mood
    np.testing.assert_allclose(retrieve.mood_anchor(-0.1, 0.0), [-retrieve.MOOD_ANCHOR, retrieve.MOOD_ANCHOR])
    np.testing.assert_allclose(retrieve.mood_anchor(0.8, -0.5), [0.8, -0.5])
