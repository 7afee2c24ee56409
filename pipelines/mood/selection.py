"""Choosing and calibrating the audio mood classifier: song-grouped CV folds, out-of-fold scores,
calibration metrics (Brier, ECE, log-loss) and the per-axis choice of candidate and calibrator.
"""

import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from pipelines.errors import InvalidInputError

N_FOLDS = 5
ECE_BINS = 10
_EPS = 1e-6
_EMOPIA_CLIP_RE = re.compile(r"^Q[1-4]_(.+)_\d+$")

Folds = list[tuple[np.ndarray, np.ndarray]]  # [(train row indices, test row indices)]
ClassifierFactory = Callable[[str, float], Any]  # (kind, param) → an unfitted sklearn classifier


# --------------------------------------------------------------------------- metrics
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


def holdout_report(*, pv: np.ndarray, pa: np.ndarray, yv: np.ndarray, ya: np.ndarray) -> dict[str, Any]:
    """Sign / quadrant accuracy and per-axis Brier, ECE, log-loss, AUC of (n,) P(valence > 0) ``pv``
    and P(arousal > 0) ``pa`` against (n,) labels ``yv`` / ``ya`` in {0, 1}."""
    vs, as_ = np.where(yv > 0, 1, -1), np.where(ya > 0, 1, -1)
    out: dict[str, Any] = sign_metrics(pred_va=np.column_stack([2 * pv - 1, 2 * pa - 1]), valence_sign=vs,
                                       arousal_sign=as_)
    for axis, p, y in (("valence", pv, yv), ("arousal", pa, ya)):
        pm = probability_metrics(p=p, y=y)
        out.update({f"{axis}_brier": pm["brier"], f"{axis}_ece": pm["ece"], f"{axis}_log_loss": pm["log_loss"],
                    f"{axis}_auc": pm["auc"]})
    return out


# --------------------------------------------------------------------------- folds
def song_groups(*, track_ids: Sequence[str]) -> np.ndarray:
    """(n,) str: the song each labelled row comes from, for grouped cross-validation.

    EMOPIA clip ids are ``Q<quadrant>_<YouTube id>_<clip number>``; the clips of one song share
    ``emopia:<YouTube id>`` (some EMOPIA songs have clips in more than one quadrant, so the quadrant
    is not part of the key). Any other id (an immich track, a crawl track) is its own group."""
    out = []
    for tid in track_ids:
        m = _EMOPIA_CLIP_RE.match(str(tid))
        out.append(f"emopia:{m.group(1)}" if m else f"track:{tid}")
    return np.asarray(out, dtype=object)


def grouped_folds(*, groups: np.ndarray, strata: np.ndarray, n_splits: int = N_FOLDS, seed: int = 0) -> Folds:
    """Group-disjoint, stratified k folds over (n,) rows → [(train_idx, test_idx)], indices into
    the n rows. ``n_splits`` is capped at the number of distinct groups (at least 2 needed)."""
    k = min(n_splits, len(np.unique(groups)))
    if k < 2:
        raise InvalidInputError("grouped cross-validation needs at least two groups", field="groups")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class has only m members": fine for tiny tests
        warnings.simplefilter("ignore", UserWarning)
        return [(tr, te) for tr, te in splitter.split(np.zeros(len(groups)), strata, groups)]


def restrict_folds(folds: Folds, rows: np.ndarray) -> Folds:
    """Folds over all train rows → folds over the subset ``rows`` (sorted indices), re-indexed."""
    pos = {r: i for i, r in enumerate(rows)}
    out = []
    for tr, te in folds:
        tr_l = np.array([pos[r] for r in tr if r in pos], dtype=np.int64)
        te_l = np.array([pos[r] for r in te if r in pos], dtype=np.int64)
        if len(tr_l) and len(te_l):
            out.append((tr_l, te_l))
    return out


# --------------------------------------------------------------------------- choice
def candidate_name(kind: str, param: float) -> str:
    return f"{kind}_{param:g}"


def oof_proba(*, make: Callable[[], Any], x: np.ndarray, y: np.ndarray, w: np.ndarray, folds: Folds) -> np.ndarray:
    """(n,) out-of-fold P(y = 1) over the rows of x (each row predicted by a fresh ``make()`` fitted
    on the other folds, so never by a model that saw its group); NaN where a fold had one class."""
    p = np.full(len(y), np.nan)
    for tr, te in folds:
        if len(np.unique(y[tr])) < 2:
            continue
        p[te] = make().fit(x[tr], y[tr], sample_weight=w[tr]).predict_proba(x[te])[:, 1]
    return p


def select_candidate(
    *, x: np.ndarray, y: np.ndarray, w: np.ndarray, folds: Folds, candidates: Sequence[tuple[str, float]],
    make: ClassifierFactory,
) -> tuple[dict[str, Any], dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Score every (kind, param) candidate by out-of-fold probabilities over ``folds`` →
    (chosen: kind, param, cv_acc, cv_auc; scores per candidate name; (n,) OOF p per candidate name).
    The best out-of-fold sign accuracy wins, ties broken by ROC AUC; the first candidate wins a full tie."""
    best, best_key = None, (-1.0, -1.0)
    scores: dict[str, dict[str, float]] = {}
    oof: dict[str, np.ndarray] = {}
    for kind, param in candidates:
        name = candidate_name(kind, param)
        p = oof_proba(make=lambda k=kind, a=param: make(k, a), x=x, y=y, w=w, folds=folds)
        ok = np.isfinite(p)
        scores[name] = probability_metrics(p=p[ok], y=y[ok])
        oof[name] = p
        key = (scores[name]["acc"], np.nan_to_num(scores[name]["auc"], nan=0.0))
        if key > best_key:
            best, best_key = (kind, param), key
    assert best is not None
    chosen = {"kind": best[0], "param": best[1], "cv_acc": best_key[0], "cv_auc": best_key[1]}
    return chosen, scores, oof


def calibrator_cv_log_loss(*, method: str, p: np.ndarray, y: np.ndarray, w: np.ndarray, folds: Folds) -> float:
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


def select_calibration(
    *, p: np.ndarray, y: np.ndarray, w: np.ndarray, folds: Folds, methods: Sequence[str]
) -> dict[str, Any]:
    """The calibration method of lowest grouped-CV log-loss on the chosen candidate's (n,) OOF ``p``
    → method, cv_log_loss (per method), cv_log_loss_uncalibrated."""
    ok = np.isfinite(p)
    folds_ok = restrict_folds(folds, np.where(ok)[0])
    cal_ll = {m: calibrator_cv_log_loss(method=m, p=p[ok], y=y[ok], w=w[ok], folds=folds_ok) for m in methods}
    return {
        "method": min(cal_ll, key=cal_ll.get),
        "cv_log_loss": cal_ll,
        "cv_log_loss_uncalibrated": probability_metrics(p=p[ok], y=y[ok])["log_loss"],
    }


def oof_quadrant_acc(*, oof: dict[str, dict[str, np.ndarray]], yv: np.ndarray, ya: np.ndarray,
                     rows: np.ndarray) -> dict[str, float]:
    """Quadrant accuracy per candidate of its out-of-fold p (candidate → axis → (n,) p, NaN where not
    predicted) over the boolean mask ``rows`` (rows with both signs known), predicted rows only."""
    out = {}
    for name, o in oof.items():
        pv, pa = o["valence"][rows], o["arousal"][rows]
        hit = ((pv > 0.5) == (yv[rows] == 1)) & ((pa > 0.5) == (ya[rows] == 1))
        out[name] = float(hit[np.isfinite(pv) & np.isfinite(pa)].mean())
    return out
