"""A learned music / non-music signal: logistic regression on MiniLM text embeddings.

Positives: text documents of MusicCaps and MTG-Jamendo rows and the librosa clips listed as music
(``data/LICENSES.md``); negatives: the librosa clips listed as non-music and EmoBank prose. Real
non-music tracks are few, and the prose negatives differ from music rows in form as well as topic,
so this is a secondary signal: `apply_classifier` uses it only where the heuristics
(``musicfilter``) found no evidence either way, and excludes a row only when P(music) <
``EXCLUDE_BELOW``.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_recall_fscore_support
from sklearn.model_selection import train_test_split

from pipelines import schema as S
from pipelines.embed.sentence import embed_texts
from pipelines.heal.democorpus import jamendo_rows, librosa_rows, musiccaps_rows
from pipelines.heal.musicfilter import text_verdict
from pipelines.heal.textdoc import add_text_docs

# librosa example clips that data/LICENSES.md lists as non-music (by file stem).
LIBROSA_NON_MUSIC = ("198-209-0000", "3436-172162-0000", "5703-47212-0000", "glacier-bay-humpback",
                     "456440__inspectorj__bird-whistling-robin-single-13", "pibble")
EXCLUDE_BELOW = 0.05
TrackTextEncoder = Callable[[list[str], list[str]], np.ndarray]  # (docs, track ids) → (n, 384) vectors
LABEL = "label"  # 1 = music, 0 = non-music
ORIGIN = "origin"


@dataclass
class MusicClassifier:
    """A fitted classifier and its held-out metrics."""

    model: LogisticRegression
    metrics: dict[str, float | int] = field(default_factory=dict)

    def predict_proba(self, *, vectors: np.ndarray) -> np.ndarray:
        """vectors (n, 384) L2-normalised MiniLM → (n,) P(music) float64."""
        if len(vectors) == 0:
            return np.zeros(0)
        return self.model.predict_proba(vectors)[:, list(self.model.classes_).index(1)]


def training_examples(*, data_dir: Path, n_per_source: int = 500, seed: int = 0) -> pl.DataFrame:
    """Real labelled documents: (n, 3) ``text_doc`` Utf8, ``label`` Int8 (1 music / 0 not), ``origin``.

    ``n_per_source`` rows each from MusicCaps and MTG-Jamendo (positives) and 2·n from EmoBank
    (negatives), sampled with ``seed``; all 14 librosa clips (labelled per LICENSES.md)."""
    frames = []
    caps = musiccaps_rows(data_dir=data_dir)
    jam = jamendo_rows(data_dir=data_dir, limit=4 * n_per_source)  # deterministic subset, then sampled
    for name, rows in (("musiccaps", caps), ("mtg_jamendo", jam)):
        docs = add_text_docs(rows.sample(n=min(n_per_source, rows.height), seed=seed)).filter(pl.col(S.TEXT_DOC) != "")
        frames.append(docs.select(S.TEXT_DOC).with_columns(pl.lit(1, dtype=pl.Int8).alias(LABEL),
                                                           pl.lit(name).alias(ORIGIN)))
    lib = add_text_docs(librosa_rows(data_dir=data_dir)).filter(pl.col(S.TEXT_DOC) != "")
    stem = pl.col(S.TRACK_ID).str.strip_prefix("librosa:")
    frames.append(lib.select(
        S.TEXT_DOC, pl.when(stem.is_in(LIBROSA_NON_MUSIC)).then(0).otherwise(1).cast(pl.Int8).alias(LABEL),
        pl.lit("librosa").alias(ORIGIN)))
    emo = pl.read_csv(data_dir / "text" / "emobank_train_dev.csv").filter(pl.col("text").str.len_chars() >= 20)
    emo = emo.sample(n=min(2 * n_per_source, emo.height), seed=seed)
    frames.append(emo.select(pl.col("text").alias(S.TEXT_DOC), pl.lit(0, dtype=pl.Int8).alias(LABEL),
                             pl.lit("emobank").alias(ORIGIN)))
    return pl.concat(frames, how="vertical")


def _prf(y_true: np.ndarray, y_pred: np.ndarray, positive: int) -> tuple[float, float, float]:
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, pos_label=positive, average="binary", zero_division=0)
    return float(p), float(r), float(f)


def train_music_classifier(
    *, vectors: np.ndarray, labels: np.ndarray, origins: Sequence[str], test_size: float = 0.25, seed: int = 0,
) -> MusicClassifier:
    """Fit on a stratified split (by label × origin), report held-out metrics, refit on everything.

    vectors (n, 384), labels (n,) {0, 1}, origins (n,) str. Metrics: precision / recall / F1 of both
    classes on the held-out part, its size, and the recall on the held-out real non-music *tracks*
    (librosa) where any fell into it."""
    labels = np.asarray(labels).astype(int)
    origins = np.asarray(origins)
    strata = np.char.add(origins.astype(str), labels.astype(str))
    # strata with a single member cannot be split: put them in training
    uniq, counts = np.unique(strata, return_counts=True)
    rare = np.isin(strata, uniq[counts < 2])
    idx = np.arange(len(labels))
    tr, te = train_test_split(idx[~rare], test_size=test_size, random_state=seed, stratify=strata[~rare])
    tr = np.concatenate([tr, idx[rare]])

    def fit(rows: np.ndarray) -> LogisticRegression:
        return LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(vectors[rows], labels[rows])

    held = fit(tr)
    pred = held.predict(vectors[te])
    pm, rm, fm = _prf(labels[te], pred, 1)
    pn, rn, fn = _prf(labels[te], pred, 0)
    metrics: dict[str, float | int] = {
        "train": int(len(tr)), "held_out": int(len(te)),
        "held_out_music": int((labels[te] == 1).sum()), "held_out_non_music": int((labels[te] == 0).sum()),
        "precision_music": round(pm, 4), "recall_music": round(rm, 4), "f1_music": round(fm, 4),
        "precision_non_music": round(pn, 4), "recall_non_music": round(rn, 4), "f1_non_music": round(fn, 4),
        "real_non_music_tracks": int(((origins == "librosa") & (labels == 0)).sum()),
    }
    lib_te = te[(origins[te] == "librosa") & (labels[te] == 0)]
    if len(lib_te):
        metrics["held_out_librosa_non_music_recall"] = round(float((held.predict(vectors[lib_te]) == 0).mean()), 4)
    return MusicClassifier(model=fit(idx), metrics=metrics)


def fit_from_open_data(
    *, data_dir: Path, n_per_source: int = 500, seed: int = 0, progress: bool = False,
) -> MusicClassifier:
    """``training_examples`` → MiniLM embeddings → ``train_music_classifier``."""
    ex = training_examples(data_dir=data_dir, n_per_source=n_per_source, seed=seed)
    vectors = embed_texts(ex.get_column(S.TEXT_DOC).to_list(), progress=progress)
    clf = train_music_classifier(vectors=vectors, labels=ex.get_column(LABEL).to_numpy(),
                                 origins=ex.get_column(ORIGIN).to_list(), seed=seed)
    clf.metrics["examples_by_origin"] = {str(k): int(v) for k, v in ex.group_by(ORIGIN, LABEL).len().select(
        pl.concat_str(ORIGIN, pl.lit(":"), pl.col(LABEL).cast(pl.Utf8)), "len").iter_rows()}
    return clf


def apply_classifier(*, tracks: pl.DataFrame, verdict: pl.DataFrame, classifier: MusicClassifier,
                     exclude_below: float = EXCLUDE_BELOW, embed: TrackTextEncoder | None = None,
                     progress: bool = False) -> pl.DataFrame:
    """Heuristic verdict (``musicfilter.classify_music`` output) + the classifier → the verdict with
    ``music_probability`` (Float64; null where not scored). Only rows the heuristics decided by
    default (no evidence either way) and that have text are scored; of those, P(music) <
    ``exclude_below`` flips ``is_music`` to False with reason ``classifier: P(music)=…``.
    Shape (n, 4), in ``verdict`` order. ``embed(docs, track_ids)`` gives the MiniLM vectors of the
    scored texts (default: encode them; the pipeline passes the shared per-shard embedding cache).

    Time O(n) joins plus the text rules and one MiniLM pass over the c undecided rows (distinct
    texts once); memory O(n)."""
    text_cols = (S.TITLE, S.ARTIST, S.GENRE, S.TAGS, S.DESCRIPTION, S.VIBE_TEXT)
    docs = add_text_docs(tracks.select(S.TRACK_ID, *[c for c in text_cols if c in tracks.columns]).with_columns(
        *[pl.lit(None, dtype=pl.Utf8).alias(c) for c in text_cols if c not in tracks.columns]))
    ids = verdict.get_column(S.TRACK_ID).to_list()
    reasons = verdict.get_column(S.MUSIC_REASON).to_list()
    is_music = verdict.get_column(S.IS_MUSIC).to_list()
    # "default" rows may still carry music words (classify_music skips the text scan when no
    # non-music cue occurs): only rows whose text says neither music nor non-music are scored.
    candidates = (
        verdict.select(S.TRACK_ID, S.MUSIC_REASON).with_row_index("_row")
        .filter(pl.col(S.MUSIC_REASON).str.starts_with("default"))
        .join(docs, on=S.TRACK_ID, how="inner", maintain_order="left")
        .filter(pl.col(S.TEXT_DOC).fill_null("") != "")
    )
    todo, todo_docs, todo_ids = [], [], []
    for r in candidates.iter_rows(named=True):
        if text_verdict(row=r)[0] is None:
            todo.append(r["_row"])
            todo_docs.append(r[S.TEXT_DOC])
            todo_ids.append(r[S.TRACK_ID])
    prob: list[float | None] = [None] * len(ids)
    if todo:
        vectors = embed(todo_docs, todo_ids) if embed is not None else embed_texts(todo_docs, progress=progress)
        p = classifier.predict_proba(vectors=vectors)
        for i, pi in zip(todo, p):
            prob[i] = float(pi)
            if pi < exclude_below:
                is_music[i] = False
                reasons[i] = f"classifier: P(music)={pi:.3f} < {exclude_below} (no heuristic evidence either way)"
    return pl.DataFrame(
        {S.TRACK_ID: ids, S.IS_MUSIC: is_music, S.MUSIC_REASON: reasons, S.MUSIC_PROBABILITY: prob},
        schema={S.TRACK_ID: pl.Utf8, S.IS_MUSIC: pl.Boolean, S.MUSIC_REASON: pl.Utf8, S.MUSIC_PROBABILITY: pl.Float64},
    )


__all__ = ["MusicClassifier", "training_examples", "train_music_classifier", "fit_from_open_data", "apply_classifier",
           "LIBROSA_NON_MUSIC", "EXCLUDE_BELOW"]
