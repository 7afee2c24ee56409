"""Per-track moods: the audio and text evidences combined, and a hand-weighted audio baseline.

Every prediction is (n, 3) [valence, arousal, confidence], valence/arousal in [-1, 1], confidence
in [0, 1]; a NaN row means the evidence is absent for that track.
"""

from collections.abc import Sequence

import numpy as np
import polars as pl

from pipelines.errors import InvalidInputError
from pipelines.schema import AROUSAL, MOOD_CONFIDENCE, MOOD_SOURCE, TRACK_ID, VALENCE


def _norm(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = np.nanmin(x), np.nanmax(x)
    return np.zeros_like(x) if not hi > lo else (x - lo) / (hi - lo)


def plan_baseline_mood(features: pl.DataFrame) -> np.ndarray:
    """A hand-weighted formula over audio features → (n, 2) valence, arousal in [-1, 1]. Baseline only.

    arousal = 0.4 tempo + 0.3 energy + 0.2 brightness + 0.1 onset strength; valence = 0.4 brightness
    + 0.3 (1 − chroma movement) + 0.2 energy + 0.1 spectral stability, each input in [0, 1]: tempo
    60–200 BPM, rms 0–0.5, centroid 500–5000 Hz, onset strength = ``pulse_clarity``, chroma movement
    = ``chroma_std`` min–max normalised over the given rows, stability = flux below the rows' median.
    """
    col = lambda c: features[c].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    bpm = _norm(col("tempo"), 60, 200)
    energy = _norm(col("rms_mean"), 0, 0.5)
    bright = _norm(col("spectral_centroid_mean"), 500, 5000)
    onset = np.clip(col("pulse_clarity"), 0, 1)
    chroma_std = _minmax(col("chroma_std"))
    flux = col("spectral_flux_mean")
    stable = (flux < np.nanmedian(flux)).astype(np.float64)
    arousal = 0.4 * bpm + 0.3 * energy + 0.2 * bright + 0.1 * onset
    valence = 0.4 * bright + 0.3 * (1 - chroma_std) + 0.2 * energy + 0.1 * stable
    out = np.column_stack([2 * valence - 1, 2 * arousal - 1])
    return np.nan_to_num(out, nan=0.0)


def fuse_track_moods(
    *,
    track_ids: Sequence[str],
    audio_pred: np.ndarray | None,
    audio_is_imputed: np.ndarray | None,
    text_pred: np.ndarray | None,
) -> pl.DataFrame:
    """Combine per-track audio and text moods → track_id, valence, arousal, mood_source,
    mood_confidence.

    ``audio_pred``/``text_pred``: (n, 3) [valence, arousal, confidence] with NaN rows where the
    source has nothing (None = nothing for every track); ``audio_is_imputed``: (n,) bool, True
    where the audio features were imputed rather than extracted.

    - audio and text both present → confidence-weighted mean, source "fused" (imputed audio
      counts as audio here); if both confidences are 0 the plain mean is used. Confidence = the
      confidence-weighted mean of the two confidences times an agreement factor
      ``1 − d / (2√2)`` (``d`` the distance between the two moods; 2√2 is the diameter of
      [−1, 1]²), so agreeing sources keep their confidence and contradicting ones lose it;
    - only extracted audio → "audio"; only imputed audio → "imputed"; only text → "text";
    - neither → "prior": valence = arousal = 0 (the neutral centre) with confidence 0. The
      pipeline gives every track text or imputed audio, so "prior" flags an upstream gap.
    Values are clipped to [-1, 1], confidences to [0, 1].
    """
    n = len(track_ids)

    def as_pred(a: np.ndarray | None) -> np.ndarray:
        if a is None:
            return np.full((n, 3), np.nan)
        a = np.asarray(a, dtype=np.float64)
        if a.shape != (n, 3):
            raise InvalidInputError(f"prediction shape {a.shape} != ({n}, 3)", field="audio_pred/text_pred")
        return a

    audio, text = as_pred(audio_pred), as_pred(text_pred)
    imputed = np.zeros(n, dtype=bool) if audio_is_imputed is None else np.asarray(audio_is_imputed, dtype=bool)
    has_a = np.isfinite(audio[:, :2]).all(1)
    has_t = np.isfinite(text[:, :2]).all(1)
    ca = np.clip(np.nan_to_num(audio[:, 2], nan=0.0), 0, 1)
    ct = np.clip(np.nan_to_num(text[:, 2], nan=0.0), 0, 1)

    va = np.zeros((n, 2))
    conf = np.zeros(n)
    source = np.full(n, "prior", dtype=object)

    both = has_a & has_t
    wsum = ca + ct
    wa = np.where(wsum > 0, ca / np.where(wsum > 0, wsum, 1), 0.5)
    va[both] = (wa[:, None] * np.nan_to_num(audio[:, :2]) + (1 - wa[:, None]) * np.nan_to_num(text[:, :2]))[both]
    wconf = np.where(wsum > 0, (ca**2 + ct**2) / np.where(wsum > 0, wsum, 1), 0.0)
    dist = np.linalg.norm(np.nan_to_num(audio[:, :2]) - np.nan_to_num(text[:, :2]), axis=1)
    conf[both] = (wconf * (1.0 - dist / (2.0 * np.sqrt(2.0))))[both]
    source[both] = "fused"

    only_a = has_a & ~has_t
    va[only_a] = audio[only_a, :2]
    conf[only_a] = ca[only_a]
    source[only_a & ~imputed] = "audio"
    source[only_a & imputed] = "imputed"

    only_t = has_t & ~has_a
    va[only_t] = text[only_t, :2]
    conf[only_t] = ct[only_t]
    source[only_t] = "text"

    va = np.clip(va, -1.0, 1.0)
    return pl.DataFrame(
        {
            TRACK_ID: pl.Series(list(track_ids), dtype=pl.String),
            VALENCE: va[:, 0],
            AROUSAL: va[:, 1],
            MOOD_SOURCE: pl.Series(source.tolist(), dtype=pl.String),
            MOOD_CONFIDENCE: np.clip(conf, 0.0, 1.0),
        }
    )


def pool_moods(*, preds: Sequence[np.ndarray]) -> np.ndarray:
    """Pool several (n, 3) [valence, arousal, confidence] evidences of the *same kind* (e.g. the
    query-mood model on a track's text and its tag moods) into one (n, 3); NaN rows = absent.

    Per row: the confidence-weighted mean of the present evidences (plain mean if all
    confidences are 0); confidence = ``1 − Π(1 − c_i)`` (independent agreeing evidences add up)
    times the agreement factor ``1 − s / √2``, ``s`` the confidence-weighted mean distance of the
    evidences from the pooled mood. A single evidence passes through unchanged; rows with none
    stay NaN."""
    arrs = [np.asarray(a, dtype=np.float64) for a in preds]
    if not arrs:
        raise InvalidInputError("no evidence to pool", field="preds")
    n = arrs[0].shape[0]
    if any(a.shape != (n, 3) for a in arrs):
        raise InvalidInputError("every evidence must be (n, 3)", field="preds")
    stack = np.stack(arrs)  # (k, n, 3)
    present = np.isfinite(stack[:, :, :2]).all(2)  # (k, n)
    c = np.where(present, np.clip(np.nan_to_num(stack[:, :, 2], nan=0.0), 0, 1), 0.0)
    va = np.where(present[:, :, None], np.nan_to_num(stack[:, :, :2]), 0.0)
    w = np.where(c.sum(0) > 0, c, present.astype(np.float64))  # (k, n)
    wsum = w.sum(0)
    out = np.full((n, 3), np.nan)
    has = present.any(0)
    mean = (w[:, :, None] * va).sum(0) / np.where(wsum > 0, wsum, 1.0)[:, None]
    dist = np.linalg.norm(va - mean[None], axis=2)
    spread = (w * dist).sum(0) / np.where(wsum > 0, wsum, 1.0)
    conf = (1.0 - np.prod(1.0 - c, axis=0)) * np.clip(1.0 - spread / np.sqrt(2.0), 0.0, 1.0)
    out[has, :2] = mean[has]
    out[has, 2] = conf[has]
    return out


def is_finite_prediction(pred: np.ndarray) -> bool:
    """True when every value of an (n, 3) prediction is finite and inside its range."""
    return bool(
        np.isfinite(pred).all()
        and (np.abs(pred[:, :2]) <= 1 + 1e-9).all()
        and ((pred[:, 2] >= 0) & (pred[:, 2] <= 1)).all()
    )
