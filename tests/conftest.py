"""Shared fixtures: real open data (project copy, else the shared copy; skipped when absent)."""

import ast
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines import store
from pipelines.mood import lexicon

N_MUSICCAPS = 1000  # real MusicCaps aspect lists embedded once per session (recall tests, bundle)


def open_file(relative: str) -> Path:
    """Path of an open-data file (``data/`` or ``/work/shared/data/open``), or skip the test."""
    try:
        return lexicon.resolve_open_file(data_dir=store.DATA_DIR, relative=relative)
    except FileNotFoundError:
        pytest.skip(f"open data file {relative} not available")


@pytest.fixture(scope="session")
def musiccaps_rows() -> pl.DataFrame:
    """The first N_MUSICCAPS MusicCaps rows with ``aspects`` (list[str]) and ``aspect_text``."""
    df = pl.read_csv(open_file("corpus/musiccaps.csv")).head(N_MUSICCAPS)
    aspects = [list(dict.fromkeys(a.strip() for a in ast.literal_eval(s) if a.strip())) for s in df["aspect_list"]]
    return df.with_columns(
        pl.Series("aspects", aspects, dtype=pl.List(pl.String)),
        pl.Series("aspect_text", [", ".join(a) for a in aspects]),
    )


@pytest.fixture(scope="session")
def embed_cached():
    """``embed(texts) -> (n, 384)``: MiniLM, each distinct text embedded once per session."""
    from pipelines.embed.sentence import embed_texts

    cache: dict[str, np.ndarray] = {}

    def embed(texts: list[str]) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in cache))
        for t, v in zip(todo, embed_texts(todo)):
            cache[t] = v
        return np.stack([cache[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)

    return embed


@pytest.fixture(scope="session")
def musiccaps_vectors(musiccaps_rows: pl.DataFrame, embed_cached) -> np.ndarray:
    """(N_MUSICCAPS, 384) float32 MiniLM vectors of the rows' aspect texts."""
    return embed_cached(musiccaps_rows["aspect_text"].to_list())


N_EMOBANK = 300  # real EmoBank train rows for the test query-mood stand-in


class RidgeMoodAdapter:
    """Test stand-in for the query-mood model: a real Ridge fit on real EmoBank rows.

    predict(texts, embeddings=None) → (n, 3): valence, arousal (EmoBank 1–5 mapped to [-1, 1]) and
    confidence = cosine similarity to the nearest training sentence, clipped to [0, 1].
    """

    def __init__(self, *, ridge, train_vectors: np.ndarray) -> None:
        self.ridge = ridge
        self.train_vectors = train_vectors

    def predict(self, texts, *, embeddings: np.ndarray | None = None) -> np.ndarray:
        from pipelines.embed.sentence import embed_texts

        x = embed_texts(list(texts)) if embeddings is None else np.asarray(embeddings, np.float32)
        va = np.clip(self.ridge.predict(x), -1.0, 1.0)
        conf = np.clip((x @ self.train_vectors.T).max(axis=1), 0.0, 1.0)
        return np.column_stack([va, conf]).astype(np.float32)


@pytest.fixture(scope="session")
def mood_adapter(embed_cached) -> RidgeMoodAdapter:
    from sklearn.linear_model import Ridge

    eb = pl.read_csv(open_file("text/emobank_train_dev.csv")).filter(pl.col("split") == "train")
    eb = eb.filter(pl.col("text").str.len_chars() > 20).head(N_EMOBANK)
    x = embed_cached(eb["text"].to_list())
    y = np.column_stack([lexicon.rescale_emobank(eb["V"].to_numpy()), lexicon.rescale_emobank(eb["A"].to_numpy())])
    return RidgeMoodAdapter(ridge=Ridge(alpha=1.0).fit(x, y), train_vectors=x)


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory, musiccaps_rows, embed_cached, mood_adapter) -> Path:
    """A real serving bundle: 300 MusicCaps clips + 200 MTG-Jamendo tracks (their own metadata only).

    What the sources lack stays null (titles, years, play counts). Track moods come from the
    stand-in text model (mood_source "text"). No track has an audio vector. Test condition, not a
    claim about the links: every 10th row's url_status is set to DEAD, the rest are UNKNOWN.
    """
    import joblib

    from pipelines import schema as S
    from pipelines.heal.textdoc import build_text_doc, split_tags
    from pipelines.index.version import write_version

    mc = musiccaps_rows.head(300)
    mtg = pl.read_csv(open_file("corpus/mtg_jamendo_tags.csv")).filter(pl.col("genres").is_not_null()).head(200)
    mtg_tags = [split_tags("|".join(x for x in (i, m) if x)) for i, m in zip(mtg["instruments"], mtg["moods"])]
    mtg_docs = [
        build_text_doc(title=None, artist=a, genre=g, tags=", ".join(t), description=None, vibe=None)
        for a, g, t in zip(mtg["artist_id"], mtg["genres"], mtg_tags)
    ]
    docs = mc["aspect_text"].to_list() + mtg_docs
    text_vectors = embed_cached(docs)
    mood = mood_adapter.predict(docs, embeddings=text_vectors)
    n = len(docs)
    tracks = pl.DataFrame({
        S.TRACK_ID: [f"musiccaps:{y}" for y in mc["ytid"]] + mtg["track_id"].to_list(),
        S.TITLE: [None] * n,
        S.ARTIST: [None] * 300 + mtg["artist_id"].to_list(),
        S.YEAR: [None] * n,
        S.GENRE: [None] * 300 + mtg["genres"].to_list(),
        S.TAGS: mc["aspects"].to_list() + mtg_tags,
        S.PERMALINK_URL: [f"https://www.youtube.com/watch?v={y}&t={s}" for y, s in zip(mc["ytid"], mc["start_s"])]
        + [f"https://www.jamendo.com/track/{j}" for j in mtg["jamendo_track_id"]],
        S.URL_STATUS: ["DEAD" if i % 10 == 0 else "UNKNOWN" for i in range(n)],
        S.PLAYBACK_COUNT: [None] * n,
        S.VALENCE: mood[:, 0], S.AROUSAL: mood[:, 1], S.MOOD_SOURCE: ["text"] * n,
        S.MOOD_CONFIDENCE: mood[:, 2], S.AUDIO_SOURCE: ["none"] * n, S.TEXT_DOC: docs,
    }, schema_overrides={S.TITLE: pl.String, S.YEAR: pl.Int32, S.PLAYBACK_COUNT: pl.Int64})
    root = tmp_path_factory.mktemp("store")
    model_path = root / "query_mood.joblib"
    joblib.dump(mood_adapter.ridge, model_path)
    return write_version(
        folder=store.StoreLayout(root).version_dir("test-v1"), tracks=tracks, text_vectors=text_vectors,
        audio_vectors=np.zeros((n, 0), np.float32), query_mood_model_path=model_path,
        extra_manifest={"source": "tests/conftest.py"},
    )


def _assert_exact_top_k(*, res: list[tuple[str, float]], sims: np.ndarray, track_ids: list[str], k: int) -> None:
    """Assert ``res`` is an exact top-k of ``sims`` (tracks with identical text docs tie; any order among ties)."""
    row = {tid: i for i, tid in enumerate(track_ids)}
    top = np.sort(sims)[::-1][:k]
    assert len(res) == k
    np.testing.assert_allclose([s for _, s in res], top, atol=1e-5)  # same scores, descending
    np.testing.assert_allclose([sims[row[t]] for t, _ in res], top, atol=1e-5)  # each id has its score
    assert len({t for t, _ in res}) == k


@pytest.fixture(scope="session")
def assert_exact_top_k():
    """The checker: ``(track_id, score)`` results are an exact inner-product top-k of ``sims``."""
    return _assert_exact_top_k


# ------------------------------------------------------------------ the small real bundle, served
@pytest.fixture(scope="module")
def tracks(bundle_dir) -> pl.DataFrame:
    """The conftest bundle's tracks table (row position = row id)."""
    return pl.read_parquet(bundle_dir / "tracks.parquet")


@pytest.fixture(scope="module")
def rec(bundle_dir, mood_adapter):
    """A Recommender over the conftest bundle with the fast test mood adapter."""
    from pipelines.index.bundle import load_bundle
    from pipelines.rank import recommender as ranking

    r = ranking.Recommender(load_bundle(bundle_dir), query_mood=mood_adapter)
    yield r
    r.close()


@pytest.fixture(scope="module")
def client(bundle_dir, mood_adapter):
    """A Litestar TestClient of the real app over the conftest bundle (default cache)."""
    from litestar.testing import TestClient

    from pipelines.rank import recommender as ranking
    from serving.app import create_app

    app = create_app(
        bundle_dir=bundle_dir,
        recommender_factory=lambda b: ranking.Recommender(b, query_mood=mood_adapter),
    )
    with TestClient(app=app) as c:
        yield c
