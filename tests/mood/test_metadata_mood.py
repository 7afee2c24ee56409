"""Genre/tag prior evidence and artist pooling of track moods."""

import numpy as np
import pytest

from pipelines.mood.metadata_mood import (
    IMPUTED_TAG_WEIGHT,
    SPREAD_SDS,
    artist_evidence,
    genre_keys,
    metadata_keys,
    prior_evidence,
    shrinkage_confidence,
)
from pipelines.mood.priors import TagPrior, TagPriors

PRIORS = TagPriors(
    priors={
        "metal": TagPrior(valence=-0.2, arousal=0.6, confidence=0.9, support=300),
        "newage": TagPrior(valence=0.4, arousal=-0.4, confidence=0.9, support=300),
        "piano": TagPrior(valence=0.2, arousal=0.0, confidence=0.5, support=25),
    },
    mean=(0.2, 0.1),
    items={"mtg_jamendo": 1000, "musiccaps": 0},
    spread=(0.4, 0.5),
    reliability=(0.3, 0.3),
    transfer=(0.2, 0.1),
    artist_icc=(0.4, 0.4),
)


def test_genre_keys_split_on_schema_separators() -> None:
    assert genre_keys("Metal / New Age, rock|jazz;  ") == ["Metal", "New Age", "rock", "jazz"]
    assert genre_keys(None) == [] and genre_keys("") == []


def test_metadata_keys_weights_by_source() -> None:
    rated = {"sad"}.__contains__
    keys = metadata_keys(genre="Metal", genre_source="observed", genre_confidence=1.0, tags="piano, sad",
                         tags_source="observed", is_rated=rated)
    assert keys == [("Metal", 1.0), ("piano", 1.0)]  # "sad" is a mood word: read by the tag scorer
    keys = metadata_keys(genre="Metal", genre_source="knn", genre_confidence=0.6, tags="piano",
                         tags_source="imputed", is_rated=rated)
    assert keys == [("Metal", 0.6), ("piano", IMPUTED_TAG_WEIGHT)]
    assert metadata_keys(genre="Unknown", genre_source="unknown", genre_confidence=0.0, tags=None,
                         tags_source=None, is_rated=rated) == []
    assert metadata_keys(genre="Unknown", genre_source=None, genre_confidence=None, tags=None,
                         tags_source=None, is_rated=rated) == []


def test_prior_evidence_deviation_and_confidence() -> None:
    out = prior_evidence([[("Metal", 1.0)], [("new age", 1.0)], [("metal", 0.5)], [("jazz", 1.0)], []], PRIORS)
    assert out[0, 0] == pytest.approx((-0.2 - 0.2) / (SPREAD_SDS * 0.4))
    assert out[0, 1] == pytest.approx((0.6 - 0.1) / (SPREAD_SDS * 0.5))
    assert out[0, 2] == pytest.approx(0.15 * 0.9)  # mean transfer r × support confidence
    assert out[1, 0] > 0 > out[1, 1]  # new age: pleasant and calm
    assert out[2, 2] == pytest.approx(out[0, 2] / 2)  # an imputed genre at half confidence counts half
    assert out[2, 0] == pytest.approx(out[0, 0])
    assert np.isnan(out[3]).all() and np.isnan(out[4]).all()  # no prior, no evidence


def test_prior_evidence_pools_keys_by_weight() -> None:
    out = prior_evidence([[("metal", 1.0), ("piano", 1.0)]], PRIORS)
    w = np.array([0.9, 0.5])
    dev = (np.array([-0.2, 0.2]) - 0.2) / (SPREAD_SDS * 0.4)
    assert out[0, 0] == pytest.approx((w * dev).sum() / w.sum())
    assert out[0, 2] == pytest.approx(0.15 * (w**2).sum() / w.sum())


def test_shrinkage_confidence_grows_with_tracks() -> None:
    c = shrinkage_confidence(np.array([0, 1, 2, 10, 1000]), 0.4)
    assert c[0] == 0.0 and c[1] == pytest.approx(0.4)  # one other track: √(ρ · ρ)
    assert (np.diff(c) > 0).all() and c[-1] == pytest.approx(np.sqrt(0.4), abs=1e-3)
    assert (shrinkage_confidence(np.array([5]), 0.0) == 0).all()


def test_artist_evidence_leaves_the_track_out() -> None:
    nan = [np.nan] * 3
    own = np.array([[0.5, 0.5, 0.5], [-0.5, 0.1, 0.25], nan, [0.9, 0.9, 0.9], [0.2, 0.2, 0.2], nan])
    artists = ["A", "a ", "A", "B", None, "C"]
    out = artist_evidence(own, artists, 0.4)
    assert out[0, :2] == pytest.approx([-0.5, 0.1])  # only its artist's other track
    assert out[1, :2] == pytest.approx([0.5, 0.5])
    # the track without own evidence gets the others' confidence-weighted mean
    assert out[2, :2] == pytest.approx([(0.5 * 0.5 - 0.25 * 0.5) / 0.75, (0.5 * 0.5 + 0.25 * 0.1) / 0.75])
    assert out[2, 2] == pytest.approx(shrinkage_confidence(np.array([2]), 0.4)[0])
    assert out[0, 2] == pytest.approx(shrinkage_confidence(np.array([1]), 0.4)[0])
    assert np.isnan(out[3:]).all()  # alone, unknown artist, artist without evidence
    assert np.isnan(artist_evidence(own, artists, 0.0)).all()
