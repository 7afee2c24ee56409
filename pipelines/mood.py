"""Track moods: an audio → (valence, arousal) model trained on labelled audio, the plan's
hand-weighted formula kept as a baseline, and the fusion of audio and text moods per track.

Labels (all real, open data):

- EMOPIA clips: Russell quadrant per clip (1 = +v +a, 2 = −v +a, 3 = −v −a, 4 = +v −a) with the
  official song-disjoint train/val split → ``valence_sign`` / ``arousal_sign`` in {−1, +1}.
- immich tracks: mood folder word (calm / energetic / happy / nostalgic / tender) → the Glasgow
  Norms valence/arousal of that word, rescaled (x − 5) / 4. Words the norms do not rate
  ("energetic", "nostalgic") get null targets unless a text mood model is passed, in which case
  its prediction for the word is used and ``label_source`` says so.

Model (:class:`AudioMoodModel`): one binary classifier per axis (sign of valence, sign of
arousal), either standardise + logistic regression or gradient-boosted trees (xgboost), chosen
by the mean of valence- and arousal-sign accuracy on the EMOPIA val split. ``p`` = P(axis > 0);
the axis value is ``2p − 1`` (in [−1, 1], shrunk toward 0 when unsure) and the confidence is the
mean over both axes of ``|2p − 1|``. Continuous labels (immich) enter as their sign with sample
weight ``|value|`` so a weakly-rated word counts less than a clear one.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipelines import store
from pipelines.lexicon import MoodLexicon, resolve_open_file
from pipelines.schema import AROUSAL, MOOD_CONFIDENCE, MOOD_SOURCE, TRACK_ID, VALENCE

VALENCE_SIGN = "valence_sign"
AROUSAL_SIGN = "arousal_sign"
QUADRANT = "quadrant"
SPLIT = "split"
CLIP_ID = "clip_id"
MOOD_WORD = "mood"
LABEL_SOURCE = "label_source"
SAMPLE_WEIGHT = "sample_weight"

# Russell quadrant → (valence sign, arousal sign), as defined by EMOPIA.
QUADRANT_SIGNS: dict[int, tuple[int, int]] = {1: (1, 1), 2: (-1, 1), 3: (-1, -1), 4: (1, -1)}
MOOD_SOURCES: tuple[str, ...] = ("audio", "text", "imputed", "fused", "prior")


# --------------------------------------------------------------------------- labels
def emopia_labels(*, data_dir: Path = store.DATA_DIR) -> pl.DataFrame:
    """EMOPIA clip labels: clip_id, quadrant, split (train/val), valence_sign, arousal_sign."""
    try:
        path = resolve_open_file(data_dir=data_dir, relative="emopia/labels.csv")
    except FileNotFoundError:
        path = resolve_open_file(data_dir=data_dir, relative="midi/emopia/labels.csv")
    df = pl.read_csv(path, schema_overrides={QUADRANT: pl.Int64})
    return df.select(
        pl.col(CLIP_ID).cast(pl.String),
        pl.col(QUADRANT),
        pl.col(SPLIT),
        pl.col(QUADRANT).replace_strict({q: s[0] for q, s in QUADRANT_SIGNS.items()}).alias(VALENCE_SIGN),
        pl.col(QUADRANT).replace_strict({q: s[1] for q, s in QUADRANT_SIGNS.items()}).alias(AROUSAL_SIGN),
    )


def emopia_midi_path(*, data_dir: Path, clip_id: str) -> Path:
    """The MIDI file of an EMOPIA clip."""
    labels = resolve_open_file(data_dir=data_dir, relative="emopia/labels.csv")
    return labels.parent / "midis" / f"{clip_id}.mid"


def immich_labels(
    *, data_dir: Path = store.DATA_DIR, lexicon: MoodLexicon, text_model: Any | None = None
) -> pl.DataFrame:
    """immich tracks: track_id (file stem), path, mood, valence, arousal, valence_sign,
    arousal_sign, label_source ("glasgow" / "query_model" / null).

    valence/arousal are the Glasgow-norm values of the mood word (null where the norms do not
    rate it, unless ``text_model`` — a ``QueryMoodModel`` — is given to fill them)."""
    csv_path = resolve_open_file(data_dir=data_dir, relative="audio/immich/labels.csv")
    df = pl.read_csv(csv_path)
    words = sorted(set(df[MOOD_WORD].to_list()))
    moods: dict[str, tuple[float | None, float | None, str | None]] = {}
    for word in words:
        norm = lexicon.word_mood(word)
        if norm is not None:
            moods[word] = (norm[0], norm[1], "glasgow")
        elif text_model is not None:
            v, a, _ = text_model.predict([word])[0]
            moods[word] = (float(v), float(a), "query_model")
        else:
            moods[word] = (None, None, None)
    base = csv_path.parent
    out = df.select(
        pl.col("path").map_elements(lambda p: Path(p).stem, return_dtype=pl.String).alias(TRACK_ID),
        pl.col("path").map_elements(lambda p: str(base / p), return_dtype=pl.String).alias("path"),
        pl.col(MOOD_WORD),
    )
    out = out.with_columns(
        pl.col(MOOD_WORD).replace_strict({w: m[0] for w, m in moods.items()}, return_dtype=pl.Float64).alias(VALENCE),
        pl.col(MOOD_WORD).replace_strict({w: m[1] for w, m in moods.items()}, return_dtype=pl.Float64).alias(AROUSAL),
        pl.col(MOOD_WORD).replace_strict({w: m[2] for w, m in moods.items()}, return_dtype=pl.String).alias(LABEL_SOURCE),
    )
    return out.with_columns(
        pl.col(VALENCE).sign().cast(pl.Int64).alias(VALENCE_SIGN),
        pl.col(AROUSAL).sign().cast(pl.Int64).alias(AROUSAL_SIGN),
    )


# --------------------------------------------------------------------------- model
def _feature_matrix(features: pl.DataFrame, columns: Sequence[str]) -> np.ndarray:
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise KeyError(f"feature columns missing from frame: {missing}")
    return features.select([pl.col(c).cast(pl.Float64) for c in columns]).to_numpy()


def _axis_targets(labels: pl.DataFrame, axis: str) -> tuple[np.ndarray, np.ndarray]:
    """(y in {0,1} or -1 for unknown, sample weight) for axis "valence" / "arousal"."""
    sign_col = f"{axis}_sign"
    n = labels.height
    y = np.full(n, -1, dtype=np.int64)
    w = np.ones(n, dtype=np.float64)
    signs = labels[sign_col].to_numpy() if sign_col in labels.columns else np.full(n, np.nan)
    values = labels[axis].to_numpy() if axis in labels.columns else np.full(n, np.nan)
    signs = np.asarray(signs, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    from_value = np.isfinite(values) & (values != 0)
    y[from_value] = (values[from_value] > 0).astype(np.int64)
    w[from_value] = np.abs(values[from_value])
    from_sign = ~from_value & np.isfinite(signs) & (signs != 0)
    y[from_sign] = (signs[from_sign] > 0).astype(np.int64)
    if SAMPLE_WEIGHT in labels.columns:
        w = w * labels[SAMPLE_WEIGHT].fill_null(1.0).to_numpy()
    return y, w


def _make_classifier(kind: str, param: float, seed: int = 0) -> Any:
    if kind == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(C=param, max_iter=2000))
    from xgboost import XGBClassifier

    return XGBClassifier(
        n_estimators=int(param), max_depth=3, learning_rate=0.05, subsample=0.8,
        colsample_bytree=0.8, n_jobs=2, random_state=seed, verbosity=0,
    )


CANDIDATES: tuple[tuple[str, float], ...] = (
    ("logreg", 0.01), ("logreg", 0.1), ("logreg", 1.0), ("xgb", 100.0), ("xgb", 300.0),
)


@dataclass
class AudioMoodModel:
    """Per-axis sign classifiers over audio feature columns."""

    feature_columns: tuple[str, ...]
    valence_clf: Any
    arousal_clf: Any
    fill_values: np.ndarray  # (d,) training medians used for null features
    info: dict[str, Any] = field(default_factory=dict)

    def _x(self, features: pl.DataFrame) -> np.ndarray:
        x = _feature_matrix(features, self.feature_columns)
        bad = ~np.isfinite(x)
        if bad.any():
            x = np.where(bad, self.fill_values[None, :], x)
        return x

    def predict_proba(self, features: pl.DataFrame) -> np.ndarray:
        """(n, 2): P(valence > 0), P(arousal > 0)."""
        x = self._x(features)
        return np.column_stack(
            [self.valence_clf.predict_proba(x)[:, 1], self.arousal_clf.predict_proba(x)[:, 1]]
        )

    def predict(self, features: pl.DataFrame) -> np.ndarray:
        """(n, 3) float64: valence, arousal in [-1, 1] (= 2p − 1), confidence in [0, 1]."""
        if features.height == 0:
            return np.zeros((0, 3))
        va = 2.0 * self.predict_proba(features) - 1.0
        return np.column_stack([va, np.abs(va).mean(1)])


def sign_metrics(*, pred_va: np.ndarray, valence_sign: np.ndarray, arousal_sign: np.ndarray) -> dict[str, float]:
    """Valence-sign, arousal-sign and quadrant accuracy of (n, 2) predictions vs ±1 labels."""
    pv = np.where(pred_va[:, 0] > 0, 1, -1)
    pa = np.where(pred_va[:, 1] > 0, 1, -1)
    vok = pv == valence_sign
    aok = pa == arousal_sign
    return {
        "valence_sign_acc": float(vok.mean()),
        "arousal_sign_acc": float(aok.mean()),
        "quadrant_acc": float((vok & aok).mean()),
        "n": int(len(pv)),
    }


def fit_audio_mood_model(
    *,
    features: pl.DataFrame,
    labels: pl.DataFrame,
    feature_columns: Sequence[str],
    candidates: Sequence[tuple[str, float]] = CANDIDATES,
    refit_on_all: bool = True,
    seed: int = 0,
) -> tuple[AudioMoodModel, dict[str, Any]]:
    """Fit the audio mood model; return (model, metrics).

    ``features``: track_id + ``feature_columns`` (numeric; nulls are filled with training medians).
    ``labels``: track_id and per axis either ``valence_sign``/``arousal_sign`` (±1) or continuous
    ``valence``/``arousal`` (sign used, weight |value|); optional ``split`` ("train"/"val") and
    ``sample_weight``. With val rows present, each candidate (kind, param) is fit on the train
    rows and scored on val (mean of the two sign accuracies); the best is refit on all labelled
    rows when ``refit_on_all``. Metrics hold every candidate's val scores, the chosen one, and the
    plan-formula baseline on the same val rows.
    """
    feature_columns = tuple(feature_columns)
    df = labels.join(features, on=TRACK_ID, how="inner")
    if df.height == 0:
        raise ValueError("no labelled rows have features")
    x = _feature_matrix(df, feature_columns)
    fill = np.nanmedian(np.where(np.isfinite(x), x, np.nan), axis=0)
    fill = np.where(np.isfinite(fill), fill, 0.0)
    x = np.where(np.isfinite(x), x, fill[None, :])
    yv, wv = _axis_targets(df, "valence")
    ya, wa = _axis_targets(df, "arousal")
    split = df[SPLIT].to_numpy() if SPLIT in df.columns else np.full(df.height, "train")
    is_val = split == "val"
    is_train = ~is_val

    def fit_axis(kind: str, param: float, rows: np.ndarray, y: np.ndarray, w: np.ndarray) -> Any:
        keep = rows & (y >= 0)
        if len(np.unique(y[keep])) < 2:
            raise ValueError("an axis has labels of one class only; cannot fit")
        return _make_classifier(kind, param, seed).fit(x[keep], y[keep], **_weight_kw(kind, w[keep]))

    metrics: dict[str, Any] = {"n_labelled": int(df.height), "n_val": int(is_val.sum())}
    results: dict[str, dict[str, float]] = {}
    chosen = tuple(candidates[0])
    if is_val.any():
        val_mask = is_val & (yv >= 0) & (ya >= 0)
        vs, as_ = np.where(yv[val_mask] > 0, 1, -1), np.where(ya[val_mask] > 0, 1, -1)
        for kind, param in candidates:
            cv = fit_axis(kind, param, is_train, yv, wv)
            ca = fit_axis(kind, param, is_train, ya, wa)
            p = np.column_stack([cv.predict_proba(x[val_mask])[:, 1], ca.predict_proba(x[val_mask])[:, 1]])
            results[f"{kind}_{param:g}"] = sign_metrics(pred_va=2 * p - 1, valence_sign=vs, arousal_sign=as_)
        best = max(
            results, key=lambda k: results[k]["valence_sign_acc"] + results[k]["arousal_sign_acc"]
        )
        chosen = next((k, p) for k, p in candidates if f"{k}_{p:g}" == best)
        metrics["val"] = results[best]
        metrics["candidates"] = results
        metrics["val_plan_baseline"] = sign_metrics(
            pred_va=plan_baseline_mood(df.filter(pl.Series(val_mask))), valence_sign=vs, arousal_sign=as_
        )
    rows = np.ones(df.height, dtype=bool) if (refit_on_all or not is_val.any()) else is_train
    model = AudioMoodModel(
        feature_columns=feature_columns,
        valence_clf=fit_axis(*chosen, rows, yv, wv),
        arousal_clf=fit_axis(*chosen, rows, ya, wa),
        fill_values=fill,
    )
    metrics["chosen"] = {"kind": chosen[0], "param": chosen[1], "refit_on_all": refit_on_all}
    metrics["n_fit"] = int(rows.sum())
    model.info = {k: v for k, v in metrics.items() if k in ("val", "val_plan_baseline", "chosen")}
    return model, metrics


def _weight_kw(kind: str, w: np.ndarray) -> dict[str, Any]:
    return {"logisticregression__sample_weight": w} if kind == "logreg" else {"sample_weight": w}


# --------------------------------------------------------------------------- plan baseline
def _norm(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = np.nanmin(x), np.nanmax(x)
    return np.zeros_like(x) if not hi > lo else (x - lo) / (hi - lo)


def plan_baseline_mood(features: pl.DataFrame) -> np.ndarray:
    """PLAN.md §3.2 hand-weighted formula → (n, 2) valence, arousal in [-1, 1]. Baseline only.

    Uses the plan's ranges (tempo 60–200 BPM, rms 0–0.5, centroid 500–5000 Hz). The plan leaves
    three inputs undefined, filled here as: ``onset_strength`` → ``pulse_clarity`` (in [0, 1]);
    ``chroma_std_norm`` → ``chroma_std`` min–max normalised over the given rows; the
    ``spectral_flux < threshold`` flag → flux below the median of the given rows.
    """
    col = lambda c: features[c].cast(pl.Float64).fill_null(float("nan")).to_numpy()  # noqa: E731
    bpm = _norm(col("tempo"), 60, 200)
    energy = _norm(col("rms_mean"), 0, 0.5)
    bright = _norm(col("spectral_centroid_mean"), 500, 5000)
    onset = np.clip(col("pulse_clarity"), 0, 1)
    chroma_std = _minmax(col("chroma_std"))
    flux = col("spectral_flux_mean")
    stable = (flux < np.nanmedian(flux)).astype(np.float64)
    arousal = 0.4 * bpm + 0.3 * energy + 0.2 * bright + 0.1 * onset
    valence = 0.4 * bright + 0.3 * (1 - chroma_std) + 0.2 * energy + 0.1 * stable
    out = np.column_stack([2 * valence - 1, 2 * arousal - 1])
    return np.nan_to_num(out, nan=0.0)


# --------------------------------------------------------------------------- fusion
def fuse_track_moods(
    *,
    track_ids: Sequence[str],
    audio_pred: np.ndarray | None,
    audio_is_imputed: np.ndarray | None,
    text_pred: np.ndarray | None,
) -> pl.DataFrame:
    """Combine per-track audio and text moods → track_id, valence, arousal, mood_source,
    mood_confidence.

    ``audio_pred``/``text_pred``: (n, 3) [valence, arousal, confidence] with NaN rows where the
    source has nothing (None = nothing for every track); ``audio_is_imputed``: (n,) bool, True
    where the audio features were imputed rather than extracted.

    - audio and text both present → confidence-weighted mean, source "fused" (imputed audio
      counts as audio here); if both confidences are 0 the plain mean is used. Confidence = the
      confidence-weighted mean of the two confidences times an agreement factor
      ``1 − d / (2√2)`` (``d`` the distance between the two moods; 2√2 is the diameter of
      [−1, 1]²), so agreeing sources keep their confidence and contradicting ones lose it;
    - only extracted audio → "audio"; only imputed audio → "imputed"; only text → "text";
    - neither → "prior": valence = arousal = 0 (the neutral centre) with confidence 0. The
      pipeline gives every track text or imputed audio, so "prior" flags an upstream gap.
    Values are clipped to [-1, 1], confidences to [0, 1].
    """
    n = len(track_ids)

    def as_pred(a: np.ndarray | None) -> np.ndarray:
        if a is None:
            return np.full((n, 3), np.nan)
        a = np.asarray(a, dtype=np.float64)
        if a.shape != (n, 3):
            raise ValueError(f"prediction shape {a.shape} != ({n}, 3)")
        return a

    audio, text = as_pred(audio_pred), as_pred(text_pred)
    imputed = np.zeros(n, dtype=bool) if audio_is_imputed is None else np.asarray(audio_is_imputed, dtype=bool)
    has_a = np.isfinite(audio[:, :2]).all(1)
    has_t = np.isfinite(text[:, :2]).all(1)
    ca = np.clip(np.nan_to_num(audio[:, 2], nan=0.0), 0, 1)
    ct = np.clip(np.nan_to_num(text[:, 2], nan=0.0), 0, 1)

    va = np.zeros((n, 2))
    conf = np.zeros(n)
    source = np.full(n, "prior", dtype=object)

    both = has_a & has_t
    wsum = ca + ct
    wa = np.where(wsum > 0, ca / np.where(wsum > 0, wsum, 1), 0.5)
    va[both] = (wa[:, None] * np.nan_to_num(audio[:, :2]) + (1 - wa[:, None]) * np.nan_to_num(text[:, :2]))[both]
    wconf = np.where(wsum > 0, (ca**2 + ct**2) / np.where(wsum > 0, wsum, 1), 0.0)
    dist = np.linalg.norm(np.nan_to_num(audio[:, :2]) - np.nan_to_num(text[:, :2]), axis=1)
    conf[both] = (wconf * (1.0 - dist / (2.0 * np.sqrt(2.0))))[both]
    source[both] = "fused"

    only_a = has_a & ~has_t
    va[only_a] = audio[only_a, :2]
    conf[only_a] = ca[only_a]
    source[only_a & ~imputed] = "audio"
    source[only_a & imputed] = "imputed"

    only_t = has_t & ~has_a
    va[only_t] = text[only_t, :2]
    conf[only_t] = ct[only_t]
    source[only_t] = "text"

    va = np.clip(va, -1.0, 1.0)
    return pl.DataFrame(
        {
            TRACK_ID: pl.Series(list(track_ids), dtype=pl.String),
            VALENCE: va[:, 0],
            AROUSAL: va[:, 1],
            MOOD_SOURCE: pl.Series(source.tolist(), dtype=pl.String),
            MOOD_CONFIDENCE: np.clip(conf, 0.0, 1.0),
        }
    )


def is_finite_prediction(pred: np.ndarray) -> bool:
    """True when every value of an (n, 3) prediction is finite and inside its range."""
    return bool(
        np.isfinite(pred).all()
        and (np.abs(pred[:, :2]) <= 1 + 1e-9).all()
        and ((pred[:, 2] >= 0) & (pred[:, 2] <= 1)).all()
    )



# --------------------------------------------------------------------------- EMOPIA audio
def emopia_features(
    *,
    data_dir: Path = store.DATA_DIR,
    out_dir: Path | None = None,
    clip_ids: Sequence[str] | None = None,
    workers: int = 2,
    render_workers: int = 1,
    duration: float = 30.0,
    progress: bool = False,
) -> pl.DataFrame:
    """Render EMOPIA MIDI clips (``pipelines.render``) and extract audio features
    (``pipelines.audio``) → track_id (= clip_id), every ``FEATURE_COLUMNS`` entry, audio_error.

    Renders go to ``out_dir`` (default ``store.audio_dir("emopia")``); fresh renders are reused.
    Clips that fail to render get an ``audio_error`` row with null features. ``render_workers``
    defaults to 1: with 2 render threads the process segfaulted inside libsndfile (Ogg encode)
    on this machine."""
    from pipelines.audio import extract_many
    from pipelines.render import render_many

    labels = emopia_labels(data_dir=data_dir)
    ids = list(clip_ids) if clip_ids is not None else labels[CLIP_ID].to_list()
    out_dir = Path(out_dir) if out_dir is not None else store.audio_dir("emopia")
    rendered = render_many(
        items=[(cid, emopia_midi_path(data_dir=data_dir, clip_id=cid)) for cid in ids],
        out_dir=out_dir, workers=render_workers, progress=progress,
    )
    ok = rendered.filter(pl.col("audio_path").is_not_null())
    feats = extract_many(
        items=list(zip(ok[CLIP_ID].to_list(), ok["audio_path"].to_list())),
        workers=workers, duration=duration, progress=progress,
    )
    failed = rendered.filter(pl.col("audio_path").is_null()).select(
        pl.col(CLIP_ID).alias(TRACK_ID), pl.col("render_error").alias("audio_error")
    )
    return pl.concat([feats, failed], how="diagonal_relaxed")
