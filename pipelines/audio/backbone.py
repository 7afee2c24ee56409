"""The pretrained audio backbone: musicnn's MSD and MagnaTagATune taggers (``pipelines.audio.musicnn``).

``backbone_outputs`` turns one mono clip into 50 MSD and 50 MTT tag probabilities and the two
penultimate-layer embeddings, each averaged over the clip's 3 s patches.
"""

import numpy as np
import torch

from pipelines.audio import musicnn
from pipelines.errors import InvalidInputError

MSD_MODEL, MTT_MODEL = "MSD_musicnn", "MTT_musicnn"
MSD_TAGS: tuple[str, ...] = tuple(musicnn.model_card(MSD_MODEL)["tags"])
MTT_TAGS: tuple[str, ...] = tuple(musicnn.model_card(MTT_MODEL)["tags"])
EMBED_DIM = 200  # musicnn's penultimate dense layer
BACKBONE_COLUMNS: tuple[str, ...] = ("msd_tags", "mtt_tags", "msd_embedding", "mtt_embedding")
# Changes whenever the weights (their sha256) or the preprocessing (the trailing tag) change.
_PREPROCESSING = "mel16k-f16-soxrhq-1"
BACKBONE_VERSION = "musicnn-{}-{}-{}".format(
    musicnn.model_card(MSD_MODEL)["npz_sha256"][:10], musicnn.model_card(MTT_MODEL)["npz_sha256"][:10], _PREPROCESSING
)
SR = musicnn.SR


def to_backbone_rate(y: np.ndarray, sr: int) -> np.ndarray:
    """Mono float32 ``y`` at ``sr`` → 16 kHz (soxr, high quality), as musicnn's input expects."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise InvalidInputError(f"expected a non-empty mono signal, got shape {y.shape}", field="y")
    if not np.all(np.isfinite(y)):
        raise InvalidInputError("signal contains NaN or inf", field="y")
    return musicnn.resample(y, sr)


def _forward(patches: np.ndarray, model: str) -> tuple[np.ndarray, np.ndarray]:
    net = musicnn.load_model(model)
    with torch.inference_mode():
        logits, pen = net(torch.from_numpy(patches))
        return torch.sigmoid(logits).numpy(), pen.numpy()


def patch_outputs(y: np.ndarray, sr: int, model: str = MSD_MODEL) -> tuple[np.ndarray, np.ndarray]:
    """Per 3 s patch of mono ``y``: (taggram (P, 50) sigmoid tag probabilities, embeddings (P, EMBED_DIM))."""
    return _forward(musicnn.mel_patches(to_backbone_rate(y, sr)), model)


def backbone_outputs(y: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    """Mono ``y`` at ``sr`` → ``{BACKBONE_COLUMNS: float32 array}``: tag probabilities (50,) of each
    tagger and their penultimate embeddings (EMBED_DIM,), averaged over the clip's 3 s patches
    (a clip shorter than 3 s is zero-padded to one patch)."""
    patches = musicnn.mel_patches(to_backbone_rate(y, sr))
    out: dict[str, np.ndarray] = {}
    for prefix, model in (("msd", MSD_MODEL), ("mtt", MTT_MODEL)):
        tags, emb = _forward(patches, model)
        out[f"{prefix}_tags"] = tags.mean(axis=0).astype(np.float32)
        out[f"{prefix}_embedding"] = emb.mean(axis=0).astype(np.float32)
    return {c: out[c] for c in BACKBONE_COLUMNS}


def warmup() -> None:
    """Load both taggers and run them once (one-off allocations and kernel selection happen now)."""
    rng = np.random.default_rng(0)
    backbone_outputs((0.1 * rng.standard_normal(3 * SR)).astype(np.float32), SR)


def set_threads(n: int) -> None:
    """Intra-op threads of the backbone's torch ops in this process (pool workers use 1)."""
    torch.set_num_threads(n)
