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
arousal), each either standardise + logistic regression or gradient-boosted trees (xgboost).
Selection and calibration never look at the EMOPIA val split (see :func:`fit_audio_mood_model`):

1. every candidate is scored per axis by song-grouped, quadrant-stratified k-fold
   cross-validation on the train rows only (groups from :func:`song_groups`: the clips of one
   EMOPIA song share a group even across quadrants; every immich track is its own group); the
   candidate with the best out-of-fold sign accuracy (ties: ROC AUC) is chosen per axis;
2. its probabilities are calibrated with sklearn ``CalibratedClassifierCV`` over the same grouped
   folds; sigmoid (Platt) or isotonic is chosen by the grouped-CV log-loss of a calibrator fitted
   on the chosen candidate's out-of-fold probabilities;
3. the calibrated classifier is fitted on the train rows, and val is then scored once:
   4-quadrant and per-axis sign accuracy, Brier score and expected calibration error per axis,
   beside the uncalibrated chosen classifier and the plan-formula baseline.

``p`` = P(axis > 0); the axis value is ``2p − 1`` (in [−1, 1], shrunk toward 0 when unsure) and
the confidence is the mean over both axes of ``|2p − 1|`` — with calibrated ``p`` this is an
honest "how sure is the sign" number. Continuous labels (immich) enter as their sign with sample
weight ``|value|`` so a weakly-rated word counts less than a clear one.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.preprocessing import StandardScaler

from pipelines import store
from pipelines.mood.lexicon import MoodLexicon, resolve_open_file
from pipelines.schema import AROUSAL, MOOD_CONFIDENCE, MOOD_SOURCE, TRACK_ID, VALENCE

VALENCE_SIGN = "valence_sign"
AROUSAL_SIGN = "arousal_sign"
QUADRANT = "quadrant"
SPLIT = "split"
CLIP_ID = "clip_id"
MOOD_WORD = "mood"
LABEL_SOURCE = "label_source"
SAMPLE_WEIGHT = "sample_weight"
GROUP = "group"  # optional label column: rows sharing a value never straddle CV folds

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


class ScaledLogisticRegression(ClassifierMixin, BaseEstimator):
    """Standardise, then L2 logistic regression; one estimator (not a Pipeline) so that
    ``sample_weight`` reaches the regression inside ``CalibratedClassifierCV``."""

    def __init__(self, C: float = 1.0, max_iter: int = 2000) -> None:
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "ScaledLogisticRegression":
        """X (n, d), y (n,) in {0, 1}, sample_weight (n,) or None."""
        self.scaler_ = StandardScaler().fit(X)
        self.clf_ = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(
            self.scaler_.transform(X), y, sample_weight=sample_weight
        )
        self.classes_ = self.clf_.classes_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, 2) class probabilities."""
        return self.clf_.predict_proba(self.scaler_.transform(X))

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """(n,) logit of class 1."""
        return self.clf_.decision_function(self.scaler_.transform(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[(self.predict_proba(X)[:, 1] > 0.5).astype(int)]


def _make_classifier(kind: str, param: float, seed: int = 0) -> Any:
    if kind == "logreg":
        return ScaledLogisticRegression(C=param)
    from xgboost import XGBClassifier

    return XGBClassifier(
        n_estimators=int(param), max_depth=3, learning_rate=0.05, subsample=0.8,
        colsample_bytree=0.8, n_jobs=2, random_state=seed, verbosity=0,
    )


CANDIDATES: tuple[tuple[str, float], ...] = (
    ("logreg", 0.01), ("logreg", 0.1), ("logreg", 1.0), ("xgb", 100.0), ("xgb", 300.0),
)
CALIBRATION_METHODS: tuple[str, ...] = ("sigmoid", "isotonic")
N_FOLDS = 5
ECE_BINS = 10
_EPS = 1e-6
_EMOPIA_CLIP_RE = re.compile(r"^Q[1-4]_(.+)_\d+$")


def _candidate_name(kind: str, param: float) -> str:
    return f"{kind}_{param:g}"


@dataclass
class AudioMoodModel:
    """Per-axis (calibrated) sign classifiers over audio feature columns."""

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


def expected_calibration_error(*, p: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE of (n,) probabilities P(y = 1) against (n,) labels in {0, 1}: ``n_bins`` equal-width
    bins of ``p``; sum over bins of (bin share) × |mean label − mean p|."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        m = bins == b
        ece += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(ece)


def reliability_bins(*, p: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Per non-empty equal-width bin of (n,) ``p``: mean p, observed rate of y = 1, count."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    return [
        {"p_mean": float(p[bins == b].mean()), "rate": float(y[bins == b].mean()), "n": int((bins == b).sum())}
        for b in np.unique(bins)
    ]


def probability_metrics(*, p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Sign accuracy, Brier score, log-loss, ECE and ROC AUC of (n,) P(y = 1) vs (n,) y in {0, 1}."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    pc = np.clip(p, _EPS, 1 - _EPS)
    return {
        "acc": float(((p > 0.5) == (y > 0.5)).mean()),
        "brier": float(np.mean((p - y) ** 2)),
        "log_loss": float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc))),
        "ece": expected_calibration_error(p=p, y=y),
        "auc": float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan"),
        "n": int(len(p)),
    }


def song_groups(*, track_ids: Sequence[str]) -> np.ndarray:
    """(n,) str: the song each labelled row comes from, for grouped cross-validation.

    EMOPIA clip ids are ``Q<quadrant>_<YouTube id>_<clip number>``; the clips of one song share
    ``emopia:<YouTube id>`` (65 EMOPIA songs have clips in more than one quadrant, so the quadrant
    is not part of the key). Any other id (an immich track, a crawl track) is its own group."""
    out = []
    for tid in track_ids:
        m = _EMOPIA_CLIP_RE.match(str(tid))
        out.append(f"emopia:{m.group(1)}" if m else f"track:{tid}")
    return np.asarray(out, dtype=object)


def grouped_folds(
    *, groups: np.ndarray, strata: np.ndarray, n_splits: int = N_FOLDS, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Group-disjoint, stratified k folds over (n,) rows → [(train_idx, test_idx)], indices into
    the n rows. ``n_splits`` is capped at the number of distinct groups (at least 2 needed)."""
    k = min(n_splits, len(np.unique(groups)))
    if k < 2:
        raise ValueError("grouped cross-validation needs at least two groups")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    import warnings

    with warnings.catch_warnings():  # "least populated class has only m members": fine for tiny tests
        warnings.simplefilter("ignore", UserWarning)
        return [(tr, te) for tr, te in splitter.split(np.zeros(len(groups)), strata, groups)]


def _restrict(folds: list[tuple[np.ndarray, np.ndarray]], rows: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds over all train rows → folds over the subset ``rows`` (sorted indices), re-indexed."""
    pos = {r: i for i, r in enumerate(rows)}
    out = []
    for tr, te in folds:
        tr_l = np.array([pos[r] for r in tr if r in pos], dtype=np.int64)
        te_l = np.array([pos[r] for r in te if r in pos], dtype=np.int64)
        if len(tr_l) and len(te_l):
            out.append((tr_l, te_l))
    return out


def _fit(est: Any, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> Any:
    return est.fit(x, y, sample_weight=w)


def _oof_proba(
    *, kind: str, param: float, x: np.ndarray, y: np.ndarray, w: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]], seed: int,
) -> np.ndarray:
    """(n,) out-of-fold P(y = 1) over the rows of x (each row predicted by a model that never saw
    its group)."""
    p = np.full(len(y), np.nan)
    for tr, te in folds:
        if len(np.unique(y[tr])) < 2:
            continue
        p[te] = _fit(_make_classifier(kind, param, seed), x[tr], y[tr], w[tr]).predict_proba(x[te])[:, 1]
    return p


def _calibrator_cv_log_loss(
    *, method: str, p: np.ndarray, y: np.ndarray, w: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]
) -> float:
    """Grouped-CV log-loss of a ``method`` calibrator (sigmoid = Platt on logit p; isotonic)
    fitted on out-of-fold probabilities ``p`` of the other folds."""
    z = np.log(np.clip(p, _EPS, 1 - _EPS) / np.clip(1 - p, _EPS, 1))
    q = np.full(len(y), np.nan)
    for tr, te in folds:
        if len(np.unique(y[tr])) < 2:
            continue
        if method == "sigmoid":
            cal = LogisticRegression(C=1e6, max_iter=1000).fit(z[tr, None], y[tr], sample_weight=w[tr])
            q[te] = cal.predict_proba(z[te, None])[:, 1]
        else:
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p[tr], y[tr], sample_weight=w[tr])
            q[te] = iso.predict(p[te])
    ok = np.isfinite(q)
    qc = np.clip(q[ok], _EPS, 1 - _EPS)
    return float(-np.average(y[ok] * np.log(qc) + (1 - y[ok]) * np.log(1 - qc), weights=w[ok]))


def fit_audio_mood_model(
    *,
    features: pl.DataFrame,
    labels: pl.DataFrame,
    feature_columns: Sequence[str],
    candidates: Sequence[tuple[str, float]] = CANDIDATES,
    calibration_methods: Sequence[str] = CALIBRATION_METHODS,
    n_folds: int = N_FOLDS,
    refit_on_all: bool = False,
    seed: int = 0,
) -> tuple[AudioMoodModel, dict[str, Any]]:
    """Fit the audio mood model; return (model, metrics).

    ``features``: track_id + ``feature_columns`` (numeric; nulls are filled with training medians).
    ``labels``: track_id and per axis either ``valence_sign``/``arousal_sign`` (±1) or continuous
    ``valence``/``arousal`` (sign used, weight |value|); optional ``split`` ("train"/"val"),
    ``sample_weight`` and ``group`` (default :func:`song_groups` of the track ids).

    Per axis, on the train rows only: each candidate (kind, param) is scored by song-grouped
    ``n_folds``-fold CV (out-of-fold accuracy, AUC, log-loss, Brier, ECE); the best by accuracy
    (ties: AUC) is calibrated with ``CalibratedClassifierCV`` over the same folds, with the
    method among ``calibration_methods`` of lowest CV log-loss (a calibrator fitted on the chosen
    candidate's out-of-fold probabilities of the other folds), and fitted on the train rows.
    Val rows are then scored once — they influence nothing. ``refit_on_all`` refits the same
    choice on train + val afterwards (the val metrics then describe the train-only fit, not the
    returned model). Metrics: ``cv`` (candidate → axis → scores), ``cv_quadrant_acc``,
    ``chosen``, ``calibration``, ``val`` (calibrated), ``val_uncalibrated`` and
    ``val_plan_baseline``.
    """
    feature_columns = tuple(feature_columns)
    df = labels.join(features, on=TRACK_ID, how="inner")
    if df.height == 0:
        raise ValueError("no labelled rows have features")
    x = _feature_matrix(df, feature_columns)
    split = df[SPLIT].to_numpy() if SPLIT in df.columns else np.full(df.height, "train")
    is_val = split == "val"
    is_train = ~is_val
    fill = np.nanmedian(np.where(np.isfinite(x[is_train]), x[is_train], np.nan), axis=0)
    fill = np.where(np.isfinite(fill), fill, 0.0)
    x = np.where(np.isfinite(x), x, fill[None, :])
    targets = {"valence": _axis_targets(df, "valence"), "arousal": _axis_targets(df, "arousal")}
    groups = (
        df[GROUP].cast(pl.String).to_numpy().astype(object)
        if GROUP in df.columns else song_groups(track_ids=df[TRACK_ID].to_list())
    )
    yv, ya = targets["valence"][0], targets["arousal"][0]
    strata = (yv + 1) * 3 + (ya + 1)  # joint sign class, unknown (-1) as its own level
    train_idx = np.where(is_train)[0]
    folds_all = grouped_folds(groups=groups[train_idx], strata=strata[train_idx], n_splits=n_folds, seed=seed)
    folds_all = [(train_idx[tr], train_idx[te]) for tr, te in folds_all]

    metrics: dict[str, Any] = {
        "n_labelled": int(df.height), "n_train": int(is_train.sum()), "n_val": int(is_val.sum()),
        "n_groups_train": int(len(np.unique(groups[is_train]))), "n_folds": len(folds_all),
        "cv": {_candidate_name(k, p): {} for k, p in candidates},
    }
    chosen: dict[str, dict[str, Any]] = {}
    calibration: dict[str, dict[str, Any]] = {}
    fitted: dict[str, Any] = {}
    uncalibrated: dict[str, Any] = {}
    oof_by_cand: dict[str, dict[str, np.ndarray]] = {}
    for axis, (y, w) in targets.items():
        rows = np.where(is_train & (y >= 0))[0]
        if len(np.unique(y[rows])) < 2:
            raise ValueError(f"the {axis} axis has train labels of one class only; cannot fit")
        folds = _restrict(folds_all, rows)
        xr, yr, wr = x[rows], y[rows], w[rows]
        best, best_key, best_p = None, (-1.0, -1.0), None
        for kind, param in candidates:
            name = _candidate_name(kind, param)
            p = _oof_proba(kind=kind, param=param, x=xr, y=yr, w=wr, folds=folds, seed=seed)
            ok = np.isfinite(p)
            scores = probability_metrics(p=p[ok], y=yr[ok])
            metrics["cv"][name][axis] = scores
            full = np.full(df.height, np.nan)
            full[rows] = p
            oof_by_cand.setdefault(name, {})[axis] = full
            key = (scores["acc"], np.nan_to_num(scores["auc"], nan=0.0))
            if key > best_key:
                best, best_key, best_p = (kind, param), key, p
        assert best is not None and best_p is not None
        chosen[axis] = {"kind": best[0], "param": best[1], "cv_acc": best_key[0], "cv_auc": best_key[1]}
        ok = np.isfinite(best_p)
        ok_idx = np.where(ok)[0]
        folds_ok = _restrict(folds, ok_idx)
        cal_ll = {
            m: _calibrator_cv_log_loss(method=m, p=best_p[ok], y=yr[ok], w=wr[ok], folds=folds_ok)
            for m in calibration_methods
        }
        method = min(cal_ll, key=cal_ll.get)
        calibration[axis] = {
            "method": method,
            "cv_log_loss": cal_ll,
            "cv_log_loss_uncalibrated": probability_metrics(p=best_p[ok], y=yr[ok])["log_loss"],
        }
        fitted[axis] = CalibratedClassifierCV(
            _make_classifier(*best, seed), method=method, cv=folds, ensemble=True
        ).fit(xr, yr, sample_weight=wr)
        uncalibrated[axis] = _fit(_make_classifier(*best, seed), xr, yr, wr)

    # Quadrant accuracy per candidate on out-of-fold predictions (rows with both signs known).
    both = is_train & (yv >= 0) & (ya >= 0)
    metrics["cv_quadrant_acc"] = {
        name: float((((o["valence"][both] > 0.5) == (yv[both] == 1)) & ((o["arousal"][both] > 0.5) == (ya[both] == 1)))[
            np.isfinite(o["valence"][both]) & np.isfinite(o["arousal"][both])].mean())
        for name, o in oof_by_cand.items()
    }
    metrics["chosen"] = chosen
    metrics["calibration"] = calibration

    model = AudioMoodModel(
        feature_columns=feature_columns, valence_clf=fitted["valence"], arousal_clf=fitted["arousal"], fill_values=fill,
    )
    val_mask = is_val & (yv >= 0) & (ya >= 0)
    if val_mask.any():
        vs, as_ = np.where(yv[val_mask] > 0, 1, -1), np.where(ya[val_mask] > 0, 1, -1)
        xv = x[val_mask]

        def report(pv: np.ndarray, pa: np.ndarray) -> dict[str, Any]:
            out: dict[str, Any] = sign_metrics(pred_va=np.column_stack([2 * pv - 1, 2 * pa - 1]), valence_sign=vs, arousal_sign=as_)
            for axis, p, y in (("valence", pv, yv[val_mask]), ("arousal", pa, ya[val_mask])):
                pm = probability_metrics(p=p, y=y)
                out.update({f"{axis}_brier": pm["brier"], f"{axis}_ece": pm["ece"], f"{axis}_log_loss": pm["log_loss"], f"{axis}_auc": pm["auc"]})
            return out

        pv, pa = (fitted[a].predict_proba(xv)[:, 1] for a in ("valence", "arousal"))
        metrics["val"] = report(pv, pa)
        metrics["val"]["reliability"] = {
            "valence": reliability_bins(p=pv, y=yv[val_mask]), "arousal": reliability_bins(p=pa, y=ya[val_mask]),
        }
        metrics["val_uncalibrated"] = report(*(uncalibrated[a].predict_proba(xv)[:, 1] for a in ("valence", "arousal")))
        base = np.clip(plan_baseline_mood(df.filter(pl.Series(val_mask))), -1, 1)
        metrics["val_plan_baseline"] = report((base[:, 0] + 1) / 2, (base[:, 1] + 1) / 2)
    metrics["refit_on_all"] = bool(refit_on_all and val_mask.any())
    metrics["n_fit"] = int(is_train.sum())
    if metrics["refit_on_all"]:
        for axis, (y, w) in targets.items():
            rows = np.where(y >= 0)[0]
            all_folds = grouped_folds(groups=groups[rows], strata=strata[rows], n_splits=n_folds, seed=seed)
            fitted[axis] = CalibratedClassifierCV(
                _make_classifier(chosen[axis]["kind"], chosen[axis]["param"], seed),
                method=calibration[axis]["method"], cv=all_folds, ensemble=True,
            ).fit(x[rows], y[rows], sample_weight=w[rows])
        model.valence_clf, model.arousal_clf = fitted["valence"], fitted["arousal"]
        metrics["n_fit"] = int(df.height)
    model.info = {k: v for k, v in metrics.items() if k in ("val", "val_plan_baseline", "chosen", "calibration", "refit_on_all")}
    return model, metrics


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


def pool_moods(*, preds: Sequence[np.ndarray]) -> np.ndarray:
    """Pool several (n, 3) [valence, arousal, confidence] evidences of the *same kind* (e.g. the
    query-mood model on a track's text and its tag moods) into one (n, 3); NaN rows = absent.

    Per row: the confidence-weighted mean of the present evidences (plain mean if all
    confidences are 0); confidence = ``1 − Π(1 − c_i)`` (independent agreeing evidences add up)
    times the agreement factor ``1 − s / √2``, ``s`` the confidence-weighted mean distance of the
    evidences from the pooled mood. A single evidence passes through unchanged; rows with none
    stay NaN."""
    arrs = [np.asarray(a, dtype=np.float64) for a in preds]
    if not arrs:
        raise ValueError("no evidence to pool")
    n = arrs[0].shape[0]
    if any(a.shape != (n, 3) for a in arrs):
        raise ValueError("every evidence must be (n, 3)")
    stack = np.stack(arrs)  # (k, n, 3)
    present = np.isfinite(stack[:, :, :2]).all(2)  # (k, n)
    c = np.where(present, np.clip(np.nan_to_num(stack[:, :, 2], nan=0.0), 0, 1), 0.0)
    va = np.where(present[:, :, None], np.nan_to_num(stack[:, :, :2]), 0.0)
    w = np.where(c.sum(0) > 0, c, present.astype(np.float64))  # (k, n)
    wsum = w.sum(0)
    out = np.full((n, 3), np.nan)
    has = present.any(0)
    mean = (w[:, :, None] * va).sum(0) / np.where(wsum > 0, wsum, 1.0)[:, None]
    dist = np.linalg.norm(va - mean[None], axis=2)
    spread = (w * dist).sum(0) / np.where(wsum > 0, wsum, 1.0)
    conf = (1.0 - np.prod(1.0 - c, axis=0)) * np.clip(1.0 - spread / np.sqrt(2.0), 0.0, 1.0)
    out[has, :2] = mean[has]
    out[has, 2] = conf[has]
    return out


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
    """Render EMOPIA MIDI clips (``pipelines.audio.render``) and extract audio features
    (``pipelines.audio.features``) → track_id (= clip_id), every ``FEATURE_COLUMNS`` entry, audio_error.

    Renders go to ``out_dir`` (default ``store.audio_dir("emopia")``); fresh renders are reused.
    Clips that fail to render get an ``audio_error`` row with null features. ``render_workers``
    defaults to 1: with 2 render threads the process segfaulted inside libsndfile (Ogg encode)
    on this machine."""
    from pipelines.audio.features import extract_many
    from pipelines.audio.render import render_many

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
