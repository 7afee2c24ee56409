"""Query mood: free text → (valence, arousal, confidence), valence/arousal in [-1, 1].

Features: the 384-d MiniLM sentence embedding (``pipelines.embed.sentence``) concatenated with the
five lexicon features of :class:`pipelines.mood.lexicon.MoodLexicon` (valence, arousal, coverage,
has-valence, has-arousal) and two embedding-neighbour features: the similarity-weighted
(cos^4) mean Glasgow valence/arousal of the ``K_ANCHORS`` Glasgow words nearest to the text in
embedding space (a lexicon expansion: "workout" is near "exercise", "gym", "jogging", which the
norms rate, though "workout" itself is not rated). For a Glasgow word used as a training row its
own entry is excluded (leave-one-out), so the feature never leaks the target. The extra
features are standardised.

Training data (all open data):

- EmoBank **train** split, V and A on 1–5 → ``(x - 3) / 2``;
- every Glasgow-norm word as a one-word text, valence/arousal on 1–9 → ``(x - 5) / 4``.

Target scaling (the choice documented here): EmoBank sentence ratings are compressed around the
neutral point (std ≈ 0.17 on [-1, 1]) while word norms use the whole scale (std ≈ 0.4). Fitting the
raw values jointly would teach the model that "sentences are neutral" and squash every query.
So each source's targets are z-scored per axis (own mean and std), the regressor predicts z-scores,
and predictions are mapped back to [-1, 1] with the **Glasgow** mean and std: music queries are
short, word-like texts, so a query as strong as the word "sad" gets the word's normed value.
Dev metrics on EmoBank are reported on EmoBank's own scale (z mapped back with EmoBank's
mean/std), which is what Lin's CCC needs to be meaningful.

Model: chosen on EmoBank **dev** by valence CCC + arousal CCC among ridge (alpha 1–30) and a
one-hidden-layer MLP (128 units, early stopping); on the full data the MLP wins (dev r 0.69 / 0.49
vs ridge 0.63 / 0.42 for a single fit). The shipped model is an ensemble of ``N_ENSEMBLE``
copies of the chosen configuration (MLP: different initialisations on all rows; ridge: bootstrap
resamples); the ensemble mean is the prediction.

Confidence: per axis, the predictive standard deviation is
``sigma = sqrt(sigma_resid**2 + sigma_ens(x)**2)`` where ``sigma_resid`` is the held-out residual
std (EmoBank dev, in z units) and ``sigma_ens(x)`` the spread of the bootstrap ensemble at ``x``
(large far from the training data, where the members disagree).

Context cues: after the model, ``predict`` adds the curated (Δvalence, Δarousal) shifts of
``lexicon.CONTEXT_SHIFTS`` for listening-context and music words in the query ("upbeat morning
workout" → +arousal), with negation cancelling and intensifiers scaling a cue. Training metrics
report EmoBank dev with (``dev_with_context``) and without (``dev``) the shifts. The axis confidence is ``2 * Phi(|mu| / sigma) - 1``: the
probability that the predicted side of neutral is right, minus chance, in [0, 1]. The reported
confidence is the mean over the two axes, so a neutral-sounding or unfamiliar query ("songs by
X") gets a low mood confidence and "sad piano" a high one.
"""

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import polars as pl
from scipy.special import ndtr
from sklearn.linear_model import Ridge
from sklearn.neural_network import MLPRegressor
from tqdm.auto import tqdm

from pipelines import store
from pipelines.embed.sentence import EMBEDDING_DIM, embed_texts
from pipelines.mood.metrics import axis_metrics
from pipelines.mood.lexicon import (
    EMOBANK_FILE,
    MoodLexicon,
    context_shift,
    load_glasgow,
    rescale_emobank,
    resolve_open_file,
)

N_ENSEMBLE = 3
K_ANCHORS = 5
RIDGE_ALPHAS: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
MODEL_VERSION = 1


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


@dataclass
class QueryMoodModel:
    """Bootstrap ensemble of regressors over [embedding, lexicon features] → z-scored (v, a)."""

    members: list[Any]
    lexicon: MoodLexicon
    lex_mean: np.ndarray  # (7,)
    lex_std: np.ndarray  # (7,)
    anchor_words: list[str]  # Glasgow words, (m,)
    anchor_emb: np.ndarray  # (m, 384) float32
    anchor_targets: np.ndarray  # (m, 2) Glasgow valence/arousal on [-1, 1]
    source_stats: dict[str, tuple[np.ndarray, np.ndarray]]  # source -> (mean (2,), std (2,))
    resid_std_z: np.ndarray  # (2,) held-out residual std in z units
    output_source: str = "glasgow"
    info: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def _anchor_index(self) -> dict[str, int]:
        """Anchor word → row (built once per loaded model, not per query)."""
        return {w: i for i, w in enumerate(self.anchor_words)}

    def anchor_features(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        """(n, 2) cos^4-weighted mean Glasgow (valence, arousal) of the nearest anchor words,
        excluding an anchor identical to the text (leave-one-out for training words)."""
        sims = embeddings @ self.anchor_emb.T  # (n, m)
        index = self._anchor_index
        for row, text in enumerate(texts):
            j = index.get(text)
            if j is not None:
                sims[row, j] = -np.inf
        top = np.argpartition(-sims, K_ANCHORS, axis=1)[:, :K_ANCHORS]
        w = np.maximum(np.take_along_axis(sims, top, axis=1), 0.0) ** 4 + 1e-12
        return (w[:, :, None] * self.anchor_targets[top]).sum(1) / w.sum(1, keepdims=True)

    def raw_side_features(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        """(n, 7) unstandardised lexicon (5) + anchor (2) features."""
        return np.hstack([self.lexicon.features(texts), self.anchor_features(texts, embeddings)])

    def features(self, texts: Sequence[str], *, embeddings: np.ndarray | None = None) -> np.ndarray:
        """float32 (n, 384 + 7) model inputs for ``texts``."""
        if embeddings is None:
            embeddings = embed_texts(list(texts))
        if embeddings.shape != (len(texts), EMBEDDING_DIM):
            raise ValueError(f"embeddings shape {embeddings.shape} != ({len(texts)}, {EMBEDDING_DIM})")
        side = (self.raw_side_features(texts, embeddings) - self.lex_mean) / self.lex_std
        return np.hstack([embeddings, side]).astype(np.float32)

    def predict_z(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble mean and std of z-scored predictions, each (n, 2), for features ``x``."""
        preds = np.stack([_member_predict(m, x) for m in self.members])  # (k, n, 2)
        return preds.mean(0), preds.std(0)

    def to_scale(self, z: np.ndarray, *, source: str) -> np.ndarray:
        mean, std = self.source_stats[source]
        return z * std + mean

    def context_shifts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 2) (Δvalence, Δarousal) of each text's context cues (``lexicon.context_shift``)."""
        shifts = [context_shift(t) for t in texts]
        return np.array([[c.valence, c.arousal] for c in shifts], dtype=np.float64).reshape(len(texts), 2)

    def predict(
        self, texts: Sequence[str], *, embeddings: np.ndarray | None = None, context: bool = True
    ) -> np.ndarray:
        """(n, 3) float64: valence, arousal in [-1, 1], confidence in [0, 1].

        ``context``: add the curated context-cue shifts (``lexicon.CONTEXT_SHIFTS``: "workout",
        "sleep", "upbeat" …) to the model's estimate before clipping; confidence is computed from
        the shifted estimate (a cue is evidence about the side of neutral).

        ``embeddings`` (n, 384) may be passed when the caller already has them."""
        if len(texts) == 0:
            return np.zeros((0, 3))
        mu_z, ens_std_z = self.predict_z(self.features(texts, embeddings=embeddings))
        va = self.to_scale(mu_z, source=self.output_source)
        if context:
            va = va + self.context_shifts(texts)
        va = np.clip(va, -1.0, 1.0)
        _, out_std = self.source_stats[self.output_source]
        sigma = np.sqrt(self.resid_std_z**2 + ens_std_z**2) * out_std  # (n, 2) in output units
        conf_axes = 2.0 * ndtr(np.abs(va) / sigma) - 1.0
        return np.column_stack([va, conf_axes.mean(1)])

    def save(self, path: Path) -> Path:
        """Write the model with joblib, atomically."""
        path = Path(path)
        with store.atomic_path(path, ".joblib") as tmp:
            joblib.dump({"version": MODEL_VERSION, "model": self}, tmp)
        return path

    @classmethod
    def load(cls, path: Path) -> "QueryMoodModel":
        obj = joblib.load(Path(path))
        if obj.get("version") != MODEL_VERSION:
            raise ValueError(f"query mood model version {obj.get('version')} != {MODEL_VERSION}")
        return obj["model"]


_ACTIVATIONS = {
    "relu": lambda h: np.maximum(h, 0.0),
    "tanh": np.tanh,
    "logistic": lambda h: 1.0 / (1.0 + np.exp(-h)),
    "identity": lambda h: h,
}


def _member_predict(model: Any, x: np.ndarray) -> np.ndarray:
    """``model.predict(x)`` for a fitted Ridge / MLPRegressor, as plain numpy matrix products.

    One query is served per request, and sklearn's input validation costs ~0.4 ms per call, more
    than the arithmetic; this computes the same numbers (float64, tested equal) without it. Other
    estimators go through their own ``predict``.
    """
    if isinstance(model, Ridge):
        return x @ model.coef_.T + model.intercept_
    if isinstance(model, MLPRegressor) and model.out_activation_ == "identity" and model.activation in _ACTIVATIONS:
        h = np.asarray(x, dtype=np.float64)
        act = _ACTIVATIONS[model.activation]
        last = len(model.coefs_) - 1
        for i, (w, b) in enumerate(zip(model.coefs_, model.intercepts_)):
            h = h @ w + b
            if i < last:
                h = act(h)
        return h
    return model.predict(x)


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
    Metrics: dev r/CCC (EmoBank scale) for the chosen model, every candidate, a raw lexicon
    baseline and a linearly calibrated lexicon baseline; selection and timing info.
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
    # MLPs: different initialisations on all rows (bootstrap resampling cost ~0.05 dev r);
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
