"""Audio-only "sounds like" precision on real recordings (``segments``: 3-second segments of bundled
clips as tracks, their kind as the genre; features from the real extractor)."""

import numpy as np
import polars as pl
import pytest

from pipelines import schema as S
from pipelines.audio.features import FEATURE_COLUMNS
from pipelines.measure import similarity as sim
from tests.measure.conftest import SOURCES, needs_clips


def test_cosine_neighbours_match_brute_force_and_never_return_the_row_itself() -> None:
    x = np.random.default_rng(0).normal(size=(60, 7))
    nn = sim.cosine_neighbours(x, 5)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    for i, row in enumerate(nn):
        sims = u @ u[i]
        sims[i] = -np.inf
        assert list(row) == list(np.argsort(-sims, kind="stable")[:5])
        assert i not in row
    assert sim.cosine_neighbours(x[:3], 10).shape == (3, 2)  # at most n - 1 others
    assert sim.cosine_neighbours(np.ones((4, 2)), 2).tolist() == [[1, 2], [0, 2], [0, 1], [0, 1]]  # ties: row order


def test_genre_precision_counts_hits_per_query_and_per_genre() -> None:
    genres = {"a": "rock", "b": "rock", "c": "pop", "d": "pop", "e": "pop"}
    neighbours = {"a": ["b", "c"], "c": ["d", "x"], "d": ["c", "e"], "x": ["a", "b"]}  # x has no genre
    out = sim.genre_precision(neighbours, genres, k=2)
    assert out["n"] == 3 and out["precision@2"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert out["by_genre"] == {"pop": {"precision@2": 0.75, "n": 2}, "rock": {"precision@2": 0.5, "n": 1}}
    assert np.isnan(sim.genre_precision({}, genres, k=2)["precision@2"])
    assert sim.chance_precision(["a", "b", "c", "d", "e"], genres) == pytest.approx((2 * 1 / 4 + 3 * 2 / 4) / 5)


def test_primary_genre_is_the_first_of_the_cell_case_folded() -> None:
    corpus = pl.DataFrame({S.TRACK_ID: ["1", "2", "3", "4"], S.GENRE: ["Rock, Pop", " electronic|house", "", None]})
    assert sim.primary_genres(corpus) == {"1": "rock", "2": "electronic"}
    assert sim.primary_genres(corpus.drop(S.GENRE)) == {}


@needs_clips
def test_segments_of_a_kind_sound_alike_and_shuffled_genres_fall_to_chance(segments) -> None:
    feats, genres = segments
    out = sim.sounds_like(genres=genres, features=feats, k=5)
    assert out["n_tracks"] == feats.height == out["n_with_genre"] and out["genres"] == sorted(SOURCES)
    methods = out["methods"]
    assert set(methods) == {"handcrafted", "handcrafted_timbre", "msd_embedding", "mtt_embedding", "backbone",
                            "backbone+handcrafted"}
    assert methods["handcrafted"]["dims"] == len(FEATURE_COLUMNS)
    assert methods["handcrafted_timbre"]["dims"] == len(sim.TIMBRE_COLUMNS)
    assert methods["backbone"]["dims"] == 32 + 12
    assert methods["backbone+handcrafted"]["dims"] == 32 + 12 + len(FEATURE_COLUMNS)
    for m in methods.values():
        assert m["n"] == feats.height and set(m["by_genre"]) == set(SOURCES)
    assert methods["handcrafted"]["precision@5"] > out["chance"] + 0.3
    assert methods["msd_embedding"]["precision@5"] > out["chance"] + 0.2
    # the same features with the genres shuffled: precision at chance, on average over shuffles
    ids, labels = list(genres), list(genres.values())
    rng = np.random.default_rng(5)
    shuffled = [
        sim.sounds_like(genres=dict(zip(ids, rng.permutation(labels))), features=feats, k=5)
        ["methods"]["handcrafted"]["precision@5"]
        for _ in range(30)
    ]
    assert abs(float(np.mean(shuffled)) - out["chance"]) < 0.05


@needs_clips
def test_tracks_missing_an_embedding_leave_only_that_method(segments) -> None:
    feats, genres = segments
    first = feats[S.TRACK_ID][0]
    holed = feats.with_columns(
        pl.when(pl.col(S.TRACK_ID) == first).then(None).otherwise(pl.col("mtt_embedding")).alias("mtt_embedding")
    )
    methods = sim.sounds_like(genres=genres, features=holed, k=5)["methods"]
    assert methods["handcrafted"]["n"] == methods["msd_embedding"]["n"] == feats.height
    assert methods["mtt_embedding"]["n"] == methods["backbone"]["n"] == feats.height - 1
    no_backbone = sim.sounds_like(genres=genres, features=feats.drop("msd_embedding", "mtt_embedding"), k=5)
    assert set(no_backbone["methods"]) == {"handcrafted", "handcrafted_timbre"}


@needs_clips
def test_fewer_than_two_genres_is_skipped_and_served_neighbours_are_scored(segments) -> None:
    feats, genres = segments
    speech_only = {t: g for t, g in genres.items() if g == "speech"}
    assert "skipped" in sim.sounds_like(genres=speech_only, features=feats)

    def served(ids: list[str], k: int) -> dict[str, list[str]]:  # the same genre first: a perfect service
        return {t: [u for u in ids if u != t and genres[u] == genres[t]][:k] for t in ids}

    out = sim.sounds_like(genres=genres, features=feats, served=served, served_dims=16, k=3)
    assert out["methods"]["served"] == {
        "dims": 16, "precision@3": 1.0, "n": feats.height,
        "by_genre": {g: {"precision@3": 1.0, "n": sum(1 for v in genres.values() if v == g)} for g in sorted(SOURCES)},
    }
