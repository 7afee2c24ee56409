"""Benchmark: the project's audio extractor against a naive librosa baseline on the same clips.

The *project* path is what an extraction worker does per file: one decode (``load_clip``), the
librosa features (``features_from_signal``: one STFT shared by every feature) and the backbone
(``backbone_outputs``: resampling, log-mel and both musicnn taggers), each timed on its own and
together ("all-in"). The *naive* path is the straightforward librosa script: ``librosa.load`` and
then each librosa feature called on the raw signal, so every call recomputes its own STFT (and
``beat_track`` / ``onset_detect`` their own onset envelope, ``tonnetz`` its own CQT chroma).

Times are CPU seconds of this process (``time.process_time``), so they measure the cost on one
core even when other jobs share the machine; wall-clock seconds are reported alongside. Both run
in this process with BLAS/FFT and torch thread pools limited to one thread ("per core"), after a
warm-up (numba JIT, filter-bank caches, OS file cache) on the first clip, alternating project and
naive per clip so drift on a shared machine hits both alike. Each clip is the first ``duration``
seconds, as in the pipeline.
"""

import os  # noqa: I001 (pipelines.audio.features sets NUMBA_CACHE_DIR before librosa loads numba)
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pipelines.audio import backbone, extract
from pipelines.audio import features as audio

import librosa
import numpy as np
import pyloudnorm
import torch
from tqdm.auto import tqdm

AUDIO_SUFFIXES: frozenset[str] = frozenset({".ogg", ".opus", ".oga", ".wav", ".flac", ".mp3", ".m4a", ".aiff", ".aif"})
GOAL_ALLIN_S_PER_30S_CLIP = 0.5  # decode + librosa features + backbone
GOAL_SPEEDUP = 3.0  # naive / project librosa path (decode included on both sides)

# The naive baseline, stage by stage: (name, fn(y, sr) -> dict of aggregated floats).
_Stage = tuple[str, Callable[[np.ndarray, int], dict[str, float]]]


def _agg(name: str, frames: np.ndarray) -> dict[str, float]:
    """mean / std over frames of a (k, T) or (T,) feature → 2k floats."""
    m = np.atleast_2d(frames)
    out: dict[str, float] = {}
    for i, (mu, sd) in enumerate(zip(m.mean(axis=1), m.std(axis=1), strict=True)):
        out[f"{name}_{i}_mean"] = float(mu)
        out[f"{name}_{i}_std"] = float(sd)
    return out


def _beat(y: np.ndarray, sr: int) -> dict[str, float]:
    tempo, beats = librosa.beat.beat_track(y=y, sr=sr)
    ibi = np.diff(beats).astype(np.float64)
    reg = float(1.0 / (1.0 + ibi.std() / ibi.mean())) if ibi.size >= 2 and ibi.mean() > 0 else 0.0
    return {"tempo": float(np.atleast_1d(tempo)[0]), "beat_regularity": reg}


def _onsets(y: np.ndarray, sr: int) -> dict[str, float]:
    env = librosa.onset.onset_strength(y=y, sr=sr)
    onsets = librosa.onset.onset_detect(y=y, sr=sr)
    return {"onset_strength_mean": float(env.mean()), "onset_rate": len(onsets) / (y.size / sr)}


def _loudness(y: np.ndarray, sr: int) -> dict[str, float]:
    lufs = pyloudnorm.Meter(sr).integrated_loudness(y.astype(np.float64))
    return {"loudness_lufs": float(max(lufs, -70.0))}


NAIVE_STAGES: tuple[_Stage, ...] = (
    ("beat_track", _beat),
    ("onsets", _onsets),
    ("mfcc", lambda y, sr: _agg("mfcc", librosa.feature.mfcc(y=y, sr=sr, n_mfcc=13, n_fft=2048, hop_length=512))),
    ("spectral_centroid", lambda y, sr: _agg("centroid", librosa.feature.spectral_centroid(y=y, sr=sr))),
    ("spectral_bandwidth", lambda y, sr: _agg("bandwidth", librosa.feature.spectral_bandwidth(y=y, sr=sr))),
    ("spectral_rolloff", lambda y, sr: _agg("rolloff", librosa.feature.spectral_rolloff(y=y, sr=sr))),
    ("spectral_flatness", lambda y, sr: _agg("flatness", librosa.feature.spectral_flatness(y=y))),
    ("spectral_contrast", lambda y, sr: _agg("contrast", librosa.feature.spectral_contrast(y=y, sr=sr))),
    ("chroma_stft", lambda y, sr: _agg("chroma", librosa.feature.chroma_stft(y=y, sr=sr))),
    ("tonnetz", lambda y, sr: _agg("tonnetz", librosa.feature.tonnetz(y=y, sr=sr))),
    ("rms", lambda y, sr: _agg("rms", librosa.feature.rms(y=y))),
    ("zero_crossing_rate", lambda y, sr: _agg("zcr", librosa.feature.zero_crossing_rate(y))),
    ("loudness", _loudness),
)


def naive_features(*, y: np.ndarray, sr: int = audio.SR) -> tuple[dict[str, float], dict[str, float]]:
    """The naive extraction (one librosa call per feature) of mono ``y`` (shape ``(n,)``) →
    (features, CPU seconds per stage)."""
    feats: dict[str, float] = {}
    stage_s: dict[str, float] = {}
    for name, fn in NAIVE_STAGES:
        t0 = _cpu()
        feats |= fn(y, sr)
        stage_s[name] = _cpu() - t0
    return feats, stage_s


def collect_clips(*, paths: Sequence[str | Path]) -> list[Path]:
    """Audio files named by ``paths`` (files, or folders searched recursively, skipping hidden
    entries such as half-written ``.render-*`` folders), sorted, deduplicated.

    Raises ``FileNotFoundError`` for a path that does not exist.
    """
    found: dict[Path, None] = {}
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                hidden = any(part.startswith(".") for part in f.relative_to(p).parts)  # e.g. .render-* temp dirs
                if f.is_file() and not hidden and f.suffix.lower() in AUDIO_SUFFIXES:
                    found[f.resolve()] = None
        elif p.is_file():
            found[p.resolve()] = None
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return list(found)


def _cpu() -> float:
    """CPU seconds of this process (all threads): the per-core cost, immune to other jobs' load."""
    return time.process_time()


def _limit_threads(n: int):
    from threadpoolctl import threadpool_limits

    return threadpool_limits(n)


def run_bench(
    *, clips: Sequence[Path], duration: float = 30.0, threads: int = 1, progress: bool = True
) -> dict:
    """Time project vs naive extraction on ``clips`` → the report dict (see ``bench_audio.json``).

    Keys: ``clips``; ``project_s_per_clip`` (decode + librosa features), ``naive_s_per_clip``,
    ``speedup`` (naive / project); ``load_s_per_clip`` (decode + resample to 22.05 kHz),
    ``project_features_s_per_clip`` / ``naive_features_s_per_clip`` and ``features_speedup``
    (decode excluded); ``backbone_s_per_clip``; ``allin_s_per_clip`` (decode + features +
    backbone); ``*_per_30s_clip`` (time scaled to 30 s of audio); ``naive_stage_s_per_clip``;
    per-group numbers (``groups``: by parent folder); ``failed`` (clips either side could not
    decode) and ``goal``.
    """
    clips = [Path(c) for c in clips]
    if not clips:
        raise ValueError("no audio clips to benchmark")
    limiter = _limit_threads(threads)
    torch_threads = torch.get_num_threads()
    backbone.set_threads(threads)
    extract.keep_freed_memory()  # as the extraction workers do
    try:
        extract.warmup()
        # Warm-up both paths on the first decodable clip (JIT, caches, page cache); not timed.
        for c in clips:
            try:
                y, sr = audio.load_clip(path=c, duration=duration)
                audio.features_from_signal(y=y, sr=sr)
                backbone.backbone_outputs(y, sr)
                naive_features(y=y, sr=sr)
                break
            except Exception:  # an undecodable clip is reported below
                continue
        rows: list[dict] = []
        failed: list[dict] = []
        for c in tqdm(clips, disable=not progress, desc="bench audio", unit="clip"):
            try:
                w0, t0 = time.perf_counter(), _cpu()
                y, sr = audio.load_clip(path=c, duration=duration)
                t1 = _cpu()
                audio.features_from_signal(y=y, sr=sr)
                w2, t2 = time.perf_counter(), _cpu()
                backbone.backbone_outputs(y, sr)
                w3, t3 = time.perf_counter(), _cpu()
                y_naive, sr_naive = librosa.load(str(c), sr=audio.SR, mono=True, duration=duration)
                t4 = _cpu()
                _, stage_s = naive_features(y=y_naive, sr=int(sr_naive))
                w5, t5 = time.perf_counter(), _cpu()
            except Exception as exc:
                failed.append({"path": str(c), "error": f"{type(exc).__name__}: {exc}"[:300]})
                continue
            rows.append({
                "path": str(c), "group": c.parent.name, "audio_s": y.size / sr,
                "load_s": t1 - t0, "features_s": t2 - t1, "backbone_s": t3 - t2,
                "project_s": t2 - t0, "allin_s": t3 - t0, "naive_s": t5 - t3, "naive_load_s": t4 - t3,
                "stage_s": stage_s, "project_wall_s": w2 - w0, "allin_wall_s": w3 - w0, "naive_wall_s": w5 - w3,
            })
    finally:
        limiter.restore_original_limits()
        backbone.set_threads(torch_threads)
    if not rows:
        raise ValueError(f"none of the {len(clips)} clips could be decoded: {failed[:3]}")
    return _report(rows=rows, failed=failed, duration=duration, threads=threads)


def _summary(rows: list[dict]) -> dict[str, float]:
    n = len(rows)
    audio_s = sum(r["audio_s"] for r in rows)
    tot = {k: sum(r[k] for r in rows) for k in ("project_s", "naive_s", "load_s", "naive_load_s", "features_s",
                                               "backbone_s", "allin_s")}
    per30 = 30.0 / audio_s
    return {
        "clips": n,
        "audio_s_per_clip": round(audio_s / n, 2),
        "project_s_per_clip": round(tot["project_s"] / n, 4),
        "naive_s_per_clip": round(tot["naive_s"] / n, 4),
        "speedup": round(tot["naive_s"] / tot["project_s"], 2),
        "load_s_per_clip": round(tot["load_s"] / n, 4),
        "project_features_s_per_clip": round(tot["features_s"] / n, 4),
        "naive_features_s_per_clip": round((tot["naive_s"] - tot["naive_load_s"]) / n, 4),
        "features_speedup": round((tot["naive_s"] - tot["naive_load_s"]) / max(tot["features_s"], 1e-9), 2),
        "backbone_s_per_clip": round(tot["backbone_s"] / n, 4),
        "allin_s_per_clip": round(tot["allin_s"] / n, 4),
        "load_s_per_30s_clip": round(per30 * tot["load_s"], 4),
        "project_features_s_per_30s_clip": round(per30 * tot["features_s"], 4),
        "backbone_s_per_30s_clip": round(per30 * tot["backbone_s"], 4),
        "project_s_per_30s_clip": round(per30 * tot["project_s"], 4),
        "allin_s_per_30s_clip": round(per30 * tot["allin_s"], 4),
        "naive_s_per_30s_clip": round(per30 * tot["naive_s"], 4),
        "project_wall_s_per_clip": round(sum(r["project_wall_s"] for r in rows) / n, 4),
        "allin_wall_s_per_clip": round(sum(r["allin_wall_s"] for r in rows) / n, 4),
        "naive_wall_s_per_clip": round(sum(r["naive_wall_s"] for r in rows) / n, 4),
    }


def _report(*, rows: list[dict], failed: list[dict], duration: float, threads: int) -> dict:
    out: dict = _summary(rows)
    n = len(rows)
    out["naive_stage_s_per_clip"] = {
        name: round(sum(r["stage_s"][name] for r in rows) / n, 4) for name, _ in NAIVE_STAGES
    }
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    out["groups"] = {g: _summary(rs) for g, rs in sorted(groups.items())}
    out["duration_s"] = duration
    out["threads"] = threads
    out["clock"] = "process CPU seconds (time.process_time); *_wall_* are wall-clock seconds"
    out["cpu_count"] = os.cpu_count()
    out["failed"] = failed
    allin_met = bool(out["allin_s_per_30s_clip"] <= GOAL_ALLIN_S_PER_30S_CLIP)
    speedup_met = bool(out["speedup"] >= GOAL_SPEEDUP)
    out["goal"] = {
        "allin_s_per_30s_clip": GOAL_ALLIN_S_PER_30S_CLIP, "allin_met": allin_met,
        "speedup": GOAL_SPEEDUP, "speedup_met": speedup_met, "met": allin_met and speedup_met,
    }
    out["backbone"] = backbone.BACKBONE_VERSION
    out["per_clip"] = [
        {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "stage_s"} for r in rows
    ]
    return out
