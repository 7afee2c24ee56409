"""Training the learned ranker on real shipped rows: the labelled pool, the held-out view (a track's
mood tags never reach its own features), the queries, the examples and a fit."""

from dataclasses import dataclass

import numpy as np
import polars as pl
import pytest

from pipelines import schema as S
from pipelines.heal.textdoc import build_text_doc
from pipelines.mood.lexicon import MoodLexicon
from pipelines.mood.tags import combine_tag_moods, scorer_for
from pipelines.rank.features import FEATURE_NAMES, norm_term
from pipelines.rank.ranker_fit import select_and_fit
from pipelines.rank.ranker_training import (
    build_examples,
    held_out_view,
    labelled_pool,
    training_queries,
)
from pipelines.rank.understand import QueryLexicons, QueryReader, load_moodtheme_terms
from tests.conftest import open_file

N_TRACKS = 150
EMPTY_EMOPIA = pl.DataFrame(schema={"clip_id": pl.String, "split": pl.String, "valence_sign": pl.Int64,
                                    "arousal_sign": pl.Int64})
EMPTY_IMMICH = pl.DataFrame(schema={"path": pl.String, S.VALENCE: pl.Float64, S.AROUSAL: pl.Float64})


@dataclass
class Store:
    """Real MTG-Jamendo rows with mood/theme tags, as the demo store holds them (text moods)."""

    tracks: pl.DataFrame
    vectors: np.ndarray


def _docs(artists, genres, tags) -> list[str]:
    return [build_text_doc(title=None, artist=a, genre=g, tags=", ".join(t), description=None, vibe=None)
            for a, g, t in zip(artists, genres, tags)]


@pytest.fixture(scope="module")
def setting(embed_cached, mood_adapter):
    mtg = pl.read_csv(open_file("corpus/mtg_jamendo_tags.csv"), schema_overrides={"moods": pl.String})
    mtg = mtg.filter(pl.col("moods").is_not_null() & pl.col("genres").is_not_null()).head(N_TRACKS)
    tags = [[x for x in f"{g}|{i or ''}|{m}".split("|") if x] for g, i, m in
            zip(mtg["genres"], mtg["instruments"], mtg["moods"])]
    genres = [g.split("|")[0] for g in mtg["genres"]]
    docs = _docs(mtg["artist_id"].to_list(), genres, tags)
    vectors = embed_cached(docs)
    mood = mood_adapter.predict(docs, embeddings=vectors)
    n = mtg.height
    tracks = pl.DataFrame({
        S.TRACK_ID: [f"jamendo:{j}" for j in mtg["jamendo_track_id"]], S.ARTIST: mtg["artist_id"],
        S.GENRE: genres, S.TAGS: tags, S.PLAYBACK_COUNT: [None] * n, S.VALENCE: mood[:, 0],
        S.AROUSAL: mood[:, 1], S.MOOD_SOURCE: ["text"] * n, S.MOOD_CONFIDENCE: mood[:, 2],
        S.AUDIO_SOURCE: ["none"] * n,
    }, schema_overrides={S.PLAYBACK_COUNT: pl.Int64, S.VALENCE: pl.Float32, S.AROUSAL: pl.Float32,
                         S.MOOD_CONFIDENCE: pl.Float32})
    lexicon = MoodLexicon.from_files()
    scorer = scorer_for(lexicon=lexicon)
    terms = load_moodtheme_terms()
    if not terms:
        pytest.skip("MTG-Jamendo mood/theme tag list not available")
    pool = labelled_pool(tracks=tracks, mood_terms=terms, scorer=scorer, emopia=EMPTY_EMOPIA, immich=EMPTY_IMMICH)
    return Store(tracks=tracks, vectors=vectors), tracks, lexicon, scorer, terms, pool


def test_the_pool_is_labelled_by_mood_tags_which_are_held_out(setting) -> None:
    _, tracks, _, scorer, terms, pool = setting
    moods = {norm_term(t) for t in terms}
    assert len(pool.rows) >= 40
    assert set(pool.kinds) == {"jamendo"}
    tags = tracks[S.TAGS].to_list()
    for row, va in zip(pool.rows[:20], pool.label_va[:20]):
        mood_tags = [t for t in tags[row] if norm_term(t) in moods]
        want = combine_tag_moods([m for m in (scorer.tag_mood(t) for t in mood_tags) if m is not None])
        np.testing.assert_allclose(va, want[:2], atol=1e-9)
        assert pool.held_tags[int(row)] == [t for t in tags[row] if norm_term(t) not in moods]
    # at most MAX_PER_ARTIST per artist, and each row's group is its artist
    artists = tracks[S.ARTIST].to_list()
    assert all(g == f"artist:{artists[r]}" for r, g in zip(pool.rows, pool.groups))


def test_the_held_out_view_rebuilds_text_without_the_mood_tags(setting, embed_cached, mood_adapter) -> None:
    store, tracks, _, _, terms, pool = setting
    moods = {norm_term(t) for t in terms}
    artists = tracks[S.ARTIST].to_list()
    genres = tracks[S.GENRE].to_list()

    def docs_of(rows, tags):
        return [build_text_doc(title=None, artist=artists[r], genre=genres[r], tags=", ".join(t), description=None,
                               vibe=None) for r, t in zip(rows, tags)]

    def moods_of(rows, docs, vectors, tags):
        pred = mood_adapter.predict(docs, embeddings=vectors)
        return pl.DataFrame({S.VALENCE: pred[:, 0], S.AROUSAL: pred[:, 1], S.MOOD_CONFIDENCE: pred[:, 2],
                             S.MOOD_SOURCE: ["text"] * len(rows)})

    vectors = store.vectors
    held = held_out_view(tracks=tracks, text_vectors=vectors, pool=pool, docs_of=docs_of, encoder=embed_cached,
                         moods_of=moods_of)
    rows = sorted(pool.held_tags)
    docs = docs_of(rows, [pool.held_tags[r] for r in rows])
    for doc in docs:
        assert not any(f" {m}," in f" {doc.lower()}," or f" {m}." in f" {doc.lower()}." for m in moods if len(m) > 3)
    np.testing.assert_allclose(held.text_vectors[rows], embed_cached(docs), atol=1e-6)
    others = np.setdiff1d(np.arange(tracks.height), rows)
    np.testing.assert_array_equal(held.text_vectors[others], vectors[others])
    assert held.tracks[S.TAGS].to_list()[rows[0]] == pool.held_tags[rows[0]]
    want = mood_adapter.predict(docs, embeddings=embed_cached(docs))
    np.testing.assert_allclose(held.tracks[S.VALENCE].to_numpy()[rows], want[:, 0], atol=1e-5)
    # rows outside the pool keep their mood
    np.testing.assert_array_equal(held.tracks[S.VALENCE].to_numpy()[others], tracks[S.VALENCE].to_numpy()[others])

    queries = training_queries(emobank=pl.read_csv(open_file("text/emobank_train_dev.csv")), mood_terms=terms,
                               scorer=setting[3]).head(40)
    assert queries.height == 40 and queries[S.VALENCE].abs().max() <= 1.0
    reader = QueryReader(encoder=embed_cached, query_mood=mood_adapter, lexicon=setting[2],
                         lexicons=QueryLexicons.from_tracks(held.tracks, mood_terms=terms))
    n = tracks.height
    va = held.tracks.select(S.VALENCE, S.AROUSAL).to_numpy()
    ex = build_examples(held=held, audio_vectors=np.zeros((n, 0), np.float32), pool=pool, queries=queries,
                        reader=reader, has_audio=np.zeros(n, bool), has_mood=~np.isnan(va).any(axis=1))
    assert ex.x.shape[1] == len(FEATURE_NAMES) and np.isfinite(ex.x).all()
    assert set(np.unique(ex.y)) <= {0, 1, 2, 3, 4} and (ex.y > 0).any()
    assert (np.diff(ex.qid) >= 0).all() and len(np.unique(ex.qid)) == 40  # grouped by query
    assert set(ex.group) <= set(pool.groups)
    ranker, report = select_and_fit(ex, grid=((2, 0.3, 10),), n_folds=2, threads=1)
    assert 0.0 < report.cv[0]["ranker_ndcg@10"] <= 1.0 and 0.0 < report.cv[0]["hand_ndcg@10"] <= 1.0
    assert ranker.scores(ex.x[:5]).shape == (5,)
