"""MIDI → audio in-process with libfluidsynth (pyfluidsynth), the soundfont loaded once per process.

The FluidSynth CLI (``pipelines.audio.render.render_midi``) re-reads the GM soundfont for every clip;
a long-lived synthesizer does not. Same engine, soundfont, gain, reverb and chorus off as the CLI
path; linear sample interpolation (the CLI keeps FluidSynth's default).
"""

import os
from pathlib import Path

import numpy as np

GAIN = 0.7
TAIL_S = 1.0  # rendered after the last event so releases ring out

_synth = None
_synth_key: tuple[str, int] | None = None


def available() -> bool:
    try:
        import fluidsynth  # noqa: F401
        import mido  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def _get_synth(soundfont: Path, sample_rate: int):
    global _synth, _synth_key
    key = (str(soundfont), int(sample_rate))
    if _synth is None or _synth_key != key:
        import fluidsynth

        synth = fluidsynth.Synth(gain=GAIN, samplerate=float(sample_rate))
        synth.setting("synth.reverb.active", 0)
        synth.setting("synth.chorus.active", 0)
        _linear_interpolation(synth)
        sfid = synth.sfload(str(soundfont))
        if sfid < 0:
            raise RuntimeError(f"fluidsynth could not load soundfont {soundfont}")
        for channel in range(16):
            synth.program_select(channel, sfid, 128 if channel == 9 else 0, 0)
        _synth, _synth_key = synth, key
    return _synth


FLUID_INTERP_LINEAR = 1


def _linear_interpolation(synth) -> None:
    """Linear sample interpolation on every channel (FluidSynth's default is 4th order): faster to
    render, inaudible for analysis at 22 kHz. Skipped if the binding lacks the call."""
    import ctypes

    import fluidsynth

    fn = getattr(getattr(fluidsynth, "_fl", None), "fluid_synth_set_interp_method", None)
    if fn is None:
        return
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int
    fn(synth.synth, -1, FLUID_INTERP_LINEAR)


def _silence_all(synth) -> None:
    for channel in range(16):
        synth.cc(channel, 64, 0)  # sustain pedal up
        synth.cc(channel, 123, 0)  # all notes off


def synthesize(*, midi_path: Path, soundfont: Path, sample_rate: int = 22050) -> np.ndarray:
    """Render ``midi_path`` → mono float32 samples in [-1, 1] at ``sample_rate``. Shape (n,)."""
    import mido

    synth = _get_synth(Path(soundfont), sample_rate)
    _silence_all(synth)
    synth.get_samples(int(sample_rate * 0.05))  # flush voices from a previous clip
    for channel in range(16):
        synth.cc(channel, 121, 0)  # reset controllers
    chunks: list[np.ndarray] = []
    midi = mido.MidiFile(str(midi_path))
    for msg in midi:  # iteration yields messages with delta times in seconds (tempo applied)
        frames = int(round(msg.time * sample_rate))
        if frames > 0:
            chunks.append(np.asarray(synth.get_samples(frames)))
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
    chunks.append(np.asarray(synth.get_samples(int(sample_rate * TAIL_S))))
    stereo = np.concatenate(chunks).astype(np.float32).reshape(-1, 2)
    if stereo.shape[0] <= int(sample_rate * TAIL_S):
        raise RuntimeError(f"{Path(midi_path).name} has no playable events")
    mono = stereo.mean(axis=1) / 32768.0
    peak = float(np.max(np.abs(mono)))
    return mono / peak if peak > 1.0 else mono


def worker_init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
