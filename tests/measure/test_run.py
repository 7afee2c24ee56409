"""The evaluation run through ``run_evaluation`` on real EmoBank rows with a test-double store: a
ranking by true label closeness is precise; with the labels shuffled the same run measures chance.
"""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines import schema as S
from pipelines.measure import run as ev
from pipelines.measure.inputs import QUERY
from pipelines.measure.metrics import RANKING_KEYS, relevant_mask
from pipelines.store import DATA_DIR

EMOBANK = DATA_DIR / "text" / "emobank_train_dev.csv"


class OracleStore:
    """Test double of ``StoreHandle``: ``mode="full"`` ranks tracks by closeness of ``moods``
    (the true labels, or the same labels shuffled) to the query target; ``mode="baseline"`` ranks
    by cosine of hashed bag-of-words of query and track text. Text vectors are those hashed words.
    """

    def __init__(self, *, corpus: pl.DataFrame, moods: np.ndarray, query_targets: dict[str, tuple[float, float]]):
        from sklearn.feature_extraction.text import HashingVectorizer

        self.ids = corpus[S.TRACK_ID].to_list()
        self.row = {t: i for i, t in enumerate(self.ids)}
        self.artist = corpus[S.ARTIST].to_list()
        self.moods = moods
        self.query_targets = query_targets
        self.vectorizer = HashingVectorizer(n_features=2**12, norm="l2", alternate_sign=False)
        self.vecs = self.vectorizer.transform(corpus[S.TITLE].to_list()).toarray()
        self.tiebreak = np.random.default_rng(7).permutation(len(self.ids))

    def track_moods(self) -> pl.DataFrame:
        return pl.DataFrame({S.TRACK_ID: self.ids, S.VALENCE: self.moods[:, 0],
                             S.AROUSAL: self.moods[:, 1], S.MOOD_SOURCE: ["text"] * len(self.ids)})

    def query_moods(self, *, texts):
        return np.array([self.query_targets[t] for t in texts])

    def recommend(self, *, query, mode, top_k):
        if mode == "full":
            dist = np.linalg.norm(self.moods - np.asarray(self.query_targets[query])[None, :], axis=1)
            order = np.lexsort((self.tiebreak, dist))
        elif mode == "baseline":
            q = self.vectorizer.transform([query]).toarray()[0]
            order = np.lexsort((self.tiebreak, -(self.vecs @ q)))
        else:
            raise ValueError(mode)
        return [self.ids[i] for i in order[:top_k]]

    def text_vectors(self, *, track_ids):
        return self.vecs[[self.row[t] for t in track_ids]]

    def artists(self, *, track_ids):
        return [self.artist[self.row[t]] for t in track_ids]


@pytest.fixture(scope="module")
def emobank_eval(tmp_path_factory):
    """Real EmoBank rows: 1,500 train sentences as the corpus (label = (V−3)/2, (A−3)/2; artist =
    source document), 120 dev sentences as queries."""
    if not EMOBANK.exists():
        pytest.skip(f"{EMOBANK} absent")
    eb = pl.read_csv(EMOBANK).filter(pl.col("text").str.strip_chars().str.len_chars() > 0)
    unit = lambda c: ((pl.col(c) - 3.0) / 2.0).clip(-1.0, 1.0)
    train = eb.filter(pl.col("split") == "train").sample(n=1500, seed=11)
    dev = eb.filter(pl.col("split") == "dev").sample(n=120, seed=12).unique("text", keep="first")
    folder = tmp_path_factory.mktemp("emobank_eval")
    corpus = train.select(
        pl.col("id").alias(S.TRACK_ID), pl.col("text").alias(S.TITLE),
        pl.col("id").str.split("_").list.first().alias(S.ARTIST),
    )
    labels = train.select(pl.col("id").alias(S.TRACK_ID), unit("V").alias(S.VALENCE), unit("A").alias(S.AROUSAL))
    queries = dev.select(pl.col("text").alias(QUERY), unit("V").alias(S.VALENCE), unit("A").alias(S.AROUSAL))
    corpus.write_csv(folder / "corpus.csv")
    labels.write_csv(folder / "labels.csv")
    queries.write_csv(folder / "queries.csv")
    return folder, labels, queries


def _run(folder: Path, labels: pl.DataFrame, queries: pl.DataFrame, *, shuffle: bool, out: Path):
    true = labels.select(S.VALENCE, S.AROUSAL).to_numpy()
    moods = true[np.random.default_rng(3).permutation(len(true))] if shuffle else true
    targets = {q: (v, a) for q, v, a in queries.iter_rows()}
    seen: dict[str, list[str]] = {}

    def build_store(corpus_df: pl.DataFrame, workdir: Path) -> ev.StoreHandle:
        seen["columns"] = corpus_df.columns
        assert workdir.is_dir()
        # the fake is told the (possibly shuffled) moods by the test, never by the harness
        by_id = dict(zip(labels[S.TRACK_ID].to_list(), moods))
        m = np.array([by_id[t] for t in corpus_df[S.TRACK_ID].to_list()])
        store = OracleStore(corpus=corpus_df, moods=m, query_targets=targets)
        assert isinstance(store, ev.StoreHandle)
        return store

    report = ev.run_evaluation(
        corpus_path=folder / "corpus.csv", labels_path=folder / "labels.csv",
        queries_path=folder / "queries.csv", out_dir=out, build_store=build_store, progress=False,
    )
    assert seen["columns"] == [S.TRACK_ID, S.TITLE, S.ARTIST]  # labels never reach the store
    return report


def test_shuffled_labels_fall_to_chance(emobank_eval, tmp_path):
    folder, labels, queries = emobank_eval
    oracle = _run(folder, labels, queries, shuffle=False, out=tmp_path / "oracle")
    shuffled = _run(folder, labels, queries, shuffle=True, out=tmp_path / "shuffled")

    # chance = mean over queries of the fraction of corpus tracks relevant to the query
    lab = labels.select(S.VALENCE, S.AROUSAL).to_numpy()
    chance = np.mean([
        relevant_mask(values=lab, target=(v, a)).mean() for _, v, a in queries.iter_rows()
    ])
    p_oracle = oracle["ranking"]["full"]["precision@10"]
    p_shuffled = shuffled["ranking"]["full"]["precision@10"]
    assert p_oracle > 0.9
    assert abs(p_shuffled - chance) < 0.06, (p_shuffled, chance)
    assert oracle["ranking"]["full"]["ndcg@20"] > shuffled["ranking"]["full"]["ndcg@20"] + 0.1
    assert (oracle["ranking"]["full"]["mood_alignment@10"]
            > shuffled["ranking"]["full"]["mood_alignment@10"] + 0.05)
    # stored moods: identical to labels vs a permutation of them
    assert oracle["track_mood"]["valence_r"] == pytest.approx(1.0)
    assert oracle["track_mood"]["quadrant_accuracy"] == 1.0
    assert abs(shuffled["track_mood"]["valence_r"]) < 0.1
    assert abs(shuffled["track_mood"]["arousal_r"]) < 0.1
    # the baseline (text similarity, mood-blind) does not depend on the shuffle
    assert oracle["ranking"]["baseline_sbert"] == shuffled["ranking"]["baseline_sbert"]


def test_report_files_keys_and_nulls(emobank_eval, tmp_path):
    folder, labels, queries = emobank_eval
    out = tmp_path / "out"
    report = _run(folder, labels, queries, shuffle=False, out=out)
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == report
    assert set(on_disk) == {"n_tracks", "n_queries", "query_mood", "track_mood", "ranking", "latency_ms"}
    assert on_disk["n_tracks"] == 1500 and on_disk["n_queries"] == queries.height
    assert set(on_disk["ranking"]) == {"full", "baseline_sbert"} == set(on_disk["latency_ms"])
    for r in on_disk["ranking"].values():
        assert set(r) == set(RANKING_KEYS)
    for lat in on_disk["latency_ms"].values():
        assert set(lat) == {"p50", "p95", "p99"} and lat["p50"] <= lat["p95"] <= lat["p99"]
    assert set(on_disk["track_mood"]["by_source"]) == {"text"}
    md = (out / "report.md").read_text()
    assert "mood_scatter.png" in md and "precision_per_query.png" in md and "## Definitions" in md
    assert f"{on_disk['ranking']['full']['precision@10']:.3f}" in md
    for png in ("mood_scatter.png", "precision_per_query.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sections_follow_inputs_and_nan_is_null(emobank_eval, tmp_path):
    folder, _, queries = emobank_eval

    class ConstantMood:
        """A store whose query model answers the same mood for every text (r undefined)."""

        def query_moods(self, *, texts):
            return np.tile([0.1, 0.2], (len(texts), 1))

    report = ev.run_evaluation(
        corpus_path=folder / "corpus.csv", queries_path=folder / "queries.csv",
        out_dir=tmp_path, build_store=lambda df, wd: ConstantMood(), progress=False,
    )
    assert set(report) == {"n_tracks", "n_queries", "query_mood"}
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["query_mood"]["valence_r"] is None and on_disk["query_mood"]["valence_ccc"] is None
    assert "ranking needs both LABELS and QUERIES" in (tmp_path / "report.md").read_text()
