"""MIDI → audio with FluidSynth (EMOPIA piano clips become analysable audio).

``render_midi`` renders one file with the FluidSynth CLI to mono Ogg Vorbis (atomically). ``render_many``
does a batch with the in-process synthesizer of ``pipelines.audio.synth`` in a process pool (the CLI
per clip when pyfluidsynth is missing or a worker dies) and returns one row per clip, errors as text.
Renders are byte-identical across runs: float synthesis (no dither), a fresh synthesizer per clip,
a fixed Ogg stream serial number. Each file carries its render key (engine and settings) in its
Vorbis comment; a re-run skips an output newer than its MIDI whose key matches.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import zlib
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
    """FluidSynth or the soundfont is missing: nothing can be rendered."""


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


# Reverb and chorus off: faster rendering, and a dry piano keeps loudness/brightness cues
# (what EMOPIA's arousal lives on) free of room effects. Training and serving use the same render.
# Float output: FluidSynth dithers 16-bit output with a noise table drawn from the C library's
# rand(), which differs between processes; float output is not dithered.
CLI_SETTINGS = (
    "-o", "synth.reverb.active=0", "-o", "synth.chorus.active=0", "-o", "synth.cpu-cores=1", "-O", "float",
)
VORBIS_BLOCK = 1 << 15  # frames per write call
OGG_SERIAL = 0x6D6F6F64  # libsndfile picks a time-seeded random stream serial; every render uses this one
RENDER_FORMAT = 2  # bumped when the rendering changes in a way the settings below do not show


def render_key(*, engine: str, sample_rate: int, soundfont: Path) -> str:
    """The key of a render: engine ("cli" or "synth"), its settings and the soundfont file."""
    from pipelines.audio import synth

    sf_path = Path(soundfont)
    sf_stat = sf_path.stat()
    settings = CLI_SETTINGS if engine == "cli" else ("linear-interp", f"tail={synth.TAIL_S}")
    text = "|".join(map(str, (
        RENDER_FORMAT, engine, sample_rate, GAIN, *settings, sf_path.name, sf_stat.st_size,
    )))
    return f"moodscape-render {engine} {hashlib.sha1(text.encode()).hexdigest()[:16]}"


def _stored_key(path: Path) -> str | None:
    try:
        with sf.SoundFile(path) as fh:
            return fh.comment or None
    except (sf.LibsndfileError, RuntimeError, OSError):
        return None


def _is_fresh(out_path: Path, midi_path: Path, key: str) -> bool:
    return (
        out_path.is_file() and out_path.stat().st_size > 0
        and out_path.stat().st_mtime >= midi_path.stat().st_mtime
        and _stored_key(out_path) == key
    )


_BIT_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _ogg_crc(page: bytes) -> int:
    """Ogg's page checksum: CRC-32, polynomial 0x04C11DB7, MSB first, initial value 0, no final xor.

    zlib's CRC-32 is the same polynomial bit-reflected: fed bit-reversed bytes, with its initial and
    final inversions undone, its result bit-reversed is Ogg's.
    """
    raw = zlib.crc32(page.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{raw:032b}"[::-1], 2)


def _set_ogg_serial(path: Path, serial: int = OGG_SERIAL) -> None:
    """Rewrite every page's stream serial number to ``serial`` (and its checksum), in place."""
    data = bytearray(path.read_bytes())
    pos = 0
    while pos < len(data):
        if data[pos:pos + 4] != b"OggS" or pos + 27 > len(data):
            raise RuntimeError(f"{path.name}: not an Ogg page at byte {pos}")
        n_segments = data[pos + 26]
        end = pos + 27 + n_segments + sum(data[pos + 27:pos + 27 + n_segments])
        data[pos + 14:pos + 18] = serial.to_bytes(4, "little")
        data[pos + 22:pos + 26] = b"\0\0\0\0"
        data[pos + 22:pos + 26] = _ogg_crc(bytes(data[pos:end])).to_bytes(4, "little")
        pos = end
    path.write_bytes(bytes(data))


def _write_vorbis(path: Path, mono: np.ndarray, sr: int, key: str) -> None:
    """Write mono float audio as Ogg Vorbis in blocks, ``key`` as its comment, with the fixed serial.

    libsndfile's Vorbis encoder segfaults on some long single-call writes (seen on EMOPIA clips,
    and reported upstream for python-soundfile); block-wise writes avoid that path.
    """
    with sf.SoundFile(path, mode="w", samplerate=sr, channels=1, format="OGG", subtype="VORBIS") as fh:
        fh.comment = key
        for start in range(0, mono.shape[0], VORBIS_BLOCK):
            fh.write(mono[start:start + VORBIS_BLOCK])
    _set_ogg_serial(path)


def render_midi(
    *,
    midi_path: Path,
    out_path: Path,
    sample_rate: int = 22050,
    soundfont: Path = DEFAULT_SOUNDFONT,
) -> Path:
    """Render ``midi_path`` to mono Ogg Vorbis at ``out_path`` (``sample_rate`` Hz); returns ``out_path``.

    FluidSynth writes a temporary float WAV (its own Ogg output is stereo), downmixed to mono and
    re-encoded with soundfile, then moved into place atomically. Skips the work when ``out_path``
    already exists, is at least as new as the MIDI and carries this render's key. Raises ``RenderUnavailable`` without
    FluidSynth/soundfont, ``FileNotFoundError`` for a missing MIDI and ``RuntimeError`` (with
    FluidSynth's message) when the MIDI cannot be rendered.
    """
    midi_path, out_path = Path(midi_path), Path(out_path)
    exe = check_renderer(soundfont=soundfont)
    if not midi_path.is_file():
        raise FileNotFoundError(f"MIDI file not found: {midi_path}")
    key = render_key(engine="cli", sample_rate=sample_rate, soundfont=soundfont)
    if _is_fresh(out_path, midi_path, key):
        return out_path
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".render-", dir=out_path.parent) as tmp:
        wav = Path(tmp) / "render.wav"
        cmd = [exe, "-ni", "-q", "-g", str(GAIN), *CLI_SETTINGS, "-F", str(wav), "-T", "wav", "-r", str(sample_rate),
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
        _write_vorbis(encoded, mono, sr, key)
        os.replace(encoded, out_path)  # same folder → atomic rename
    return out_path


def _render_in_process(
    clip_id: str, midi: str, out_path: str, sample_rate: int, soundfont: str
) -> tuple[str, str | None, str | None, float]:
    """One clip with the in-process synthesizer (see ``pipelines.audio.synth``)."""
    from pipelines.audio import synth

    start = time.perf_counter()
    out = Path(out_path)
    try:
        if not Path(midi).is_file():
            raise FileNotFoundError(f"MIDI file not found: {midi}")
        key = render_key(engine="synth", sample_rate=sample_rate, soundfont=Path(soundfont))
        if not _is_fresh(out, Path(midi), key):
            mono = synth.synthesize(midi_path=Path(midi), soundfont=Path(soundfont), sample_rate=sample_rate)
            out.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".ogg", dir=out.parent)
            os.close(fd)
            try:
                _write_vorbis(Path(tmp), mono, sample_rate, key)
                os.replace(tmp, out)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return clip_id, str(out), None, time.perf_counter() - start
    except Exception as exc:  # one bad MIDI must not fail the batch
        return clip_id, None, f"{type(exc).__name__}: {exc}"[:500], time.perf_counter() - start


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
    items = [(str(c), Path(m)) for c, m in items]

    def one(item: tuple[str, Path]) -> tuple[str, str | None, str | None, float]:
        clip_id, midi = item
        start = time.perf_counter()
        try:
            path = render_midi(midi_path=Path(midi), out_path=out_dir / f"{clip_id}.ogg",
                               sample_rate=sample_rate, soundfont=soundfont)
            return str(clip_id), str(path), None, time.perf_counter() - start
        except Exception as exc:  # one bad MIDI must not fail the batch
            return str(clip_id), None, f"{type(exc).__name__}: {exc}"[:500], time.perf_counter() - start

    from pipelines.audio import synth

    if synth.available() and items:  # one engine whatever the batch size: the same clip, the same audio
        rows = _render_pool(items=items, out_dir=out_dir, workers=workers, progress=progress,
                            sample_rate=sample_rate, soundfont=soundfont, fallback=one)
    else:
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


def _render_pool(*, items, out_dir, workers, progress, sample_rate, soundfont, fallback) -> list[tuple]:
    """In-process synthesis in a process pool (soundfont loaded once per worker). A worker that
    dies (a native crash) only loses its unfinished clips, which are redone with the CLI path."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    from pipelines.audio import synth

    rows: dict[int, tuple] = {}
    bar = tqdm(total=len(items), disable=not progress, desc="render MIDI", unit="clip")
    try:
        ctx = get_context("forkserver")
        with ProcessPoolExecutor(max(1, workers), mp_context=ctx, initializer=synth.worker_init) as pool:
            futures = {
                pool.submit(
                    _render_in_process, clip, str(midi), str(out_dir / f"{clip}.ogg"), sample_rate, str(soundfont)
                ): i
                for i, (clip, midi) in enumerate(items)
            }
            for fut in as_completed(futures):
                try:
                    rows[futures[fut]] = fut.result()
                except BrokenProcessPool:
                    continue
                bar.update()
    except BrokenProcessPool:
        pass
    for i, item in enumerate(items):
        if i not in rows:
            rows[i] = fallback(item)
            bar.update()
    bar.close()
    return [rows[i] for i in range(len(items))]
