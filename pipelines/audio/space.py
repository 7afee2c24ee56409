"""The audio retrieval space: standardise the librosa vector, PCA to ~64-d, L2-normalise.

Fitted on tracks with *extracted* audio only (imputed vectors are projected, never fitted on).
"""

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

TARGET_DIMS = 64


@dataclass
class AudioSpace:
    scaler: StandardScaler
    pca: PCA | None

    @property
    def dims(self) -> int:
        return int(self.pca.n_components_) if self.pca is not None else int(self.scaler.n_features_in_)

    def transform(self, features: np.ndarray) -> np.ndarray:
        """(n, F) raw features → (n, dims) float32, rows L2-normalised (zero rows stay zero)."""
        z = self.scaler.transform(np.nan_to_num(np.asarray(features, dtype=np.float64)))
        if self.pca is not None:
            z = self.pca.transform(z)
        norms = np.linalg.norm(z, axis=1, keepdims=True)
        return np.ascontiguousarray(np.where(norms > 0, z / np.maximum(norms, 1e-12), 0.0), dtype=np.float32)

    @property
    def explained_variance(self) -> float:
        return float(self.pca.explained_variance_ratio_.sum()) if self.pca is not None else 1.0


def fit_audio_space(*, features: np.ndarray, target_dims: int = TARGET_DIMS, seed: int = 0) -> AudioSpace:
    """Fit on (n, F) extracted features; PCA to min(target_dims, n-1, F) when that reduces anything."""
    x = np.nan_to_num(np.asarray(features, dtype=np.float64))
    scaler = StandardScaler().fit(x)
    dims = min(target_dims, x.shape[0] - 1, x.shape[1])
    pca = None
    if 1 <= dims < x.shape[1]:
        pca = PCA(n_components=dims, random_state=seed).fit(scaler.transform(x))
    return AudioSpace(scaler=scaler, pca=pca)
