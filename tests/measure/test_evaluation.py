"""Evaluation harness: metrics against hand-computed cases, input validation, and a
shuffled-labels run (a ranking by true label closeness is precise; with the labels shuffled the
same harness measures chance).
"""

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.measure import run as ev
from pipelines import schema as S
from pipelines.store import DATA_DIR

SQ2 = math.sqrt(2.0)


# --------------------------------------------------------------------------------------------
# correlation / sign metrics
# --------------------------------------------------------------------------------------------

def test_pearson_hand_cases():
    assert ev.pearson_r([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert ev.pearson_r([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # dx = dy-permuted = [-1.5, -.5, .5, 1.5] / [-1.5, .5, -.5, 1.5]: Σdxdy = 4, Σdx² = Σdy² = 5 → 0.8
    assert ev.pearson_r([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert math.isnan(ev.pearson_r([1, 1, 1], [1, 2, 3]))  # constant input
    assert math.isnan(ev.pearson_r([1.0], [2.0]))  # n < 2
    assert math.isnan(ev.pearson_r([1, np.nan, 3], [1, 2, 3]))
    with pytest.raises(ValueError):
        ev.pearson_r([1, 2], [1, 2, 3])


def test_lin_ccc_hand_cases():
    assert ev.lin_ccc([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    # var = 2/3 each, cov = 2/3, (mean diff)² = 1 → 2·(2/3) / (2/3 + 2/3 + 1) = 4/7
    assert ev.lin_ccc([1, 2, 3], [2, 3, 4]) == pytest.approx(4 / 7)
    # var 2/3 and 8/3, cov 4/3, (2 − 4)² = 4 → (8/3) / (2/3 + 8/3 + 4) = 4/11
    assert ev.lin_ccc([1, 2, 3], [2, 4, 6]) == pytest.approx(4 / 11)
    assert math.isnan(ev.lin_ccc([0.2, 0.2, 0.2], [1, 2, 3]))


def test_sign_and_quadrant_accuracy_zero_is_positive():
    # signs (0 positive): pred + − + −, label + + + − → agree T F T T
    assert ev.sign_accuracy([0.5, -0.2, 0.0, -1e-4], [0.1, 0.3, 0.2, -0.5]) == pytest.approx(0.75)
    # item 1 both right; 2 arousal wrong; 3 right (0 vs 0.3 both positive); 4 valence wrong
    q = ev.quadrant_accuracy([0.5, -0.5, 0.0, 0.2], [0.5, 0.5, -0.1, 0.0],
                             [1.0, -1.0, 0.3, -0.2], [1.0, -1.0, -1.0, 0.4])
    assert q == pytest.approx(0.5)
    assert math.isnan(ev.sign_accuracy([], []))


def test_query_and_track_mood_metrics():
    pred = np.array([[1.0, 0.1], [2.0, 0.2], [3.0, 0.3]])
    lab = np.array([[1.0, 0.3], [2.0, 0.2], [3.0, 0.1]])
    m = ev.query_mood_metrics(pred, lab)
    assert set(m) == {"valence_r", "arousal_r", "valence_ccc", "arousal_ccc", "n"}
    assert m["valence_r"] == pytest.approx(1.0) and m["arousal_r"] == pytest.approx(-1.0)
    assert m["valence_ccc"] == pytest.approx(1.0)
    # arousal: var 0.02/3 each, cov −0.02/3, equal means → −1
    assert m["arousal_ccc"] == pytest.approx(-1.0) and m["n"] == 3

    pred = np.array([[0.5, 0.5], [-0.2, 0.4], [0.3, -0.3], [0.9, 0.1]])
    lab = np.array([[0.4, 0.6], [0.1, 0.2], [0.2, -0.5], [-0.3, 0.2]])
    t = ev.track_mood_metrics(pred, lab, ["audio", "audio", "text", "text"])
    assert set(t) == {"valence_r", "arousal_r", "valence_accuracy", "arousal_accuracy",
                      "quadrant_accuracy", "n", "by_source"}
    # valence signs pred + − + +, label + + + − → 2/4; arousal all agree; quadrant = 2/4
    assert t["valence_accuracy"] == 0.5 and t["arousal_accuracy"] == 1.0
    assert t["quadrant_accuracy"] == 0.5 and t["n"] == 4
    # two points per source: r is ±1 (audio: v 0.5,−0.2 vs 0.4,0.1 → +1; text: 0.3,0.9 vs 0.2,−0.3 → −1)
    assert t["by_source"]["audio"] == {"n": 2, "valence_r": pytest.approx(1.0), "arousal_r": pytest.approx(1.0)}
    assert t["by_source"]["text"]["valence_r"] == pytest.approx(-1.0)
    assert t["by_source"]["text"]["arousal_r"] == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# ranking metrics: one hand-worked query
# --------------------------------------------------------------------------------------------

# target (0.5, 0.5): relevant = both signs ≥ 0 → a, d, e.  Gains max(0, 1 − dist/√2):
# a: dist 0 → 1;  b: dist 1 → 1 − 1/√2;  c, d, e: dist √0.5 → 0.5;  f: dist √4.5 → 0
LABELS = {"a": (0.5, 0.5), "b": (-0.5, 0.5), "c": (0.6, -0.2), "d": (0.0, 0.0),
          "e": (1.0, 1.0), "f": (-1.0, -1.0)}
TARGET = (0.5, 0.5)
RANKED = ["b", "a", "x", "d"]  # x has no label


def test_precision_recall_hand():
    assert ev.precision_at_k(ranked_track_ids=RANKED, labels=LABELS, target=TARGET) == pytest.approx(0.2)
    assert ev.precision_at_k(ranked_track_ids=RANKED, labels=LABELS, target=TARGET, k=2) == 0.5
    # 2 relevant in the list / min(50, 3 relevant in corpus)
    assert ev.recall_at_k(ranked_track_ids=RANKED, labels=LABELS, target=TARGET) == pytest.approx(2 / 3)
    assert ev.recall_at_k(ranked_track_ids=RANKED, labels=LABELS, target=TARGET, k=2) == pytest.approx(0.5)
    # target (−0.1, 0.9): only b is relevant (v < 0, a ≥ 0) → 1 / min(50, 1)
    assert ev.recall_at_k(ranked_track_ids=["b"], labels=LABELS, target=(-0.1, 0.9)) == 1.0
    assert math.isnan(ev.recall_at_k(ranked_track_ids=["a"], labels={"a": (0.5, 0.5)}, target=(-1, -1)))


def test_ndcg_hand():
    # DCG = (1 − 1/√2)/log2 2 + 1/log2 3 + 0/log2 4 + 0.5/log2 5 = 1.13916125
    # ideal gains 1, .5, .5, .5, 1 − 1/√2, 0 → 1 + .5/log2 3 + .5/2 + .5/log2 5 + .29289/log2 6 = 1.89410972
    got = ev.ndcg_at_k(ranked_track_ids=RANKED, labels=LABELS, target=TARGET)
    assert got == pytest.approx(1.1391612514 / 1.8941097197, rel=1e-9)
    assert got == pytest.approx(0.60142305, abs=1e-8)
    ideal = ["a", "c", "d", "e", "b", "f"]
    assert ev.ndcg_at_k(ranked_track_ids=ideal, labels=LABELS, target=TARGET) == pytest.approx(1.0)
    assert math.isnan(ev.ndcg_at_k(ranked_track_ids=["f"], labels={"f": (-1, -1)}, target=(1, 1)))


def test_mood_alignment_hand():
    # distances b 1, a 0, x (unlabelled) 2√2, d √0.5 → 1 − (1 + 2√2 + √.5)/4/(2√2) = 0.59911165
    got = ev.mood_alignment_at_k(ranked_track_ids=RANKED, labels=LABELS, target=TARGET)
    assert got == pytest.approx(1 - (1 + 2 * SQ2 + math.sqrt(0.5)) / 4 / (2 * SQ2))
    assert got == pytest.approx(0.59911165, abs=1e-8)
    assert ev.mood_alignment_at_k(ranked_track_ids=["a"], labels=LABELS, target=TARGET) == 1.0
    assert ev.mood_alignment_at_k(ranked_track_ids=["f"], labels=LABELS, target=(1, 1)) == pytest.approx(0.0)


def test_artist_diversity_and_ild_hand():
    # non-null, case-folded: a a b c a → 3 distinct / 5
    assert ev.artist_diversity(artists=["A", "a ", None, "B", "", "C", "A"]) == pytest.approx(0.6)
    assert math.isnan(ev.artist_diversity(artists=[None, ""]))
    # cos(1,2)=0, cos(1,3)=cos(2,3)=1/√2 → mean of 1, 1−1/√2, 1−1/√2 = 0.52859548
    v = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert ev.ild(vectors=v) == pytest.approx((1 + 2 * (1 - 1 / SQ2)) / 3)
    assert ev.ild(vectors=np.ones((4, 3))) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(ev.ild(vectors=np.ones((1, 3))))


def test_ranking_metrics_keys_and_mean():
    m = ev.ranking_metrics(
        ranked_track_ids=RANKED, labels=LABELS, target=TARGET,
        artists=["p", "q", None, "p"], text_vectors=np.eye(4),
    )
    assert list(m) == list(ev.RANKING_KEYS)
    assert m["artist_diversity@50"] == pytest.approx(2 / 3)
    assert m["ild@50"] == pytest.approx(1.0)  # orthogonal vectors
    mean = ev.mean_metrics([{"x": 1.0, "y": float("nan")}, {"x": 3.0, "y": 2.0}])
    assert mean == {"x": 2.0, "y": 2.0}
    assert math.isnan(ev.mean_metrics([{"x": float("nan")}])["x"])


def test_latency_summary_hand():
    # linear interpolation over 1..5: p50 = 3, p95 = 1 + .95·4 = 4.8, p99 = 4.96
    assert ev.latency_summary([5, 1, 3, 2, 4]) == pytest.approx({"p50": 3.0, "p95": 4.8, "p99": 4.96})


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------

def test_corpus_audio_path_relative_to_corpus_folder(tmp_path):
    sub = tmp_path / "corpus"
    sub.mkdir()
    (sub / "corpus.csv").write_text(
        "track_id,title,audio_path\n007,Song,clips/a.ogg\n8,Other,/abs/b.wav\n9,None,\n"
    )
    df = ev.load_corpus(sub / "corpus.csv")
    assert df[S.TRACK_ID].to_list() == ["007", "8", "9"]  # strings, leading zeros kept
    assert df[S.AUDIO_PATH].to_list() == [str((sub / "clips/a.ogg").resolve()), "/abs/b.wav", None]


def test_bad_inputs_name_row_and_column(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text("track_id,valence,arousal\na,0.1,0.2\nb,1.7,0.0\n")
    with pytest.raises(ev.EvaluationInputError, match=r"row 2, line 3: column 'valence' value 1.7"):
        ev.load_labels(p)
    p.write_text("track_id,valence,arousal\na,0.1,x\n")
    with pytest.raises(ev.EvaluationInputError, match=r"column 'arousal' value 'x' is not a number"):
        ev.load_labels(p)
    p.write_text("track_id,valence\na,0.1\n")
    with pytest.raises(ev.EvaluationInputError, match=r"lacks column\(s\) \['arousal'\]"):
        ev.load_labels(p)
    c = tmp_path / "corpus.csv"
    c.write_text("track_id,title\na,x\na,y\n")
    with pytest.raises(ev.EvaluationInputError, match="duplicate track_id 'a'"):
        ev.load_corpus(c)


# --------------------------------------------------------------------------------------------
# shuffled-labels run through run_evaluation
# --------------------------------------------------------------------------------------------

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
    unit = lambda c: ((pl.col(c) - 3.0) / 2.0).clip(-1.0, 1.0)  # noqa: E731
    train = eb.filter(pl.col("split") == "train").sample(n=1500, seed=11)
    dev = eb.filter(pl.col("split") == "dev").sample(n=120, seed=12).unique("text", keep="first")
    folder = tmp_path_factory.mktemp("emobank_eval")
    corpus = train.select(
        pl.col("id").alias(S.TRACK_ID), pl.col("text").alias(S.TITLE),
        pl.col("id").str.split("_").list.first().alias(S.ARTIST),
    )
    labels = train.select(pl.col("id").alias(S.TRACK_ID), unit("V").alias(S.VALENCE), unit("A").alias(S.AROUSAL))
    queries = dev.select(pl.col("text").alias(ev.QUERY), unit("V").alias(S.VALENCE), unit("A").alias(S.AROUSAL))
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
        ev.relevant_mask(values=lab, target=(v, a)).mean() for _, v, a in queries.iter_rows()
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
        assert set(r) == set(ev.RANKING_KEYS)
    for lat in on_disk["latency_ms"].values():
        assert set(lat) == {"p50", "p95", "p99"} and 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
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


# --------------------------------------------------------------------------------------------
# scripts/build_dev_eval.py
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dev_eval_script():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "build_dev_eval.py"
    spec = importlib.util.spec_from_file_location("build_dev_eval", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dev_eval_transforms_and_skip(dev_eval_script, tmp_path):
    m = dev_eval_script
    z = pl.DataFrame({"z": [1.25, -3.0, 0.0, 2.5]})
    assert z.select(m.z_to_unit(pl.col("z")))["z"].to_list() == [0.5, -1.0, 0.0, 1.0]
    assert m.build_deezer(dev_eval=tmp_path / "absent", out=tmp_path).startswith("skipped: deezer")
    assert m.main(["--out", str(tmp_path / "o"), "--dev-eval", str(tmp_path / "absent"),
                   "--parts", "deezer"]) == 0
    with pytest.raises(SystemExit):  # refuses to write inside the repo
        m.main(["--out", str(m.deveval.REPO_ROOT / "deveval_here")])


def test_dev_eval_emobank_queries(dev_eval_script, tmp_path):
    if not EMOBANK.exists():
        pytest.skip(f"{EMOBANK} absent")
    dev_eval_script.build_emobank(out=tmp_path)
    q = ev.load_queries(tmp_path / "emobank_dev" / "queries.csv")
    src = pl.read_csv(EMOBANK).filter(pl.col("split") == "dev")
    assert q.height == src.height == 1000
    row = src.row(0, named=True)  # (x − 3)/2 of the first dev sentence
    assert q.row(0) == (row["text"].strip(), pytest.approx((row["V"] - 3) / 2), pytest.approx((row["A"] - 3) / 2))


def test_dev_eval_deezer(dev_eval_script, tmp_path):
    src = dev_eval_script.DEFAULT_DEV_EVAL / "deezer_mood" / "validation.csv"
    if not src.exists():
        pytest.skip(f"{src} absent (dev-eval data is not part of a fresh clone)")
    dev_eval_script.build_deezer(dev_eval=dev_eval_script.DEFAULT_DEV_EVAL, out=tmp_path)
    corpus = ev.load_corpus(tmp_path / "deezer_val" / "corpus.csv")
    labels = ev.load_labels(tmp_path / "deezer_val" / "labels.csv")
    raw = pl.read_csv(src)
    assert corpus.columns == [S.TRACK_ID, S.TITLE, S.ARTIST] and corpus.height == raw.height
    assert corpus[S.TRACK_ID][0] == f"deezer:{raw['dzr_sng_id'][0]}"
    assert (np.sign(labels[S.VALENCE].to_numpy()) == np.sign(raw["valence"].to_numpy())).all()
    assert (np.sign(labels[S.AROUSAL].to_numpy()) == np.sign(raw["arousal"].to_numpy())).all()
