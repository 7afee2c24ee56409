"""Audio features on real clips (bundled librosa / immich audio) and on honestly synthesized signals."""

from pathlib import Path

import librosa
import numpy as np
import pyloudnorm
import pytest

from pipelines.audio import features as audio
from pipelines.audio.extract import extract_many, warmup
from tests.audio.clips import MUSIC, OPUS, SHORT, music_ogg, needs_audio

SR = audio.SR

REQUIRED = (
    "tempo", "onset_rate", "beat_regularity", "rms_mean", "rms_std", "rms_low_energy_ratio",
    "zcr_mean", "zcr_std", "spectral_centroid_mean", "spectral_rolloff_mean",
    "spectral_flatness_mean", "spectral_flux_mean", "chroma_std", "loudness_lufs",
    "dynamic_range_db", "key", "mode", "key_strength", *(f"mfcc_{i}_mean" for i in range(13)),
)


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    warmup()


def test_feature_columns_contract() -> None:
    assert 60 <= len(audio.FEATURE_COLUMNS) <= 80
    assert len(set(audio.FEATURE_COLUMNS)) == len(audio.FEATURE_COLUMNS)
    missing = [c for c in REQUIRED if c not in audio.FEATURE_COLUMNS]
    assert not missing


@pytest.mark.parametrize("bpm", [60.0, 120.0, 150.0])
def test_click_track_tempo_within_two_percent(bpm: float) -> None:
    y = librosa.clicks(times=np.arange(0.0, 30.0, 60.0 / bpm), sr=SR, length=30 * SR)
    feats = audio.features_from_signal(y=y, sr=SR)
    assert feats["tempo"] == pytest.approx(bpm, rel=0.02)
    assert feats["beat_regularity"] > 0.9  # a metronome is regular
    assert feats["onset_rate"] == pytest.approx(bpm / 60.0, rel=0.1)


def test_tempo_of_a_file_roundtrip(tmp_path: Path) -> None:
    """The full path (write → load → features) keeps tempo accuracy, not just the in-memory one."""
    import soundfile as sf

    y = librosa.clicks(times=np.arange(0.0, 30.0, 0.5), sr=SR, length=30 * SR)
    path = tmp_path / "click120.ogg"
    sf.write(path, y, SR, format="OGG", subtype="VORBIS")
    assert audio.extract_features(path=path)["tempo"] == pytest.approx(120.0, rel=0.02)


def _tone(freqs: list[float], seconds: float) -> np.ndarray:
    """A piano-ish note/chord: fundamental plus 3 decaying harmonics, with an exponential decay."""
    t = np.arange(int(seconds * SR)) / SR
    env = np.exp(-2.0 * t)
    out = np.zeros_like(t)
    for f in freqs:
        for h, amp in ((1, 1.0), (2, 0.4), (3, 0.2), (4, 0.1)):
            out += amp * np.sin(2 * np.pi * f * h * t)
    return (0.1 * env * out).astype(np.float32)


def _midi_hz(note: int) -> float:
    return float(librosa.midi_to_hz(note))


def test_c_major_scale_and_chords_give_c_major() -> None:
    scale = [60, 62, 64, 65, 67, 69, 71, 72]  # C4 .. C5
    parts = [_tone([_midi_hz(n)], 0.5) for n in scale]
    chords = ([48, 60, 64, 67], [43, 59, 62, 67], [48, 60, 64, 67])  # I - V - I
    parts += [_tone([_midi_hz(n) for n in chord], 1.0) for chord in chords]
    feats = audio.features_from_signal(y=np.concatenate(parts), sr=SR)
    assert (feats["key"], feats["mode"]) == (0.0, 1.0)
    assert feats["key_strength"] > 0.6


def test_a_minor_chords_give_a_minor() -> None:
    # i - iv - V - i in A harmonic minor (the G# separates it from C major).
    chords = ([45, 57, 60, 64], [50, 57, 62, 65], [52, 56, 59, 64], [45, 57, 60, 64])
    y = np.concatenate([_tone([_midi_hz(n) for n in c], 1.5) for c in chords])
    feats = audio.features_from_signal(y=y, sr=SR)
    assert (feats["key"], feats["mode"]) == (9.0, 0.0)


def test_silence_is_finite() -> None:
    feats = audio.features_from_signal(y=np.zeros(5 * SR, dtype=np.float32), sr=SR)
    assert set(feats) == set(audio.FEATURE_COLUMNS)
    assert all(np.isfinite(v) for v in feats.values())
    assert feats["tempo"] == 0.0 and feats["key_strength"] == 0.0
    assert feats["loudness_lufs"] == -70.0 and feats["rms_mean"] == 0.0


@needs_audio
@pytest.mark.parametrize("kind", ["ogg", "opus"])
def test_real_file_gives_finite_vector(kind: str) -> None:
    path = music_ogg() if kind == "ogg" else OPUS[0]
    feats = audio.extract_features(path=path)
    vec = np.array([feats[c] for c in audio.FEATURE_COLUMNS])
    assert vec.shape[0] >= 50 and np.all(np.isfinite(vec))
    assert 30.0 <= feats["tempo"] <= 300.0
    assert -40.0 < feats["loudness_lufs"] < 0.0
    assert feats["key"] in set(map(float, range(12))) and feats["mode"] in (0.0, 1.0)
    assert feats["dynamic_range_db"] > 0.0 and 0.0 < feats["rms_low_energy_ratio"] < 1.0


@needs_audio
def test_hand_written_features_match_reference_implementations() -> None:
    """The vectorised LUFS / ZCR / spectral shape must equal pyloudnorm's and librosa's own."""
    y, _ = librosa.load(music_ogg(), sr=SR, duration=30.0)
    feats = audio.features_from_signal(y=y, sr=SR)
    ref_lufs = pyloudnorm.Meter(SR).integrated_loudness(y.astype(np.float64))
    assert feats["loudness_lufs"] == pytest.approx(ref_lufs, abs=1e-6)
    S = np.abs(librosa.stft(y, n_fft=2048, hop_length=512))
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=2048, hop_length=512)[0]
    assert feats["zcr_mean"] == pytest.approx(zcr.mean(), rel=1e-6)
    assert feats["zcr_std"] == pytest.approx(zcr.std(), rel=1e-6)
    ref = {
        "spectral_centroid": librosa.feature.spectral_centroid(S=S, sr=SR)[0],
        "spectral_bandwidth": librosa.feature.spectral_bandwidth(S=S, sr=SR)[0],
        "spectral_rolloff": librosa.feature.spectral_rolloff(S=S, sr=SR)[0],
        "spectral_flatness": librosa.feature.spectral_flatness(S=S)[0],
    }
    for name, values in ref.items():
        assert feats[f"{name}_mean"] == pytest.approx(float(values.mean()), rel=1e-4), name
        assert feats[f"{name}_std"] == pytest.approx(float(values.std()), rel=1e-3), name


@needs_audio
def test_offset_moves_the_analysed_window() -> None:
    direct = audio.extract_features(path=MUSIC, offset=5.0, duration=5.0)
    start = audio.extract_features(path=MUSIC, offset=0.0, duration=5.0)
    df = extract_many(items=[("m", str(MUSIC))], workers=1, duration=5.0, offset=5.0)
    assert all(df[c][0] == pytest.approx(direct[c]) for c in audio.FEATURE_COLUMNS)
    assert any(direct[c] != pytest.approx(start[c]) for c in audio.FEATURE_COLUMNS)
    # an offset past the end of a short clip analyses its last `duration` seconds instead of nothing
    total = librosa.get_duration(path=str(SHORT))
    assert audio.effective_offset(path=SHORT, offset=60.0, duration=5.0) == pytest.approx(total - 5.0)
    assert audio.effective_offset(path=SHORT, offset=60.0, duration=30.0) == 0.0
    assert audio.extract_features(path=SHORT, offset=60.0, duration=30.0) == pytest.approx(
        audio.extract_features(path=SHORT, duration=30.0))
