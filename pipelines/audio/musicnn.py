"""musicnn (Pons & Serra 2019, ISC) in torch: its log-mel input and the network, rebuilt from the
checkpoint weights that ``scripts/convert_musicnn.py`` wrote to ``data/models/musicnn``.

Layer names follow the TF1 checkpoint (``conv2d_<i>``, ``batch_normalization_<i>``, ``dense_<i>``).
"""

import functools  # noqa: I001 (pipelines.audio.features sets NUMBA_CACHE_DIR before librosa loads numba)
import json
from pathlib import Path

from pipelines import store
from pipelines.audio import features  # noqa: F401
from pipelines.errors import InvalidInputError

import librosa
import numpy as np
import torch
import torch.nn.functional as F

SR = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # 3 s: librosa.time_to_frames(3, sr=SR, n_fft=N_FFT, hop_length=HOP) + 1
MODELS = ("MSD_musicnn", "MTT_musicnn")
WEIGHTS_DIR = store.DATA_DIR / "models" / "musicnn"
BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization default
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_CHUNK = 1  # patches per forward pass
_INVERSE_COLUMNS = 2048

# (conv layer, batch norm after it, time padding before/after) of the front end, in concat order:
# two timbral blocks (7x38 and 7x67 filters, 'valid' in frequency) and three temporal blocks
# (128x1, 64x1, 32x1 filters, TF 'same' padding in time); each is conv → ReLU → BN → max over frequency.
_FRONT = (
    ("conv2d", "batch_normalization_1", (3, 3)),
    ("conv2d_1", "batch_normalization_2", (3, 3)),
    ("conv2d_2", "batch_normalization_3", (63, 64)),
    ("conv2d_3", "batch_normalization_4", (31, 32)),
    ("conv2d_4", "batch_normalization_5", (15, 16)),
)
# Mid end: three 1-D convs over time (7 frames, 64 filters), the 2nd and 3rd residual.
_MID = (
    ("conv2d_5", "batch_normalization_6"),
    ("conv2d_6", "batch_normalization_7"),
    ("conv2d_7", "batch_normalization_8"),
)


def resample(y: np.ndarray, sr: int) -> np.ndarray:
    """Mono float32 ``y`` at ``sr`` → 16 kHz (soxr, high quality)."""
    y = np.asarray(y, dtype=np.float32)
    return y if sr == SR else librosa.resample(y, orig_sr=sr, target_sr=SR, res_type="soxr_hq").astype(np.float32)


def log_mel(y: np.ndarray) -> np.ndarray:
    """musicnn's input of a 16 kHz mono signal: ``(frames, 96)`` float32 log10(10000·mel + 1).

    As musicnn computes it: librosa's power mel spectrogram (n_fft 512, hop 256, 96 Slaney mel bands,
    centred frames), stored as float16, then compressed in float32.
    """
    y = np.asarray(y, dtype=np.float32)
    power = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP, center=True, pad_mode="constant")) ** 2
    mel = (_mel_basis() @ power).T
    mel = np.minimum(mel, _FLOAT16_MAX).astype(np.float16).astype(np.float32)
    return np.log10(10000.0 * mel + 1.0).astype(np.float32)


@functools.cache
def _mel_basis() -> np.ndarray:
    return librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=N_MELS)


def mel_patches(y: np.ndarray) -> np.ndarray:
    """Consecutive non-overlapping 3 s patches ``(P, 187, 96)`` of a 16 kHz signal (a trailing part
    shorter than a patch is dropped, as musicnn does); a clip shorter than one patch is zero-padded
    to one."""
    y = np.asarray(y, dtype=np.float32)
    if y.size < PATCH_FRAMES * HOP:
        y = np.pad(y, (0, PATCH_FRAMES * HOP - y.size))
    mel = log_mel(y)
    n = mel.shape[0] // PATCH_FRAMES
    return np.ascontiguousarray(mel[: n * PATCH_FRAMES].reshape(n, PATCH_FRAMES, N_MELS))


def weights_path(model: str) -> Path:
    if model not in MODELS:
        raise InvalidInputError(f"unknown musicnn model {model!r}; known: {MODELS}", field="model")
    return WEIGHTS_DIR / f"{model}.npz"


@functools.cache
def model_card(model: str) -> dict:
    """The converter's JSON beside the weights (tags, source wheel sha256, variable shapes, npz sha256)."""
    return json.loads(weights_path(model).with_suffix(".json").read_text())


class Musicnn:
    """The musicnn network in inference mode: ``(P, 187, 96)`` log-mel patches → (logits, penultimate).

    Batch norms use the checkpoint's moving statistics. Each front-end block is computed as conv →
    max over frequency (a min for channels whose BN scale is negative) → +bias → ReLU → BN: equal to
    musicnn's conv+bias → ReLU → BN → max, since those per-channel maps are monotone. The two timbral
    convs (7 frames x 38 / 67 bands, 'valid' in frequency) run in the frequency domain of the mel
    axis (see ``_spectral_filters``): the same sums with ~2.5x fewer multiplications.
    """

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        t = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in weights.items()}
        self.in_scale, self.in_shift = _bn(t, "batch_normalization")
        self.timbral, self.temporal = [], []
        for conv, bn, pad in _FRONT:
            scale, shift = _bn(t, bn)
            sign = torch.where(scale < 0, -1.0, 1.0)
            # filters negated where the BN scale is negative: the max of the negated map is -min
            kernel = t[f"{conv}/kernel"] * sign  # (time, freq, 1, out)
            post = (sign[:, None], t[f"{conv}/bias"][:, None], scale[:, None], shift[:, None])
            if kernel.shape[1] > 1:
                self.timbral.append((*_spectral_filters(kernel), post))
            else:
                self.temporal.append((kernel.permute(3, 2, 0, 1).contiguous(), pad, post))
        self.mid = []
        for conv, bn in _MID:
            weight = t[f"{conv}/kernel"][:, :, 0, :].permute(2, 1, 0).contiguous()  # (out, in, 7)
            scale, shift = _bn(t, bn)
            self.mid.append((weight, t[f"{conv}/bias"], scale[:, None], shift[:, None]))
        self.pool_scale, self.pool_shift = _bn(t, "batch_normalization_9")
        self.dense = (t["dense/kernel"], t["dense/bias"])
        self.pen_scale, self.pen_shift = _bn(t, "batch_normalization_10")
        self.out = (t["dense_1/kernel"], t["dense_1/bias"])

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (P, 187, 96) float32 → (logits (P, n_tags), penultimate embedding (P, 200))."""
        # Patch by patch: the front end's intermediate maps then stay in cache (faster on CPU).
        outs = [self._forward(x[i : i + _CHUNK]) for i in range(0, x.shape[0], _CHUNK)]
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p, frames, _ = x.shape
        x = x * self.in_scale + self.in_shift  # (P, T, F)
        # timbral: time taps x (real, imag) of the mel-axis spectrum, (bins, 14, P*T)
        spec = torch.fft.rfft(F.pad(x, (0, 0, 3, 3)), dim=-1)
        taps = torch.cat([spec.real.unfold(1, 7, 1), spec.imag.unfold(1, 7, 1)], dim=3)  # (P, T, bins, 14)
        taps = taps.permute(2, 3, 0, 1).reshape(spec.shape[-1], 14, p * frames)
        blocks = []
        for filters, inverse, (sign, bias, scale, shift) in self.timbral:
            y = torch.bmm(filters, taps).view(inverse.shape[1], -1)  # (bins·[real, imag], C·P·T)
            z = torch.empty(y.shape[1])  # max over the valid bands, in cache-sized column blocks
            for j in range(0, y.shape[1], _INVERSE_COLUMNS):
                torch.amax(inverse @ y[:, j : j + _INVERSE_COLUMNS], dim=0, out=z[j : j + _INVERSE_COLUMNS])
            pooled = z.view(-1, p, frames).transpose(0, 1) * sign
            blocks.append(torch.relu(pooled + bias) * scale + shift)
        x = x.unsqueeze(1)  # (P, 1, T, F)
        for weight, pad, (sign, bias, scale, shift) in self.temporal:
            pooled = F.conv2d(F.pad(x, (0, 0, *pad)), weight).amax(dim=3) * sign  # (P, C, T)
            blocks.append(torch.relu(pooled + bias) * scale + shift)
        h = torch.cat(blocks, dim=1)  # (P, 561, T)
        feats = [h]
        for i, (weight, bias, scale, shift) in enumerate(self.mid):
            z = torch.relu(F.conv1d(F.pad(h, (3, 3)), weight, bias)) * scale + shift
            h = z if i == 0 else z + h
            feats.append(h)
        mid = torch.cat(feats, dim=1)  # (P, 753, T)
        pooled = torch.stack([mid.amax(dim=2), mid.mean(dim=2)], dim=2).flatten(1)  # max/mean interleaved
        pooled = pooled * self.pool_scale + self.pool_shift
        pen = torch.relu(pooled @ self.dense[0] + self.dense[1]) * self.pen_scale + self.pen_shift
        return pen @ self.out[0] + self.out[1], pen


def _spectral_filters(kernel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A (7, kw, 1, C) conv 'valid' along the 96 mel bands as (per-bin filters, inverse DFT).

    Band correlation = inverse real DFT (n=96, no wrap-around for the 96-kw+1 valid outputs) of
    spectrum(x) · conj(spectrum(w)). ``filters`` (49, 2C, 14) maps each bin's 7 time taps of the
    input spectrum (real, imaginary) to the real then imaginary parts of the C products;
    ``inverse`` (96-kw+1, 98) sums them back to the valid bands (rows: bin-major, real/imaginary).
    Built in float64.
    """
    n, kw = N_MELS, kernel.shape[1]
    w = torch.fft.rfft(kernel[:, :, 0, :].permute(2, 0, 1).double(), n=n, dim=-1).conj()  # (C, 7, bins)
    filters = torch.cat([torch.cat([w.real, -w.imag], 1), torch.cat([w.imag, w.real], 1)], 0)
    bins = n // 2 + 1
    f64 = torch.float64
    phase = 2 * np.pi * torch.outer(torch.arange(n - kw + 1, dtype=f64), torch.arange(bins, dtype=f64)) / n
    weight = torch.full((bins,), 2.0, dtype=f64)
    weight[0] = weight[-1] = 1.0  # DC and Nyquist appear once in a real signal (n even)
    inverse = torch.stack([weight * torch.cos(phase) / n, -weight * torch.sin(phase) / n], dim=2)
    return filters.permute(2, 0, 1).float().contiguous(), inverse.reshape(n - kw + 1, 2 * bins).float()


def _bn(t: dict[str, torch.Tensor], name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of an inference-mode batch norm: y = x·scale + shift."""
    scale = t[f"{name}/gamma"] / torch.sqrt(t[f"{name}/moving_variance"] + BN_EPS)
    return scale, t[f"{name}/beta"] - t[f"{name}/moving_mean"] * scale


@functools.cache
def load_model(model: str) -> Musicnn:
    """The network of ``model`` (one of ``MODELS``), loaded once per process."""
    with np.load(weights_path(model)) as npz:
        return Musicnn({k: npz[k] for k in npz.files})
