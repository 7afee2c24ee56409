"""MIDI → audio with the FluidSynth CLI (EMOPIA piano clips become analysable audio).

``render_midi`` renders one file to a temporary 16-bit WAV with ``fluidsynth -ni -q -g 0.7 -F``,
downmixes it to mono and re-encodes it as Ogg Vorbis with soundfile (~10× smaller than the WAV;
FluidSynth's own ``-T oga`` output is stereo), then moves it into place atomically. A re-run skips
any output newer than its MIDI. ``render_many`` does a batch on a thread pool (each render is a
subprocess) and returns one row per clip, with the error text instead of an exception.
"""

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
import soundfile as sf
from tqdm.auto import tqdm

from pipelines.schema import AUDIO_PATH

DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
CLIP_ID = "clip_id"
RENDER_ERROR = "render_error"
RENDER_S = "render_s"
GAIN = 0.7
TIMEOUT_S = 300.0


class RenderUnavailable(RuntimeError):
    """FluidSynth or the soundfont is missing: nothing can be rendered on this machine."""


def check_renderer(*, soundfont: Path = DEFAULT_SOUNDFONT) -> str:
    """Path of the ``fluidsynth`` executable; raises ``RenderUnavailable`` if it or ``soundfont`` is missing."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise RenderUnavailable("`fluidsynth` is not on PATH (Debian: apt-get install fluidsynth)")
    if not Path(soundfont).is_file():
        raise RenderUnavailable(
            f"soundfont {soundfont} not found (Debian: apt-get install fluid-soundfont-gm)"
        )
    return exe


def _is_fresh(out_path: Path, midi_path: Path) -> bool:
    return out_path.is_file() and out_path.stat().st_size > 0 and (
        out_path.stat().st_mtime >= midi_path.stat().st_mtime
    )


def render_midi(
    *,
    midi_path: Path,
    out_path: Path,
    sample_rate: int = 22050,
    soundfont: Path = DEFAULT_SOUNDFONT,
) -> Path:
    """Render ``midi_path`` to mono Ogg Vorbis at ``out_path`` (``sample_rate`` Hz); returns ``out_path``.

    Skips the work when ``out_path`` already exists and is at least as new as the MIDI. Raises
    ``RenderUnavailable`` without FluidSynth/soundfont, ``FileNotFoundError`` for a missing MIDI and
    ``RuntimeError`` (with FluidSynth's message) when the MIDI cannot be rendered.
    """
    midi_path, out_path = Path(midi_path), Path(out_path)
    exe = check_renderer(soundfont=soundfont)
    if not midi_path.is_file():
        raise FileNotFoundError(f"MIDI file not found: {midi_path}")
    if _is_fresh(out_path, midi_path):
        return out_path
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".render-", dir=out_path.parent) as tmp:
        wav = Path(tmp) / "render.wav"
        cmd = [exe, "-ni", "-q", "-g", str(GAIN), "-F", str(wav), "-T", "wav", "-r", str(sample_rate),
               str(soundfont), str(midi_path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        if proc.returncode != 0 or not wav.is_file() or wav.stat().st_size <= 44:
            message = " ".join((proc.stderr or proc.stdout or "").split())[:400]
            raise RuntimeError(f"fluidsynth failed (exit {proc.returncode}) on {midi_path.name}: {message}")
        y, sr = sf.read(wav, dtype="float32", always_2d=True)  # (n, channels)
        if y.shape[0] == 0:
            raise RuntimeError(f"fluidsynth rendered no samples for {midi_path.name}")
        mono = y.mean(axis=1)
        peak = float(np.max(np.abs(mono)))
        if peak > 1.0:  # a mono downmix cannot clip, but keep Vorbis input in range regardless
            mono /= peak
        encoded = Path(tmp) / "render.ogg"
        sf.write(encoded, mono, sr, format="OGG", subtype="VORBIS")
        os.replace(encoded, out_path)  # same folder → atomic rename
    return out_path


def render_many(
    *,
    items: Sequence[tuple[str, Path]],
    out_dir: Path,
    workers: int = 2,
    progress: bool = False,
    sample_rate: int = 22050,
    soundfont: Path = DEFAULT_SOUNDFONT,
) -> pl.DataFrame:
    """Render ``(clip_id, midi_path)`` pairs to ``out_dir/<clip_id>.ogg``.

    Returns one row per item, in input order: ``clip_id`` (String), ``audio_path`` (String, null on
    failure), ``render_error`` (String, null when OK), ``render_s`` (Float64, wall seconds). A
    failing clip becomes an error row; only a missing FluidSynth or soundfont raises
    (``RenderUnavailable``), before any work starts.
    """
    check_renderer(soundfont=soundfont)
    out_dir = Path(out_dir)

    def one(item: tuple[str, Path]) -> tuple[str, str | None, str | None, float]:
        clip_id, midi = item
        start = time.perf_counter()
        try:
            path = render_midi(midi_path=Path(midi), out_path=out_dir / f"{clip_id}.ogg",
                               sample_rate=sample_rate, soundfont=soundfont)
            return str(clip_id), str(path), None, time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001 - one bad MIDI must not fail the batch
            return str(clip_id), None, f"{type(exc).__name__}: {exc}"[:500], time.perf_counter() - start

    with ThreadPoolExecutor(max(1, workers)) as pool:
        rows = list(tqdm(pool.map(one, items), total=len(items), disable=not progress,
                         desc="render MIDI", unit="clip"))
    return pl.DataFrame(
        {
            CLIP_ID: [r[0] for r in rows],
            AUDIO_PATH: [r[1] for r in rows],
            RENDER_ERROR: [r[2] for r in rows],
            RENDER_S: [r[3] for r in rows],
        },
        schema={CLIP_ID: pl.String, AUDIO_PATH: pl.String, RENDER_ERROR: pl.String, RENDER_S: pl.Float64},
    )
