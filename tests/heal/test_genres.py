"""Genre chain on real MTG-Jamendo rows: hide 20 % of known genres (seeded), impute, score.

Cluster features are TF-IDF/SVD of each track's instrument + mood tags with every genre tag removed
(the hidden genre cannot leak through its own tag text).
"""

from collections import Counter

import numpy as np
import polars as pl
import pytest

from pipelines import schema as S
from pipelines.heal.democorpus import jamendo_rows
from pipelines.heal.genres import GENRE_CONFIDENCE, UNKNOWN_GENRE, impute_genres
from pipelines.heal.textdoc import split_tags
from pipelines.store import DATA_DIR

pytestmark = pytest.mark.skipif(not (DATA_DIR / "corpus" / "mtg_jamendo_tags.csv").exists(),
                                reason="bundled data/ missing")

N_ROWS = 3000


@pytest.fixture(scope="module")
def setup():
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    rows = jamendo_rows(data_dir=DATA_DIR, limit=N_ROWS)
    src = pl.read_csv(DATA_DIR / "corpus" / "mtg_jamendo_tags.csv", schema_overrides={"genres": pl.Utf8})
    genre_names = {g.lower() for v in src["genres"].drop_nulls() for g in v.split("|")}
    texts = [",".join(t for t in split_tags(tags) if t.lower() not in genre_names) for tags in rows[S.TAGS]]
    tfidf = TfidfVectorizer(token_pattern=r"[^,]+").fit_transform(texts)
    x = TruncatedSVD(n_components=64, random_state=0).fit_transform(tfidf)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
    x[np.array([not t for t in texts])] = 0.0  # no instrument/mood tags → no features
    truth = rows[S.GENRE].to_list()
    known = np.array([g is not None for g in truth])
    hidden = np.random.default_rng(0).choice(np.where(known)[0], size=int(known.sum()) // 5, replace=False)
    masked = list(truth)
    for i in hidden:
        masked[i] = None
    train = Counter(g for g in masked if g)
    majority = train.most_common(1)[0][0]
    return rows, x, truth, masked, hidden, majority


def _scores(out: pl.DataFrame, truth, hidden, majority, source: str) -> tuple[int, float, float]:
    pred = np.array(out[S.GENRE].to_list(), dtype=object)[hidden]
    src = np.array(out[S.GENRE_SOURCE].to_list())[hidden]
    t = np.array([truth[i] for i in hidden], dtype=object)
    m = src == source
    # majority-class rate on the same rows the step covered (the baseline it must beat)
    return int(m.sum()), float(np.mean(pred[m] == t[m])), float(np.mean(t[m] == majority))


def test_chain_contract(setup):
    rows, x, truth, masked, hidden, _ = setup
    out = impute_genres(track_ids=rows[S.TRACK_ID].to_list(), artists=rows[S.ARTIST].to_list(),
                        genres=masked, vectors=x, k=20, seed=0)
    assert out.columns == [S.TRACK_ID, S.GENRE, S.GENRE_SOURCE, GENRE_CONFIDENCE]
    assert out[S.TRACK_ID].to_list() == rows[S.TRACK_ID].to_list()
    assert out[S.GENRE].null_count() == 0
    assert set(out[S.GENRE_SOURCE].unique()) <= {"observed", "artist", "cluster", "unknown"}
    obs = out.filter(pl.col(S.GENRE_SOURCE) == "observed")
    assert obs.height == sum(1 for g in masked if g) and (obs[GENRE_CONFIDENCE] == 1.0).all()
    assert obs[S.GENRE].to_list() == [g for g in masked if g]  # observed genres are never changed
    unk = out.filter(pl.col(S.GENRE_SOURCE) == "unknown")
    assert (unk[S.GENRE] == UNKNOWN_GENRE).all() and (unk[GENRE_CONFIDENCE] == 0.0).all()
    conf = out.filter(pl.col(S.GENRE_SOURCE).is_in(["artist", "cluster"]))[GENRE_CONFIDENCE]
    assert ((conf > 0) & (conf < 1)).all()
    again = impute_genres(track_ids=rows[S.TRACK_ID].to_list(), artists=rows[S.ARTIST].to_list(),
                          genres=masked, vectors=x, k=20, seed=0)
    assert again.equals(out)  # seeded


def test_artist_step_beats_majority_on_hidden(setup):
    rows, x, truth, masked, hidden, majority = setup
    out = impute_genres(track_ids=rows[S.TRACK_ID].to_list(), artists=rows[S.ARTIST].to_list(),
                        genres=masked, vectors=x, k=20, seed=0)
    n, acc, maj = _scores(out, truth, hidden, majority, "artist")
    # measured (3,000 rows, 572 hidden): artist covers 541 at accuracy 0.57; majority rate there 0.20
    assert n >= 0.8 * len(hidden)
    assert acc > maj + 0.2, (acc, maj)


def test_cluster_step_beats_majority_on_hidden(setup):
    rows, x, truth, masked, hidden, majority = setup
    # Ablation: no artists, so every hidden row goes to the cluster step (or Unknown).
    out = impute_genres(track_ids=rows[S.TRACK_ID].to_list(), artists=[None] * rows.height,
                        genres=masked, vectors=x, k=20, seed=0)
    n, acc, maj = _scores(out, truth, hidden, majority, "cluster")
    # measured: cluster covers 92 of 572 hidden rows at accuracy 0.53; majority rate there 0.24
    assert n >= 30
    assert acc > maj + 0.15, (acc, maj)


def test_artist_ties_and_case():
    out = impute_genres(
        track_ids=["1", "2", "3", "4", "5"], artists=["A", "a", "A ", "B", None],
        genres=["Rock", "rock", None, None, None], vectors=np.zeros((5, 4)), k=2,
    )
    r = {t: (g, s, c) for t, g, s, c in out.iter_rows()}
    assert r["3"] == ("Rock", "artist", pytest.approx(2 / 3))  # 2 agreeing tracks → 2/(2+1)
    assert r["4"][1] == r["5"][1] == "unknown"  # no artist genres, no features
