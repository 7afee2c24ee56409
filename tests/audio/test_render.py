"""EMOPIA MIDI → mono Ogg Vorbis with FluidSynth (real EMOPIA clips; skipped without them)."""

import os
import shutil
import time
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from pipelines.audio import render
from pipelines.schema import AUDIO_PATH
from pipelines.store import DATA_DIR

REPO_MIDIS = DATA_DIR / "emopia" / "midis"
SHARED_MIDIS = Path("/work/shared/data/open/midi/emopia/midis")
MIDI_DIR = REPO_MIDIS if REPO_MIDIS.is_dir() else SHARED_MIDIS
MIDIS = sorted(MIDI_DIR.glob("*.mid"))[:2] if MIDI_DIR.is_dir() else []

pytestmark = [
    pytest.mark.skipif(len(MIDIS) < 2, reason="EMOPIA MIDI files not found"),
    pytest.mark.skipif(
        shutil.which("fluidsynth") is None or not render.DEFAULT_SOUNDFONT.is_file(),
        reason="fluidsynth or FluidR3_GM soundfont not installed",
    ),
]


def test_render_many_real_emopia_and_a_corrupt_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(os.urandom(512))
    items = [(m.stem, m) for m in MIDIS] + [("corrupt", corrupt), ("missing", tmp_path / "nope.mid")]
    df = render.render_many(items=items, out_dir=tmp_path / "out", workers=2)
    assert df[render.CLIP_ID].to_list() == [m.stem for m in MIDIS] + ["corrupt", "missing"]
    for row in df.head(2).iter_rows(named=True):
        assert row[render.RENDER_ERROR] is None, row
        path = Path(row[AUDIO_PATH])
        assert path.suffix == ".ogg" and path.stat().st_size > 0
        y, sr = librosa.load(path, sr=None, mono=False)
        assert sr == 22050 and y.ndim == 1  # mono at the requested rate
        assert len(y) / sr > 5.0
        assert float(np.sqrt(np.mean(y**2))) > 1e-3  # not silent
    for clip in ("corrupt", "missing"):
        row = df.filter(df[render.CLIP_ID] == clip).row(0, named=True)
        assert row[AUDIO_PATH] is None and row[render.RENDER_ERROR]
    assert not list((tmp_path / "out").glob(".*"))  # no temp leftovers


def test_render_midi_is_idempotent_and_rerenders_stale(tmp_path: Path) -> None:
    midi = tmp_path / MIDIS[0].name
    shutil.copy(MIDIS[0], midi)
    out = tmp_path / "a.ogg"
    render.render_midi(midi_path=midi, out_path=out)
    first = out.stat().st_mtime_ns
    time.sleep(0.02)
    render.render_midi(midi_path=midi, out_path=out)
    assert out.stat().st_mtime_ns == first  # fresh output: skipped
    future = time.time() + 5
    os.utime(midi, (future, future))  # MIDI now newer than its audio
    render.render_midi(midi_path=midi, out_path=out)
    assert out.stat().st_mtime_ns != first


def test_render_midi_twice_gives_identical_bytes(tmp_path: Path) -> None:
    a = render.render_midi(midi_path=MIDIS[0], out_path=tmp_path / "a.ogg")
    b = render.render_midi(midi_path=MIDIS[0], out_path=tmp_path / "b.ogg")
    assert a.read_bytes() == b.read_bytes()
    y, sr = sf.read(a)  # libogg checks every page's checksum while decoding
    assert sr == 22050 and len(y) / sr > 5.0
    with sf.SoundFile(a) as fh:
        assert fh.comment == render.render_key(engine="cli", sample_rate=22050, soundfont=render.DEFAULT_SOUNDFONT)


def test_render_many_is_byte_identical_whatever_the_order(tmp_path: Path) -> None:
    """One worker renders the clips in turn: a clip must not depend on the clip rendered before it."""
    items = [(m.stem, m) for m in MIDIS]
    first = render.render_many(items=items, out_dir=tmp_path / "a", workers=1)
    second = render.render_many(items=items[::-1], out_dir=tmp_path / "b", workers=1)
    assert first[render.RENDER_ERROR].null_count() == len(items)
    assert second[render.RENDER_ERROR].null_count() == len(items)
    for clip, _ in items:
        assert (tmp_path / "a" / f"{clip}.ogg").read_bytes() == (tmp_path / "b" / f"{clip}.ogg").read_bytes()


def test_an_output_with_another_render_key_is_rendered_again(tmp_path: Path) -> None:
    midi = tmp_path / MIDIS[0].name
    shutil.copy(MIDIS[0], midi)
    out = tmp_path / "a.ogg"
    render._write_vorbis(out, np.zeros(22050, dtype=np.float32), 22050, "moodscape-render old settings")
    render.render_midi(midi_path=midi, out_path=out)  # newer than the MIDI, but another key
    y, _ = sf.read(out)
    assert len(y) > 22050 * 5 and float(np.sqrt(np.mean(y ** 2))) > 1e-3


def test_ogg_checksum_matches_libogg(tmp_path: Path) -> None:
    """Pages written by libsndfile carry libogg's checksum; ours must reproduce it."""
    out = tmp_path / "x.ogg"
    with sf.SoundFile(out, mode="w", samplerate=22050, channels=1, format="OGG", subtype="VORBIS") as fh:
        fh.write(np.sin(np.arange(22050 * 3) * 0.05).astype(np.float32))
    data, pos, pages = out.read_bytes(), 0, 0
    while pos < len(data):
        n_seg = data[pos + 26]
        end = pos + 27 + n_seg + sum(data[pos + 27:pos + 27 + n_seg])
        page = bytearray(data[pos:end])
        stored = int.from_bytes(page[22:26], "little")
        page[22:26] = bytes(4)
        assert render._ogg_crc(bytes(page)) == stored
        pos, pages = end, pages + 1
    assert pages >= 2


def test_missing_soundfont_raises_clearly(tmp_path: Path) -> None:
    with pytest.raises(render.RenderUnavailable, match="soundfont"):
        render.render_many(items=[("x", MIDIS[0])], out_dir=tmp_path, soundfont=tmp_path / "none.sf2")


def test_in_process_synth_matches_the_cli_render(tmp_path: Path) -> None:
    """The long-lived synthesizer (render_many's path) and the CLI render the same clip to audio of
    about the same length and loudness (same engine, soundfont and gain; interpolation differs)."""
    from pipelines.audio import synth

    if not synth.available():
        pytest.skip("pyfluidsynth/mido not installed")
    midi = MIDIS[0]
    y_lib = synth.synthesize(midi_path=midi, soundfont=render.DEFAULT_SOUNDFONT, sample_rate=22050)
    cli = render.render_midi(midi_path=midi, out_path=tmp_path / "cli.ogg")
    y_cli, _ = librosa.load(cli, sr=22050, mono=True)
    assert abs(len(y_lib) - len(y_cli)) / 22050 < 2.5  # tails differ by at most a couple of seconds
    rms_lib, rms_cli = float(np.sqrt(np.mean(y_lib ** 2))), float(np.sqrt(np.mean(y_cli ** 2)))
    assert rms_lib > 1e-3 and 0.7 < rms_lib / rms_cli < 1.4
