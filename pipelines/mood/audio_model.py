"""Audio → (valence, arousal, confidence): one calibrated sign classifier per axis.

Each axis is either standardise + logistic regression or gradient-boosted trees (xgboost), chosen by
song-grouped cross-validation on the train rows and calibrated over the same folds
(``pipelines.mood.selection``); the val rows are scored once and influence nothing. ``p`` =
P(axis > 0); the axis value is ``2p − 1`` and the confidence the mean over both axes of ``|2p − 1|``.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pipelines.errors import InvalidInputError
from pipelines.mood.fusion import plan_baseline_mood
from pipelines.mood.labels import GROUP, SAMPLE_WEIGHT, SPLIT
from pipelines.mood.selection import (
    N_FOLDS,
    Folds,
    candidate_name,
    grouped_folds,
    holdout_report,
    oof_quadrant_acc,
    reliability_bins,
    restrict_folds,
    select_calibration,
    select_candidate,
    song_groups,
)
from pipelines.schema import AROUSAL, TRACK_ID, VALENCE

CANDIDATES: tuple[tuple[str, float], ...] = (
    ("logreg", 0.01), ("logreg", 0.1), ("logreg", 1.0), ("xgb", 100.0), ("xgb", 300.0),
)
CALIBRATION_METHODS: tuple[str, ...] = ("sigmoid", "isotonic")
AXES: tuple[str, ...] = (VALENCE, AROUSAL)


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


def make_classifier(kind: str, param: float, seed: int = 0) -> Any:
    """An unfitted classifier: ``logreg`` (C = ``param``) or ``xgb`` (``param`` trees)."""
    if kind == "logreg":
        return ScaledLogisticRegression(C=param)
    from xgboost import XGBClassifier

    return XGBClassifier(
        n_estimators=int(param), max_depth=3, learning_rate=0.05, subsample=0.8,
        colsample_bytree=0.8, n_jobs=2, random_state=seed, verbosity=0,
    )


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


def _calibrated(*, kind: str, param: float, method: str, folds: Folds, x: np.ndarray, y: np.ndarray,
                w: np.ndarray, seed: int) -> CalibratedClassifierCV:
    """``make_classifier(kind, param)`` calibrated by ``method`` over ``folds`` and fitted on (x, y, w)."""
    return CalibratedClassifierCV(
        make_classifier(kind, param, seed), method=method, cv=folds, ensemble=True
    ).fit(x, y, sample_weight=w)


def _fit_axis(
    *, axis: str, x: np.ndarray, y: np.ndarray, w: np.ndarray, rows: np.ndarray, folds_all: Folds,
    candidates: Sequence[tuple[str, float]], calibration_methods: Sequence[str], seed: int,
) -> dict[str, Any]:
    """Select, calibrate and fit one axis on the train ``rows`` → chosen, calibration, cv (candidate →
    scores), oof (candidate → (n_all,) p, NaN off ``rows``), calibrated and uncalibrated classifiers."""
    if len(np.unique(y[rows])) < 2:
        raise InvalidInputError(f"the {axis} axis has train labels of one class only; cannot fit", field="labels")
    folds = restrict_folds(folds_all, rows)
    xr, yr, wr = x[rows], y[rows], w[rows]
    chosen, scores, oof = select_candidate(
        x=xr, y=yr, w=wr, folds=folds, candidates=candidates, make=lambda k, a: make_classifier(k, a, seed)
    )
    best_p = oof[candidate_name(chosen["kind"], chosen["param"])]
    calibration = select_calibration(p=best_p, y=yr, w=wr, folds=folds, methods=calibration_methods)
    full = {}
    for name, p in oof.items():
        full[name] = np.full(len(y), np.nan)
        full[name][rows] = p
    return {
        "chosen": chosen, "calibration": calibration, "cv": scores, "oof": full,
        "calibrated": _calibrated(kind=chosen["kind"], param=chosen["param"], method=calibration["method"],
                                  folds=folds, x=xr, y=yr, w=wr, seed=seed),
        "uncalibrated": make_classifier(chosen["kind"], chosen["param"], seed).fit(xr, yr, sample_weight=wr),
    }


def _holdout_metrics(*, df: pl.DataFrame, x: np.ndarray, mask: np.ndarray, yv: np.ndarray, ya: np.ndarray,
                     calibrated: dict[str, Any], uncalibrated: dict[str, Any]) -> dict[str, Any]:
    """val, val_uncalibrated and val_plan_baseline reports on the rows of boolean ``mask``."""
    xv, yv, ya = x[mask], yv[mask], ya[mask]
    pv, pa = (calibrated[a].predict_proba(xv)[:, 1] for a in AXES)
    val = holdout_report(pv=pv, pa=pa, yv=yv, ya=ya)
    val["reliability"] = {VALENCE: reliability_bins(p=pv, y=yv), AROUSAL: reliability_bins(p=pa, y=ya)}
    raw_v, raw_a = (uncalibrated[a].predict_proba(xv)[:, 1] for a in AXES)
    base = np.clip(plan_baseline_mood(df.filter(pl.Series(mask))), -1, 1)
    return {
        "val": val,
        "val_uncalibrated": holdout_report(pv=raw_v, pa=raw_a, yv=yv, ya=ya),
        "val_plan_baseline": holdout_report(pv=(base[:, 0] + 1) / 2, pa=(base[:, 1] + 1) / 2, yv=yv, ya=ya),
    }


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
    ``valence``/``arousal`` (sign used, weight |value|, so a weakly-rated word counts less); optional
    ``split`` ("train"/"val"), ``sample_weight`` and ``group`` (default: ``song_groups`` of the ids).

    Per axis, on the train rows only: each candidate (kind, param) is scored by song-grouped,
    sign-stratified ``n_folds``-fold CV (out-of-fold accuracy, AUC, log-loss, Brier, ECE); the best by
    accuracy (ties: AUC) is calibrated with ``CalibratedClassifierCV`` over the same folds, with the
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
        raise InvalidInputError("no labelled rows have features", field="labels")
    x = _feature_matrix(df, feature_columns)
    split = df[SPLIT].to_numpy() if SPLIT in df.columns else np.full(df.height, "train")
    is_val = split == "val"
    is_train = ~is_val
    fill = np.nanmedian(np.where(np.isfinite(x[is_train]), x[is_train], np.nan), axis=0)
    fill = np.where(np.isfinite(fill), fill, 0.0)
    x = np.where(np.isfinite(x), x, fill[None, :])
    targets = {axis: _axis_targets(df, axis) for axis in AXES}
    groups = (
        df[GROUP].cast(pl.String).to_numpy().astype(object)
        if GROUP in df.columns else song_groups(track_ids=df[TRACK_ID].to_list())
    )
    yv, ya = targets[VALENCE][0], targets[AROUSAL][0]
    strata = (yv + 1) * 3 + (ya + 1)  # joint sign class, unknown (-1) as its own level
    train_idx = np.where(is_train)[0]
    folds_all = grouped_folds(groups=groups[train_idx], strata=strata[train_idx], n_splits=n_folds, seed=seed)
    folds_all = [(train_idx[tr], train_idx[te]) for tr, te in folds_all]

    metrics: dict[str, Any] = {
        "n_labelled": int(df.height), "n_train": int(is_train.sum()), "n_val": int(is_val.sum()),
        "n_groups_train": int(len(np.unique(groups[is_train]))), "n_folds": len(folds_all),
        "cv": {candidate_name(k, p): {} for k, p in candidates},
    }
    fits = {
        axis: _fit_axis(axis=axis, x=x, y=y, w=w, rows=np.where(is_train & (y >= 0))[0], folds_all=folds_all,
                        candidates=candidates, calibration_methods=calibration_methods, seed=seed)
        for axis, (y, w) in targets.items()
    }
    for axis, fit in fits.items():
        for name, scores in fit["cv"].items():
            metrics["cv"][name][axis] = scores
    oof = {name: {axis: fits[axis]["oof"][name] for axis in AXES} for name in fits[VALENCE]["oof"]}
    metrics["cv_quadrant_acc"] = oof_quadrant_acc(oof=oof, yv=yv, ya=ya, rows=is_train & (yv >= 0) & (ya >= 0))
    metrics["chosen"] = {axis: fit["chosen"] for axis, fit in fits.items()}
    metrics["calibration"] = {axis: fit["calibration"] for axis, fit in fits.items()}
    fitted = {axis: fit["calibrated"] for axis, fit in fits.items()}

    val_mask = is_val & (yv >= 0) & (ya >= 0)
    if val_mask.any():
        metrics |= _holdout_metrics(df=df, x=x, mask=val_mask, yv=yv, ya=ya, calibrated=fitted,
                                    uncalibrated={axis: fit["uncalibrated"] for axis, fit in fits.items()})
    metrics["refit_on_all"] = bool(refit_on_all and val_mask.any())
    metrics["n_fit"] = int(is_train.sum())
    if metrics["refit_on_all"]:
        for axis, (y, w) in targets.items():
            rows = np.where(y >= 0)[0]
            all_folds = grouped_folds(groups=groups[rows], strata=strata[rows], n_splits=n_folds, seed=seed)
            chosen = metrics["chosen"][axis]
            fitted[axis] = _calibrated(kind=chosen["kind"], param=chosen["param"],
                                       method=metrics["calibration"][axis]["method"], folds=all_folds,
                                       x=x[rows], y=y[rows], w=w[rows], seed=seed)
        metrics["n_fit"] = int(df.height)
    model = AudioMoodModel(
        feature_columns=feature_columns, valence_clf=fitted[VALENCE], arousal_clf=fitted[AROUSAL], fill_values=fill,
    )
    kept = ("val", "val_plan_baseline", "chosen", "calibration", "refit_on_all")
    model.info = {k: v for k, v in metrics.items() if k in kept}
    return model, metrics
