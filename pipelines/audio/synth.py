"""MIDI → audio in-process with libfluidsynth (pyfluidsynth).

Every clip is rendered on a fresh synthesizer, so a clip sounds the same whatever was rendered
before it in the process; a per-process holder keeps the soundfont loaded (FluidSynth's sample
cache), so a fresh synthesizer costs only its set-up. Same engine, soundfont, gain, reverb and
chorus off as the CLI path; float output (no dither, whose noise table depends on the C library's
``rand()`` state); linear sample interpolation (the CLI keeps FluidSynth's default).
"""

import ctypes
import os
from pathlib import Path

import numpy as np

GAIN = 0.7
TAIL_S = 1.0  # rendered after the last event so releases ring out
FLUID_INTERP_LINEAR = 1

_holder = None  # a synthesizer that keeps the soundfont's samples cached for the process
_holder_key: str | None = None


def available() -> bool:
    try:
        import fluidsynth  # noqa: F401
        import mido  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def _load(soundfont: Path, sample_rate: int):
    import fluidsynth

    synth = fluidsynth.Synth(gain=GAIN, samplerate=float(sample_rate))
    synth.setting("synth.reverb.active", 0)
    synth.setting("synth.chorus.active", 0)
    synth.setting("synth.cpu-cores", 1)
    _linear_interpolation(synth)
    sfid = synth.sfload(str(soundfont))
    if sfid < 0:
        synth.delete()
        raise RuntimeError(f"fluidsynth could not load soundfont {soundfont}")
    for channel in range(16):
        synth.program_select(channel, sfid, 128 if channel == 9 else 0, 0)
    return synth


def _fresh_synth(soundfont: Path, sample_rate: int):
    """A synthesizer in its initial state; the holder keeps the soundfont cached between clips."""
    global _holder, _holder_key
    if _holder is None or _holder_key != str(soundfont):
        if _holder is not None:
            _holder.delete()
        _holder, _holder_key = _load(soundfont, sample_rate), str(soundfont)
    return _load(soundfont, sample_rate)


def _fl_function(name: str, argtypes: list, restype):
    import fluidsynth

    fn = getattr(getattr(fluidsynth, "_fl", None), name, None)
    if fn is not None:
        fn.argtypes, fn.restype = argtypes, restype
    return fn


def _linear_interpolation(synth) -> None:
    """Linear sample interpolation on every channel (FluidSynth's default is 4th order): faster to
    render, inaudible for analysis at 22 kHz. Skipped if the binding lacks the call."""
    fn = _fl_function("fluid_synth_set_interp_method", [ctypes.c_void_p, ctypes.c_int, ctypes.c_int], ctypes.c_int)
    if fn is not None:
        fn(synth.synth, -1, FLUID_INTERP_LINEAR)


def _samples(synth, frames: int) -> np.ndarray:
    """The next ``frames`` stereo frames as float32 (frames, 2) in [-1, 1] (no dither)."""
    fn = _fl_function(
        "fluid_synth_write_float",
        [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
         ctypes.c_int, ctypes.c_int],
        ctypes.c_int,
    )
    buf = np.zeros((frames, 2), dtype=np.float32)
    if fn(synth.synth, frames, buf.ctypes.data, 0, 2, buf.ctypes.data, 1, 2) != 0:
        raise RuntimeError("fluid_synth_write_float failed")
    return buf


def _silence_all(synth) -> None:
    for channel in range(16):
        synth.cc(channel, 64, 0)  # sustain pedal up
        synth.cc(channel, 123, 0)  # all notes off


def synthesize(*, midi_path: Path, soundfont: Path, sample_rate: int = 22050) -> np.ndarray:
    """Render ``midi_path`` → mono float32 samples in [-1, 1] at ``sample_rate``. Shape (n,)."""
    import mido

    synth = _fresh_synth(Path(soundfont), sample_rate)
    try:
        chunks: list[np.ndarray] = []
        midi = mido.MidiFile(str(midi_path))
        for msg in midi:  # iteration yields messages with delta times in seconds (tempo applied)
            frames = int(round(msg.time * sample_rate))
            if frames > 0:
                chunks.append(_samples(synth, frames))
            if msg.is_meta:
                continue
            kind = msg.type
            if kind == "note_on":
                synth.noteon(msg.channel, msg.note, msg.velocity)
            elif kind == "note_off":
                synth.noteoff(msg.channel, msg.note)
            elif kind == "control_change":
                synth.cc(msg.channel, msg.control, msg.value)
            elif kind == "program_change":
                synth.program_change(msg.channel, msg.program)
            elif kind == "pitchwheel":
                synth.pitch_bend(msg.channel, msg.pitch)
        _silence_all(synth)
        chunks.append(_samples(synth, int(sample_rate * TAIL_S)))
    finally:
        synth.delete()
    stereo = np.concatenate(chunks)
    if stereo.shape[0] <= int(sample_rate * TAIL_S):
        raise RuntimeError(f"{Path(midi_path).name} has no playable events")
    mono = stereo.mean(axis=1)
    peak = float(np.max(np.abs(mono)))
    return mono / peak if peak > 1.0 else mono


def worker_init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
