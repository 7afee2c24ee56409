"""The audio retrieval space: what "sounds like" means between two tracks.

Two blocks, each standardised, PCA-reduced and L2-normalised, then weighted and concatenated:
the backbone's embedding of the recording (``BACKBONE_EMBEDDINGS``, when the crawl has any) and the
librosa feature vector. A block a track lacks is zero, so it contributes nothing: a track with an
imputed librosa vector and no recording matches only through its (weighted) librosa block, and
with lower similarity than a recording would. Inner product = Σ_block weight² × cosine(block).
Fitted on tracks with *extracted* audio only (imputed vectors are projected, never fitted on).
"""

from dataclasses import dataclass, field

import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

TARGET_DIMS = 64
BACKBONE_EMBEDDINGS: tuple[str, ...] = ("msd_embedding", "mtt_embedding")
# Share of the inner product each block carries when both are present (weights² sum to 1).
BLOCK_SHARES: dict[str, float] = {"backbone": 0.8, "librosa": 0.2}


@dataclass
class Block:
    scaler: StandardScaler
    pca: PCA | None

    @property
    def dims(self) -> int:
        return int(self.pca.n_components_) if self.pca is not None else int(self.scaler.n_features_in_)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(n, F) → (n, dims) rows L2-normalised; NaN rows (block absent) → zero rows."""
        x = np.asarray(x, dtype=np.float64)
        absent = ~np.isfinite(x).all(axis=1)
        z = self.scaler.transform(np.nan_to_num(x))
        if self.pca is not None:
            z = self.pca.transform(z)
        norms = np.linalg.norm(z, axis=1, keepdims=True)
        z = np.where(norms > 0, z / np.maximum(norms, 1e-12), 0.0)
        z[absent] = 0.0
        return z

    @property
    def explained_variance(self) -> float:
        return float(self.pca.explained_variance_ratio_.sum()) if self.pca is not None else 1.0


def fit_block(x: np.ndarray, *, target_dims: int = TARGET_DIMS, seed: int = 0) -> Block:
    """Fit on (n, F) rows (finite rows only); PCA to min(target_dims, n-1, F) when that reduces anything."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x).all(axis=1)]
    scaler = StandardScaler().fit(x)
    dims = min(target_dims, x.shape[0] - 1, x.shape[1])
    pca = None
    if 1 <= dims < x.shape[1]:
        pca = PCA(n_components=dims, random_state=seed).fit(scaler.transform(x))
    return Block(scaler=scaler, pca=pca)


@dataclass
class AudioSpace:
    blocks: dict[str, Block]
    shares: dict[str, float] = field(default_factory=dict)

    @property
    def dims(self) -> int:
        return sum(b.dims for b in self.blocks.values())

    def weight(self, name: str) -> float:
        total = sum(self.shares.get(n, 1.0) for n in self.blocks)
        return float(np.sqrt(self.shares.get(name, 1.0) / total))

    def transform(self, librosa: np.ndarray, backbone: np.ndarray | None = None) -> np.ndarray:
        """(n, F) librosa features and (n, E) backbone embeddings (NaN rows where absent) → (n, dims) float32."""
        parts = []
        for name, block in self.blocks.items():
            x = librosa if name == "librosa" else backbone
            if x is None:
                x = np.full((len(librosa), int(block.scaler.n_features_in_)), np.nan)
            parts.append(self.weight(name) * block.transform(x))
        return np.ascontiguousarray(np.hstack(parts), dtype=np.float32)

    @property
    def explained_variance(self) -> dict[str, float]:
        return {n: round(b.explained_variance, 4) for n, b in self.blocks.items()}


def fit_audio_space(
    *, features: np.ndarray, embeddings: np.ndarray | None = None, target_dims: int = TARGET_DIMS,
    shares: dict[str, float] | None = None, seed: int = 0,
) -> AudioSpace:
    """Fit on extracted audio: (n, F) librosa features and optionally (n, E) backbone embeddings
    (rows NaN where a recording has none). Without two finite embedding rows the space is librosa only."""
    blocks: dict[str, Block] = {}
    emb = None if embeddings is None else np.asarray(embeddings, dtype=np.float64)
    if emb is not None and emb.ndim == 2 and emb.shape[1] > 0 and np.isfinite(emb).all(axis=1).sum() >= 2:
        blocks["backbone"] = fit_block(emb, target_dims=target_dims, seed=seed)
    blocks["librosa"] = fit_block(features, target_dims=target_dims, seed=seed)
    return AudioSpace(blocks=blocks, shares=dict(BLOCK_SHARES if shares is None else shares))


def stack_embeddings(lists: list[list[list[float] | None]]) -> np.ndarray:
    """Per track, the concatenation of several embedding lists (None → NaN row) → (n, ΣE) float64."""
    widths = [max((len(v) for v in col if v is not None), default=0) for col in lists]
    n = len(lists[0]) if lists else 0
    out = np.full((n, sum(widths)), np.nan)
    for i in range(n):
        vals = [col[i] for col in lists]
        if all(v is not None and len(v) == w for v, w in zip(vals, widths)):
            out[i] = np.concatenate([np.asarray(v, dtype=np.float64) for v in vals])
    return out
