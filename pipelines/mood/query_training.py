"""Training the query mood model on open data, selected on EmoBank dev.

Rows: EmoBank **train** sentences (V, A on 1–5 → ``(x − 3) / 2``) and every Glasgow-norm word as a
one-word text (1–9 → ``(x − 5) / 4``). Sentence ratings are compressed around neutral while word
norms use the whole scale, so each source's targets are z-scored per axis; predictions are mapped
back with the Glasgow mean/std (queries are short, word-like texts), dev metrics with EmoBank's.

Features: the 384-d MiniLM embedding, the five lexicon features and the cos⁴-weighted mean Glasgow
valence/arousal of the ``query.K_ANCHORS`` nearest Glasgow words (the text's own entry excluded, so a
training word never sees its target), the side features standardised. The configuration (ridge or a
one-hidden-layer MLP) with the best dev valence CCC + arousal CCC is refitted as an ``N_ENSEMBLE``
ensemble (MLP: different initialisations; ridge: bootstrap resamples).
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.linear_model import Ridge
from sklearn.neural_network import MLPRegressor
from tqdm.auto import tqdm

from pipelines import store
from pipelines.embed.sentence import embed_texts
from pipelines.mood.lexicon import EMOBANK_FILE, MoodLexicon, load_glasgow, rescale_emobank, resolve_open_file
from pipelines.mood.metrics import axis_metrics
from pipelines.mood.query import QueryMoodModel

N_ENSEMBLE = 3
RIDGE_ALPHAS: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)


@dataclass
class TrainingData:
    """Texts, targets on [-1, 1] (n, 2) and source ("emobank" / "glasgow") of each row."""

    texts: list[str]
    targets: np.ndarray
    sources: np.ndarray
    embeddings: np.ndarray | None = None


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


def _source_stats(data: TrainingData) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        src: (data.targets[data.sources == src].mean(0), data.targets[data.sources == src].std(0))
        for src in np.unique(data.sources)
    }


def _make_regressor(kind: str, alpha: float, seed: int) -> Any:
    if kind == "ridge":
        return Ridge(alpha=alpha)
    return MLPRegressor(
        hidden_layer_sizes=(128,), alpha=alpha, early_stopping=True, max_iter=200, random_state=seed
    )


def _z_targets(data: TrainingData, stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    z = np.empty_like(data.targets)
    for src, (mean, std) in stats.items():
        mask = data.sources == src
        z[mask] = (data.targets[mask] - mean) / std
    return z


def train_query_mood_model(
    *,
    data_dir: Path = store.DATA_DIR,
    progress: bool = False,
    train: TrainingData | None = None,
    dev: TrainingData | None = None,
    candidates: Sequence[tuple[str, float]] | None = None,
    n_ensemble: int = N_ENSEMBLE,
    seed: int = 0,
    limit: int | None = None,
) -> tuple[QueryMoodModel, dict[str, Any]]:
    """Train on EmoBank train + Glasgow words, select on EmoBank dev; return (model, metrics).

    ``limit``: train on a deterministic random subset of that many rows (quick runs such as the
    pipeline's integration test; the shipped model uses every row).

    ``train``/``dev`` may be passed (with ``embeddings`` set) to reuse cached embeddings or a
    subset (tests); by default everything is loaded from ``data_dir`` and embedded.
    ``candidates`` are (kind, alpha) pairs, kind ∈ {"ridge", "mlp"}.
    Metrics: dev r/CCC (EmoBank scale) for the chosen model without (``dev``) and with
    (``dev_with_context``) the context-cue shifts, every candidate, a raw lexicon baseline and a
    linearly calibrated lexicon baseline; selection and timing info.
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
            embeddings=None if train.embeddings is None else train.embeddings[keep],
        )
    if dev is None:
        dev = load_emobank(data_dir=data_dir, split="dev")
    for data in (train, dev):
        if data.embeddings is None:
            data.embeddings = embed_texts(data.texts, progress=progress)

    stats = _source_stats(train)
    anchors = load_glasgow_words(data_dir=data_dir)
    in_train = {t: i for i, t in enumerate(train.texts) if train.sources[i] == "glasgow"}
    anchor_emb = (
        train.embeddings[[in_train[w] for w in anchors.texts]]
        if all(w in in_train for w in anchors.texts)
        else embed_texts(anchors.texts, progress=progress)
    )
    shell = QueryMoodModel(
        members=[], lexicon=lexicon, lex_mean=np.zeros(7), lex_std=np.ones(7),
        anchor_words=anchors.texts, anchor_emb=np.ascontiguousarray(anchor_emb, dtype=np.float32),
        anchor_targets=anchors.targets, source_stats=stats, resid_std_z=np.ones(2),
    )
    side_train = shell.raw_side_features(train.texts, train.embeddings)
    shell.lex_mean, shell.lex_std = side_train.mean(0), side_train.std(0) + 1e-6
    lex_train = side_train[:, :5]
    x_train = shell.features(train.texts, embeddings=train.embeddings)
    x_dev = shell.features(dev.texts, embeddings=dev.embeddings)
    z_train = _z_targets(train, stats)
    z_dev = _z_targets(dev, stats)

    # --- model selection on EmoBank dev (single fit per candidate) ---------------------------
    if candidates is None:
        candidates = [("ridge", a) for a in RIDGE_ALPHAS] + [("mlp", 1e-2), ("mlp", 1e-1)]
    results: dict[str, dict[str, float]] = {}
    fitted: dict[str, Any] = {}
    for kind, alpha in tqdm(candidates, desc="query mood candidates", disable=not progress):
        name = f"{kind}_alpha{alpha:g}"
        reg = _make_regressor(kind, alpha, seed).fit(x_train, z_train)
        pred = shell.to_scale(reg.predict(x_dev), source="emobank")
        results[name] = axis_metrics(pred=pred, true=dev.targets)
        fitted[name] = reg

    def score(m: dict[str, float]) -> float:
        return m["valence_ccc"] + m["arousal_ccc"]

    best_name = max(results, key=lambda k: score(results[k]))
    best_kind, best_alpha = next((k, a) for k, a in candidates if f"{k}_alpha{a:g}" == best_name)

    # --- ensemble of the chosen configuration ------------------------------------------------
    # MLPs: different initialisations on all rows (bootstrap resamples cost them dev accuracy);
    # ridge is deterministic, so its members are fit on bootstrap resamples.
    rng = np.random.default_rng(seed)
    members = [fitted[best_name]] if best_kind == "mlp" else []
    for i in tqdm(range(len(members), n_ensemble), desc="query mood ensemble", disable=not progress):
        if best_kind == "mlp":
            members.append(_make_regressor(best_kind, best_alpha, seed + i).fit(x_train, z_train))
        else:
            idx = rng.integers(0, len(x_train), len(x_train))
            members.append(_make_regressor(best_kind, best_alpha, seed + i).fit(x_train[idx], z_train[idx]))
    shell.members = members
    mu_dev_z, _ = shell.predict_z(x_dev)
    shell.resid_std_z = (mu_dev_z - z_dev).std(0)
    dev_pred = shell.to_scale(mu_dev_z, source="emobank")

    # --- lexicon baselines ---------------------------------------------------------------------
    lex_dev = lexicon.features(dev.texts)
    lex_raw = axis_metrics(pred=lex_dev[:, :2].astype(np.float64), true=dev.targets)
    eb_mask = train.sources == "emobank"
    lex_cal = Ridge(alpha=1.0).fit(lex_train[eb_mask], train.targets[eb_mask])
    lex_calibrated = axis_metrics(pred=lex_cal.predict(lex_dev), true=dev.targets)

    # The same dev predictions with the context-cue shifts added (moved onto EmoBank's scale via
    # the ratio of the two sources' stds), so the cues' effect on held-out text is on record.
    ratio = stats["emobank"][1] / stats[shell.output_source][1] if shell.output_source in stats else 1.0
    dev_pred_ctx = dev_pred + shell.context_shifts(dev.texts) * ratio
    metrics: dict[str, Any] = {
        "dev": axis_metrics(pred=dev_pred, true=dev.targets),
        "dev_with_context": axis_metrics(pred=dev_pred_ctx, true=dev.targets),
        "dev_context_rows": int(np.any(shell.context_shifts(dev.texts) != 0, axis=1).sum()),
        "dev_lexicon_raw": lex_raw,
        "dev_lexicon_calibrated": lex_calibrated,
        "candidates": results,
        "chosen": {"kind": best_kind, "alpha": best_alpha, "n_ensemble": n_ensemble},
        "resid_std_z": shell.resid_std_z.tolist(),
        "n_train": len(train.texts),
        "n_train_by_source": {s: int((train.sources == s).sum()) for s in np.unique(train.sources)},
        "n_dev": len(dev.texts),
        "train_seconds": time.perf_counter() - t0,
    }
    shell.info = {k: metrics[k] for k in ("dev", "chosen", "n_train", "n_dev")}
    return shell, metrics
