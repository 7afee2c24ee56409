"""Per-track moods: evidences of several kinds combined, and a hand-weighted audio baseline.

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


# Own evidence of a track (its audio, its text): fused with anything else, the source is "fused".
OWN_KINDS: frozenset[str] = frozenset({"audio", "text"})


def fuse_track_moods(
    *,
    track_ids: Sequence[str],
    audio_pred: np.ndarray | None,
    audio_is_imputed: np.ndarray | None,
    text_pred: np.ndarray | None,
) -> pl.DataFrame:
    """Combine per-track audio and text moods (:func:`fuse_evidences` with the audio rows named
    "audio", or "imputed" where ``audio_is_imputed``, and the text rows "text")."""
    n = len(track_ids)
    imputed = np.zeros(n, dtype=bool) if audio_is_imputed is None else np.asarray(audio_is_imputed, dtype=bool)
    return fuse_evidences(
        track_ids=track_ids,
        evidences=[(audio_pred, np.where(imputed, "imputed", "audio")), (text_pred, np.full(n, "text"))],
    )


def fuse_evidences(
    *, track_ids: Sequence[str], evidences: Sequence[tuple[np.ndarray | None, np.ndarray]]
) -> pl.DataFrame:
    """Combine evidences of different kinds → track_id, valence, arousal, mood_source, mood_confidence.

    ``evidences``: (prediction (n, 3) [valence, arousal, confidence] with NaN rows where absent, or
    None = absent everywhere; (n,) kind name per row, e.g. "audio" / "imputed" / "text" / "genre").

    - several present → confidence-weighted mean (plain mean if every confidence is 0); confidence
      = the confidence-weighted mean of the confidences times an agreement factor ``1 − D / (2√2)``,
      ``D`` the weight-weighted mean pairwise distance of the evidences (2√2 is the diameter of
      [−1, 1]²), so agreeing evidences keep their confidence and contradicting ones lose it. Source
      "fused" when one of them is the track's own audio or text (``OWN_KINDS``), else the kind of
      the most confident one;
    - one present → it, with its kind as source;
    - none → valence, arousal and source null, confidence 0: no evidence, no mood.
    Values are clipped to [-1, 1], confidences to [0, 1].
    """
    n = len(track_ids)
    preds, kinds = [], []
    for pred, kind in evidences:
        a = np.full((n, 3), np.nan) if pred is None else np.asarray(pred, dtype=np.float64)
        if a.shape != (n, 3):
            raise InvalidInputError(f"prediction shape {a.shape} != ({n}, 3)", field="evidences")
        preds.append(a)
        kinds.append(np.broadcast_to(np.asarray(kind, dtype=object), (n,)))
    if not preds:
        raise InvalidInputError("no evidence to fuse", field="evidences")
    stack = np.stack(preds)  # (k, n, 3)
    kind = np.stack(kinds)  # (k, n)
    present = np.isfinite(stack[:, :, :2]).all(2)
    c = np.where(present, np.clip(np.nan_to_num(stack[:, :, 2], nan=0.0), 0, 1), 0.0)
    va = np.where(present[:, :, None], np.nan_to_num(stack[:, :, :2]), 0.0)
    w = np.where(c.sum(0) > 0, c, present.astype(np.float64))
    wsum = w.sum(0)
    safe = np.where(wsum > 0, wsum, 1.0)
    mean = (w[:, :, None] * va).sum(0) / safe[:, None]
    wconf = np.where(c.sum(0) > 0, (c**2).sum(0) / np.where(c.sum(0) > 0, c.sum(0), 1.0), 0.0)
    pair_w = np.zeros(n)
    pair_d = np.zeros(n)
    for i in range(len(preds)):
        for j in range(i + 1, len(preds)):
            wij = w[i] * w[j] * (present[i] & present[j])
            pair_w += wij
            pair_d += wij * np.linalg.norm(va[i] - va[j], axis=1)
    dist = np.where(pair_w > 0, pair_d / np.where(pair_w > 0, pair_w, 1.0), 0.0)
    conf = wconf * (1.0 - dist / (2.0 * np.sqrt(2.0)))
    has = present.any(0)
    count = present.sum(0)
    single = count == 1  # one evidence passes through unchanged
    first = np.argmax(present, axis=0)
    cols = np.arange(n)
    mean[single] = va[first, cols][single]
    conf[single] = c[first, cols][single]
    source = np.full(n, None, dtype=object)
    strongest = np.argmax(np.where(present, c + 1e-9, -1.0), axis=0)
    for r in np.where(has)[0]:
        here = kind[present[:, r], r]
        if count[r] == 1:
            source[r] = here[0]
        elif any(k in OWN_KINDS for k in here):
            source[r] = "fused"
        else:
            source[r] = kind[strongest[r], r]
    va_out = np.where(has[:, None], np.clip(mean, -1.0, 1.0), np.nan)
    return pl.DataFrame(
        {
            TRACK_ID: pl.Series(list(track_ids), dtype=pl.String),
            VALENCE: pl.Series(va_out[:, 0]).fill_nan(None),
            AROUSAL: pl.Series(va_out[:, 1]).fill_nan(None),
            MOOD_SOURCE: pl.Series(source.tolist(), dtype=pl.String),
            MOOD_CONFIDENCE: np.where(has, np.clip(conf, 0.0, 1.0), 0.0),
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
