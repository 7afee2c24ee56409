"""Audio features for mood: one mono signal → a flat dict of ``FEATURE_COLUMNS`` finite floats.

One load, one magnitude STFT (``sr=22050``, ``n_fft=2048``, ``hop=512``) from which every spectral
feature is derived (librosa); only ZCR and LUFS look at the samples. ``pipelines.audio.extract``
runs this over many files in a process pool.
"""

import functools
import os
from pathlib import Path

from pipelines import store

# numba (librosa's JIT) must find a persistent, writable cache before librosa is imported.
os.environ.setdefault("NUMBA_CACHE_DIR", str(store.REPO_ROOT / ".numba_cache"))

import librosa
import numpy as np
import pyloudnorm
import scipy.signal

SR = 22050
N_FFT = 2048
HOP = 512
N_MELS = 128
N_MFCC = 13
PITCH_CLASSES: tuple[str, ...] = ("C", "Cs", "D", "Ds", "E", "F", "Fs", "G", "Gs", "A", "As", "B")
_RMS_FLOOR_DB = -80.0
_LUFS_FLOOR = -70.0
_EPS = 1e-10

# Krumhansl & Kessler (1982) probe-tone profiles, tonic first.
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def _z(v: np.ndarray) -> np.ndarray:
    return (v - v.mean()) / v.std()


# (24, 12) z-scored profiles: rows 0..11 major keys C..B, rows 12..23 minor keys C..B.
_KEY_TEMPLATES = np.stack(
    [_z(np.roll(_KK_MAJOR, k)) for k in range(12)] + [_z(np.roll(_KK_MINOR, k)) for k in range(12)]
)

# The feature contract (77 columns). Most are ``<librosa feature>_mean`` / ``_std`` over frames; the others:
# - ``tempo`` BPM (0 without a pulse): the onset-envelope autocorrelation peak weighted by librosa's
#   log-normal tempo prior (120 BPM, one octave) picks the metrical level; the period is refined to a
#   fractional lag (parabolic fit at the 1-, 2- and 4-beat lags). Metrical-level ambiguity (x2/3,
#   x4/3, x2) remains on real music, as with any autocorrelation tempo.
# - ``pulse_clarity`` normalised onset-envelope autocorrelation at the beat lag, in [0, 1].
# - ``beat_regularity`` 1 / (1 + CV) of the tracked inter-beat intervals, in [0, 1] (0: < 3 beats).
# - ``onset_rate`` detected onsets per second.
# - ``rms_low_energy_ratio`` share of frames whose RMS is below the clip's mean RMS.
# - ``spectral_flux_*`` L2 norm of the positive change between consecutive L2-normalised magnitude
#   frames (loudness-invariant, in [0, sqrt(2)]).
# - ``chroma_<pc>_mean`` 12 pitch-class means (C … B); ``chroma_std`` mean over the 12 bins of each
#   bin's temporal std (how much the harmony moves).
# - ``loudness_lufs`` ITU-R BS.1770 integrated loudness, floored at -70 LUFS (silence reads -70).
# - ``dynamic_range_db`` p95 − p10 of frame RMS in dBFS (frames floored at -80 dBFS).
# - ``key`` 0–11 (C=0) and ``mode`` (1 major, 0 minor) of the Krumhansl–Kessler profile best
#   correlated with the mean chroma; ``key_strength`` that Pearson correlation (0 for silence).
FEATURE_COLUMNS: tuple[str, ...] = (
    "tempo", "pulse_clarity", "beat_regularity", "onset_rate",
    "rms_mean", "rms_std", "rms_low_energy_ratio", "zcr_mean", "zcr_std",
    "spectral_centroid_mean", "spectral_centroid_std",
    "spectral_bandwidth_mean", "spectral_bandwidth_std",
    "spectral_rolloff_mean", "spectral_rolloff_std",
    "spectral_flatness_mean", "spectral_flatness_std",
    "spectral_flux_mean", "spectral_flux_std",
    *(f"spectral_contrast_{i}_mean" for i in range(7)),
    *(f"chroma_{pc}_mean" for pc in PITCH_CLASSES), "chroma_std",
    *(f"tonnetz_{i}_mean" for i in range(6)),
    *(f"mfcc_{i}_mean" for i in range(N_MFCC)),
    *(f"mfcc_{i}_std" for i in range(N_MFCC)),
    "loudness_lufs", "dynamic_range_db",
    "key", "mode", "key_strength",
)


def _refine_lag(ac: np.ndarray, lag: float) -> float | None:
    """Fractional position of the autocorrelation peak nearest ``lag`` (parabolic fit), or None."""
    centre = int(round(lag))
    lo, hi = max(1, centre - 2), min(len(ac) - 2, centre + 2)
    if hi < lo:
        return None
    i = lo + int(np.argmax(ac[lo : hi + 1]))
    if i <= 0 or i >= len(ac) - 1:
        return None
    a, b, c = ac[i - 1], ac[i], ac[i + 1]
    if not (b >= a and b >= c) or b <= 0:
        return None
    denom = a - 2 * b + c
    shift = 0.0 if denom == 0 else 0.5 * (a - c) / denom
    return i + float(np.clip(shift, -0.5, 0.5))


def _tempo(onset_env: np.ndarray, sr: int) -> tuple[float, float]:
    """(tempo BPM, pulse clarity) from an onset envelope at ``HOP``; (0, 0) without a pulse.

    Global autocorrelation of the envelope, weighted by librosa's log-normal tempo prior (centred
    on 120 BPM, one octave wide) to choose the metrical level, then refined to a fractional lag.
    """
    if onset_env.size < 8 or float(onset_env.max()) <= 0:
        return 0.0, 0.0
    env = onset_env.astype(np.float64) - onset_env.mean()
    ac = librosa.autocorrelate(env)
    if ac[0] <= 0:
        return 0.0, 0.0
    ac = ac / ac[0]
    frame_rate = sr / HOP
    lags = np.arange(1, len(ac))
    bpms = 60.0 * frame_rate / lags
    usable = (bpms >= 30.0) & (bpms <= 300.0)
    if not usable.any():
        return 0.0, 0.0
    prior = np.exp(-0.5 * ((np.log2(bpms) - np.log2(120.0)) / 1.0) ** 2)
    score = np.where(usable, np.maximum(ac[1:], 0.0) * prior, -np.inf)
    best_lag = int(lags[int(np.argmax(score))])
    if not np.isfinite(score[best_lag - 1]) or ac[best_lag] <= 0:
        return 0.0, 0.0
    lag = _refine_lag(ac, best_lag) or float(best_lag)
    coarse = 60.0 * frame_rate / lag
    best = coarse
    for k in (2, 4):  # a peak k beats away pins the period k times more finely
        if k * lag + 3 >= len(ac):
            break
        peak = _refine_lag(ac, k * lag)
        if peak is None:
            continue
        bpm = 60.0 * frame_rate * k / peak
        if abs(bpm - coarse) <= 0.02 * coarse:  # same metrical level, finer estimate
            best = bpm
    return float(best), float(np.clip(ac[best_lag], 0.0, 1.0))


def _beat_regularity(onset_env: np.ndarray, sr: int, tempo: float) -> float:
    if tempo <= 0:
        return 0.0
    _, beats = librosa.beat.beat_track(
        onset_envelope=onset_env, sr=sr, hop_length=HOP, bpm=tempo, trim=True, units="frames"
    )
    if len(beats) < 3:
        return 0.0
    ibi = np.diff(beats).astype(np.float64)
    return float(1.0 / (1.0 + ibi.std() / ibi.mean()))


def _key(chroma_mean: np.ndarray) -> tuple[float, float, float]:
    """(key 0-11, mode 1 major / 0 minor, Pearson r with the best Krumhansl–Kessler profile)."""
    if chroma_mean.std() < 1e-8:
        return 0.0, 1.0, 0.0
    r = _KEY_TEMPLATES @ _z(chroma_mean) / 12.0
    best = int(np.argmax(r))
    return float(best % 12), float(1 if best < 12 else 0), float(r[best])


@functools.lru_cache(maxsize=8)
def _k_weighting(sr: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """BS.1770 K-weighting biquads ``((b, a), ...)`` for ``sr``, exactly as pyloudnorm designs them."""
    meter = pyloudnorm.Meter(sr)
    return tuple((f.b, f.a) for f in meter._filters.values())


def loudness_lufs(*, y: np.ndarray, sr: int) -> float:
    """ITU-R BS.1770-4 integrated loudness of mono ``y`` (shape ``(n,)``) in LUFS, floored at -70.

    Same filters, 400 ms / 75 %-overlap blocks and gates as ``pyloudnorm.Meter.integrated_loudness``,
    with the block loop vectorised (a cumulative sum of squares instead of a Python loop).
    """
    block = 0.4
    if y.size < int(block * sr) or not np.any(y):
        return _LUFS_FLOOR
    x = y.astype(np.float64)
    for b, a in _k_weighting(sr):
        x = scipy.signal.lfilter(b, a, x)
    csum = np.concatenate(([0.0], np.cumsum(x * x)))
    n_blocks = int(np.round((x.size / sr - block) / (block * 0.25))) + 1
    j = np.arange(n_blocks)
    lo = (block * (j * 0.25) * sr).astype(np.int64)
    hi = np.minimum((block * (j * 0.25 + 1) * sr).astype(np.int64), x.size)
    z = (csum[hi] - csum[lo]) / (block * sr)
    with np.errstate(divide="ignore"):
        lk = -0.691 + 10.0 * np.log10(z)
    gated = lk >= _LUFS_FLOOR
    if not gated.any():
        return _LUFS_FLOOR
    rel = -0.691 + 10.0 * np.log10(z[gated].mean()) - 10.0
    gated = (lk > rel) & (lk > _LUFS_FLOOR)
    if not gated.any():
        return _LUFS_FLOOR
    value = -0.691 + 10.0 * np.log10(z[gated].mean())
    return float(max(value, _LUFS_FLOOR)) if np.isfinite(value) else _LUFS_FLOOR


@functools.lru_cache(maxsize=8)
def _filterbanks(sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mel basis (128, 1025), chroma basis (12, 1025), FFT bin frequencies (1025,)) for ``sr``."""
    mel = librosa.filters.mel(sr=sr, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32)
    chroma = librosa.filters.chroma(sr=sr, n_fft=N_FFT, tuning=0.0).astype(np.float32)
    freqs = librosa.fft_frequencies(sr=sr, n_fft=N_FFT).astype(np.float32)
    return mel, chroma, freqs


def _zcr(y: np.ndarray) -> np.ndarray:
    """Zero-crossing rate per centred frame (``N_FFT``/``HOP``), like librosa's, via a cumulative sum."""
    padded = np.pad(y, N_FFT // 2, mode="edge")
    signs = np.signbit(padded)
    # csum[i] = number of sign changes between consecutive samples among padded[0..i]
    csum = np.zeros(padded.size, dtype=np.int32)
    np.cumsum(signs[1:] != signs[:-1], out=csum[1:])
    n_frames = 1 + (padded.size - N_FFT) // HOP
    starts = np.arange(n_frames) * HOP
    return (csum[starts + N_FFT - 1] - csum[starts]) / N_FFT


def features_from_signal(*, y: np.ndarray, sr: int = SR) -> dict[str, float]:
    """Features of a mono float signal ``y`` (shape ``(n_samples,)``) → ``{FEATURE_COLUMNS: float}``."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"expected a non-empty mono signal, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("signal contains NaN or inf")
    if y.size < N_FFT:
        y = np.pad(y, (0, N_FFT - y.size))
    seconds = y.size / sr
    out: dict[str, float] = {}

    mel_basis, chroma_basis, freqs = _filterbanks(sr)
    S = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP))  # (1025, T) magnitude
    P = S * S  # power
    mel = mel_basis @ P  # (128, T) power mel
    # dB re full scale, floored 80 dB below the loudest bin (librosa's default): keeps the onset
    # envelope and MFCCs blind to leakage and dither far below the music.
    log_mel = librosa.power_to_db(mel, ref=1.0, amin=_EPS, top_db=80.0)

    # Rhythm: one onset envelope from the log-mel spectrogram.
    onset_env = librosa.onset.onset_strength(S=log_mel, sr=sr, hop_length=HOP)
    tempo, clarity = _tempo(onset_env, sr)
    onsets = (
        librosa.onset.onset_detect(onset_envelope=onset_env, sr=sr, hop_length=HOP)
        if onset_env.max() > 0
        else np.empty(0)
    )
    out["tempo"] = tempo
    out["pulse_clarity"] = clarity
    out["beat_regularity"] = _beat_regularity(onset_env, sr, tempo)
    out["onset_rate"] = len(onsets) / seconds

    # Energy.
    rms = librosa.feature.rms(S=S, frame_length=N_FFT)[0]
    out["rms_mean"] = float(rms.mean())
    out["rms_std"] = float(rms.std())
    out["rms_low_energy_ratio"] = float(np.mean(rms < rms.mean()))
    zcr = _zcr(np.where(np.abs(y) <= 1e-10, 0.0, y))
    out["zcr_mean"] = float(zcr.mean())
    out["zcr_std"] = float(zcr.std())

    # Spectral shape, all from S (same definitions as librosa.feature.spectral_*; silent frames → 0).
    mag_sum = S.sum(axis=0)
    safe = np.maximum(mag_sum, _EPS)
    centroid = (freqs @ S) / safe
    second = ((freqs * freqs) @ S) / safe
    bandwidth = np.sqrt(np.maximum(second - centroid**2, 0.0))
    cum = np.cumsum(S, axis=0)
    rolloff_bin = np.argmax(cum >= 0.85 * cum[-1:], axis=0)
    rolloff = np.where(mag_sum > 0, freqs[rolloff_bin], 0.0)
    P_floor = np.maximum(P, _EPS)
    flatness = np.exp(np.log(P_floor).mean(axis=0)) / P_floor.mean(axis=0)
    for name, values in (
        ("spectral_centroid", centroid),
        ("spectral_bandwidth", bandwidth),
        ("spectral_rolloff", rolloff),
        ("spectral_flatness", flatness),
    ):
        out[f"{name}_mean"] = float(values.mean())
        out[f"{name}_std"] = float(values.std())
    unit = S / np.maximum(np.sqrt(P.sum(axis=0, keepdims=True)), _EPS)
    flux = np.linalg.norm(np.maximum(np.diff(unit, axis=1), 0.0), axis=0) if S.shape[1] > 1 else np.zeros(1)
    out["spectral_flux_mean"] = float(flux.mean())
    out["spectral_flux_std"] = float(flux.std())
    contrast = librosa.feature.spectral_contrast(S=S, sr=sr, n_fft=N_FFT, n_bands=6)  # (7, T)
    for i, v in enumerate(contrast.mean(axis=1)):
        out[f"spectral_contrast_{i}_mean"] = float(v)

    # Harmony: chroma_stft from the same power spectrogram (A440 tuning assumed); tonnetz and key
    # from that chroma (never chroma_cqt).
    chroma = librosa.util.normalize(chroma_basis @ P, norm=np.inf, axis=0)  # (12, T)
    chroma_mean = chroma.mean(axis=1)
    for pc, v in zip(PITCH_CLASSES, chroma_mean, strict=True):
        out[f"chroma_{pc}_mean"] = float(v)
    out["chroma_std"] = float(chroma.std(axis=1).mean())
    tonnetz = librosa.feature.tonnetz(chroma=chroma, sr=sr)  # (6, T)
    for i, v in enumerate(tonnetz.mean(axis=1)):
        out[f"tonnetz_{i}_mean"] = float(v)

    # Timbre.
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=N_MFCC)  # (13, T)
    for i in range(N_MFCC):
        out[f"mfcc_{i}_mean"] = float(mfcc[i].mean())
        out[f"mfcc_{i}_std"] = float(mfcc[i].std())

    # Loudness and dynamics.
    out["loudness_lufs"] = loudness_lufs(y=y, sr=sr)
    rms_db = 20.0 * np.log10(np.maximum(rms, 10 ** (_RMS_FLOOR_DB / 20)))
    out["dynamic_range_db"] = float(np.percentile(rms_db, 95) - np.percentile(rms_db, 10))

    out["key"], out["mode"], out["key_strength"] = _key(chroma_mean)

    # Every branch above is guarded; this is the last line of defence, not the mechanism.
    return {c: (float(out[c]) if np.isfinite(out[c]) else 0.0) for c in FEATURE_COLUMNS}


def load_clip(
    *, path: str | Path, sr: int = SR, offset: float = 0.0, duration: float = 30.0
) -> tuple[np.ndarray, int]:
    """Decode ``duration`` s of ``path`` from ``offset`` (see ``effective_offset``), mono, resampled to
    ``sr`` → (samples float32 ``(n,)``, sample rate). Raises on an unreadable or empty file."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    offset = effective_offset(path=path, offset=offset, duration=duration)
    y, sr_loaded = librosa.load(str(path), sr=sr, mono=True, offset=offset, duration=duration)
    if y.size == 0 and offset > 0:  # length unknown up front and the clip ends before the offset
        y, sr_loaded = librosa.load(str(path), sr=sr, mono=True, offset=0.0, duration=duration)
    if y.size == 0:
        raise ValueError(f"no audio decoded from {path}")
    return y, int(sr_loaded)


def extract_features(
    *, path: str | Path, sr: int = SR, offset: float = 0.0, duration: float = 30.0
) -> dict[str, float]:
    """Load ``duration`` s of ``path`` from ``offset`` (mono, resampled to ``sr``) → feature dict.

    Returns ``{name: float}`` for every name in ``FEATURE_COLUMNS`` (all finite). Raises on an
    unreadable or empty file.
    """
    y, sr_loaded = load_clip(path=path, sr=sr, offset=offset, duration=duration)
    return features_from_signal(y=y, sr=sr_loaded)


def effective_offset(*, path: str | Path, offset: float, duration: float) -> float:
    """Where analysis starts: ``offset``, moved earlier for a clip shorter than ``offset + duration``.

    A 20 s clip with ``offset=30, duration=30`` is analysed from 0 (all of it); a 45 s clip from
    15 s (its last 30 s). When the header does not give the length, ``offset`` is returned as is.
    """
    if offset <= 0:
        return 0.0
    try:
        total = float(librosa.get_duration(path=str(path)))
    except Exception:  # unknown length (odd container, truncated download)
        return float(offset)
    if not np.isfinite(total) or total <= 0:
        return float(offset)
    return float(min(offset, max(0.0, total - duration)))
