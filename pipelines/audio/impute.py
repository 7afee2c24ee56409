"""Audio feature vectors for tracks without audio, imputed from tracks with real audio.

An ensemble of ``knn`` (text-embedding neighbours with real audio), ``regression`` (XGBoost on
[text | metadata] → PCA components of the standardised audio vector) and ``prototype`` (genre mean,
else the global mean), weighted by held-out error; every vector carries its source and a confidence.
"""

import itertools
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.heal.neighbours import nearest


@dataclass(frozen=True)
class AudioImputationResult:
    track_ids: list[str]
    features: np.ndarray  # (m, F) in the raw feature units
    source: list[str]  # "ensemble" | "knn" | "regression" | "prototype"
    confidence: np.ndarray  # (m,) in [0, 1]
    validation: dict


MEMBERS: tuple[str, ...] = ("knn", "regression", "prototype")
# Feature groups for validation, by column-name prefix (first match wins).
FEATURE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("rhythm", ("tempo", "pulse_clarity", "beat_regularity", "onset_rate")),
    ("energy", ("rms_", "zcr_", "loudness", "dynamic_range")),
    ("spectral", ("spectral_",)),
    ("harmony", ("chroma_", "tonnetz_", "key", "mode")),
    ("timbre", ("mfcc_",)),
)


@dataclass(frozen=True)
class RegressionConfig:
    """XGBoost member: text embedding (+ metadata) → the first PCA components of the audio vector."""

    n_components: int = 12  # PCA components of the standardised audio vector that are regressed
    n_estimators: int = 80
    max_depth: int = 3
    learning_rate: float = 0.1
    subsample: float = 0.8
    colsample_bytree: float = 0.5
    min_train: int = 12  # fewer real-audio tracks with text than this: no regression member


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mu = np.nanmean(x, axis=0)
    sd = np.nanstd(x, axis=0)
    sd = np.where(sd > 1e-9, sd, 1.0)
    return (x - mu) / sd, mu, sd


def _prototype_predict(
    genres_q: list[str | None], genres_base: list[str | None], zbase: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Genre prototype (mean standardised vector per genre) or the global mean → (pred, is_genre_match)."""
    groups: defaultdict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(genres_base):
        if g:
            groups[g.lower()].append(i)
    protos = {g: zbase[ix].mean(axis=0) for g, ix in groups.items()}
    global_mean = zbase.mean(axis=0)
    preds, matched = [], []
    for g in genres_q:
        key = (g or "").lower()
        if key in protos:
            preds.append(protos[key])
            matched.append(True)
        else:
            preds.append(global_mean)
            matched.append(False)
    return np.vstack(preds) if preds else np.zeros((0, zbase.shape[1])), np.array(matched, dtype=bool)


def _knn(query: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product kNN of ``query`` rows among ``base`` rows → (sims (q, k), idx (q, k)),
    through :func:`pipelines.heal.neighbours.nearest` (blocked, O(n) memory)."""
    k = min(k, base.shape[0])
    vectors = np.vstack([base, query]).astype(np.float32, copy=False)
    nb = nearest(vectors=vectors, base_rows=np.arange(len(base)), query_rows=np.arange(len(base), len(vectors)),
                 k=k, exact=True)
    return nb.sims, nb.rows


def _knn_predict(qvec: np.ndarray, bvec: np.ndarray, zbase: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims, idx = _knn(qvec, bvec, k)
    w = np.clip(sims, 0.0, None) + 1e-6
    pred = np.einsum("qk,qkf->qf", w, zbase[idx]) / w.sum(axis=1, keepdims=True)
    return pred, sims.mean(axis=1)


class _Regressor:
    """PCA of the standardised audio vectors + one multi-output XGBoost on [text | metadata]."""

    def __init__(self, *, x: np.ndarray, z: np.ndarray, config: RegressionConfig, seed: int) -> None:
        from sklearn.decomposition import PCA
        from xgboost import XGBRegressor

        n_comp = max(1, min(config.n_components, z.shape[0] - 1, z.shape[1]))
        self.pca = PCA(n_components=n_comp, random_state=seed).fit(z)
        target = self.pca.transform(z)
        self.model = XGBRegressor(
            n_estimators=config.n_estimators, max_depth=config.max_depth, learning_rate=config.learning_rate,
            subsample=config.subsample, colsample_bytree=config.colsample_bytree, tree_method="hist",
            n_jobs=1, random_state=seed, verbosity=0,
        ).fit(x, target)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(q, D) inputs → (q, F) standardised audio vectors."""
        comp = np.asarray(self.model.predict(x)).reshape(x.shape[0], -1)
        return self.pca.inverse_transform(comp)


def _inputs(text: np.ndarray, meta: np.ndarray | None) -> np.ndarray:
    text = np.asarray(text, dtype=np.float32)
    if meta is None or meta.shape[1] == 0:
        return text
    return np.hstack([text, np.asarray(meta, dtype=np.float32)])  # NaN = unknown (XGBoost's missing)


def _feature_groups(names: Sequence[str]) -> dict[str, np.ndarray]:
    groups: dict[str, list[int]] = defaultdict(list)
    for j, name in enumerate(names):
        group = next((g for g, prefixes in FEATURE_GROUPS if name.startswith(prefixes)), "other")
        groups[group].append(j)
    return {g: np.array(ix) for g, ix in groups.items()}


def _scores(pred: np.ndarray, truth: np.ndarray, groups: dict[str, np.ndarray]) -> dict:
    """MAE (standardised units) overall and per feature group, mean cosine, for (q, F) arrays."""
    err = np.abs(pred - truth)
    cos = np.sum(pred * truth, axis=1) / (np.linalg.norm(pred, axis=1) * np.linalg.norm(truth, axis=1) + 1e-9)
    return {
        "mae_std_units": round(float(err.mean()), 4),
        "cosine": round(float(cos.mean()), 4),
        "mae_by_group": {g: round(float(err[:, ix].mean()), 4) for g, ix in groups.items()},
    }


def _simplex_weights(preds: dict[str, np.ndarray], truth: np.ndarray, step: float = 0.05) -> dict[str, float]:
    """Convex member weights (grid on the simplex, ``step``) minimising squared error on ``truth``."""
    names = list(preds)
    best, best_err = None, np.inf
    ticks = np.round(np.arange(0.0, 1.0 + 1e-9, step), 6)
    for combo in itertools.product(ticks, repeat=len(names) - 1):
        last = 1.0 - sum(combo)
        if last < -1e-9:
            continue
        w = [*combo, max(last, 0.0)]
        pred = sum(wi * preds[n] for wi, n in zip(w, names))
        e = float(np.mean((pred - truth) ** 2))
        if e < best_err - 1e-12:
            best, best_err = w, e
    return {n: round(float(wi), 4) for n, wi in zip(names, best)}


def impute_audio_features(
    *, audio_ids: list[str], audio_matrix: np.ndarray, audio_text: np.ndarray, audio_has_text: np.ndarray,
    audio_genres: list[str | None], target_ids: list[str], target_text: np.ndarray,
    target_has_text: np.ndarray, target_genres: list[str | None], k: int = 10, seed: int = 0,
    audio_meta: np.ndarray | None = None, target_meta: np.ndarray | None = None,
    feature_names: Sequence[str] | None = None, regression: RegressionConfig = RegressionConfig(),
) -> AudioImputationResult:
    """Impute audio vectors for ``target_ids`` from tracks with real audio.

    audio_matrix: (a, F) real features; audio_text: (a, 384) text vectors (zero rows where no text);
    target_text: (m, 384); audio_meta / target_meta: optional (a, M) / (m, M) numeric metadata (NaN =
    unknown) that the regression member sees next to the text vector.

    Members: ``knn`` (similarity-weighted text neighbours with real audio), ``regression`` (XGBoost
    on [text | metadata] → PCA components of the standardised audio vector), ``prototype`` (genre
    mean, else global mean). Validation: a seeded 10 % of the real-audio tracks with text is held
    out; each member is fitted on the rest and scored (MAE in standardised units overall and per
    feature group, cosine). Convex member weights minimise held-out squared error; the ensemble's
    reported score is cross-fitted (weights chosen on one half of the held-out set, scored on the
    other, both ways) so it is not flattered by its own selection. Final members are refitted on
    every real-audio track. ``source`` is ``ensemble`` when more than one member carries weight,
    else that member; ``confidence`` = the source's held-out cosine (clipped to [0, 1]) times a
    per-track factor (mean neighbour similarity for text tracks; 1 / 0.5 for a genre / global
    prototype).
    """
    z, mu, sd = _standardise(audio_matrix)
    z = np.nan_to_num(z)
    names = list(feature_names) if feature_names is not None else [f"f{j}" for j in range(z.shape[1])]
    groups = _feature_groups(names)
    text_rows = np.where(audio_has_text)[0]
    rng = np.random.default_rng(seed)
    validation: dict = {"n_audio": int(len(audio_ids)), "n_audio_with_text": int(len(text_rows))}
    use_reg = len(text_rows) >= regression.min_train
    weights = {"knn": 0.5, "prototype": 0.5} | ({"regression": 0.0} if use_reg else {})
    member_cos = {m: 0.5 for m in MEMBERS} | {"ensemble": 0.5}
    if len(text_rows) >= 10:
        held = np.sort(rng.choice(text_rows, size=max(2, len(text_rows) // 10), replace=False))
        keep = np.setdiff1d(text_rows, held)
        rest = np.setdiff1d(np.arange(len(audio_ids)), held)
        truth = z[held]
        preds: dict[str, np.ndarray] = {}
        preds["knn"], _ = _knn_predict(audio_text[held], audio_text[keep], z[keep], min(k, len(keep)))
        started = time.perf_counter()
        if use_reg:
            meta_all = None if audio_meta is None else np.asarray(audio_meta, dtype=np.float64)
            reg = _Regressor(x=_inputs(audio_text[keep], None if meta_all is None else meta_all[keep]), z=z[keep],
                             config=regression, seed=seed)
            preds["regression"] = reg.predict(_inputs(audio_text[held], None if meta_all is None else meta_all[held]))
            validation["regression_fit_s"] = round(time.perf_counter() - started, 3)
        preds["prototype"], _ = _prototype_predict(
            [audio_genres[i] for i in held], [audio_genres[i] for i in rest], z[rest])
        validation["global_mean"] = _scores(np.broadcast_to(z[rest].mean(axis=0), truth.shape), truth, groups)
        for name, pred in preds.items():
            validation[name] = _scores(pred, truth, groups)
            member_cos[name] = validation[name]["cosine"]
        weights = _simplex_weights(preds, truth)
        half = len(held) // 2
        if half >= 1:  # cross-fitted ensemble score
            a, b = np.arange(half), np.arange(half, len(held))
            cross = np.zeros_like(truth)
            for fit, score in ((a, b), (b, a)):
                w = _simplex_weights({n: p[fit] for n, p in preds.items()}, truth[fit])
                cross[score] = sum(w[n] * preds[n][score] for n in preds)
            validation["ensemble"] = _scores(cross, truth, groups)
            member_cos["ensemble"] = validation["ensemble"]["cosine"]
        validation["n_held_out"] = int(len(held))
    else:
        validation["note"] = "fewer than 10 real-audio tracks with text: no validation, equal knn/prototype weights"
    validation["weights"] = weights
    active = [n for n, w in weights.items() if w > 0]

    m = len(target_ids)
    proto_pred, matched = _prototype_predict(target_genres, audio_genres, z)
    pred = proto_pred.copy()
    source = ["prototype"] * m
    conf = np.clip(member_cos["prototype"], 0.0, 1.0) * np.where(matched, 1.0, 0.5)
    has = np.where(target_has_text)[0] if m else np.zeros(0, dtype=np.int64)
    if len(text_rows) and len(has):
        members = {"prototype": proto_pred[has]}
        members["knn"], mean_sim = _knn_predict(
            target_text[has], audio_text[text_rows], z[text_rows], min(k, len(text_rows))
        )
        if "regression" in weights and weights["regression"] > 0:
            meta_all = None if audio_meta is None else np.asarray(audio_meta, dtype=np.float64)
            reg = _Regressor(x=_inputs(audio_text[text_rows], None if meta_all is None else meta_all[text_rows]),
                             z=z[text_rows], config=regression, seed=seed)
            tmeta = None if target_meta is None else np.asarray(target_meta, dtype=np.float64)[has]
            members["regression"] = reg.predict(_inputs(target_text[has], tmeta))
        total = sum(weights[n] for n in members if n in weights) or 1.0
        pred[has] = sum(weights.get(n, 0.0) * p for n, p in members.items()) / total
        label = "ensemble" if len(active) > 1 else (active[0] if active else "prototype")
        for i in has:
            source[i] = label
        conf[has] = np.clip(member_cos[label], 0.0, 1.0) * np.clip(mean_sim, 0.0, 1.0)
    raw = pred * sd + mu
    return AudioImputationResult(list(target_ids), raw.astype(np.float64), source, conf.astype(np.float64), validation)
