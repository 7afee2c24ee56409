"""bench-audio: project extractor vs the naive librosa baseline, on real bundled clips."""

import json
import os
from pathlib import Path

os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[2] / ".numba_cache"))

import pytest

from bench import audio as audiobench
from moodscape.cli import main
from pipelines.audio.backbone import BACKBONE_VERSION

REPO_AUDIO = Path(__file__).resolve().parents[2] / "data" / "audio"
SHARED_AUDIO = Path("/work/shared/data/open/audio")
AUDIO_ROOT = REPO_AUDIO if REPO_AUDIO.is_dir() else SHARED_AUDIO
OGG = AUDIO_ROOT / "librosa" / "Kevin_MacLeod_-_Vibe_Ace.ogg"
OPUS = sorted((AUDIO_ROOT / "immich" / "tracks").glob("*/*.opus"))
needs_audio = pytest.mark.skipif(not (OGG.is_file() and OPUS), reason="bundled librosa/immich audio absent")


@needs_audio
def test_collect_clips_expands_folders_skips_hidden_and_rejects_missing(tmp_path: Path) -> None:
    folder = OPUS[0].parent
    clips = audiobench.collect_clips(paths=[folder, OGG, OGG])
    assert OGG.resolve() in clips and clips.count(OGG.resolve()) == 1
    assert set(folder.glob("*.opus")) <= {c for c in clips}
    hidden = tmp_path / ".render-x"
    hidden.mkdir()
    (hidden / "half.ogg").write_bytes(OGG.read_bytes())
    (tmp_path / "notes.txt").write_text("not audio")
    assert audiobench.collect_clips(paths=[tmp_path]) == []
    with pytest.raises(FileNotFoundError):
        audiobench.collect_clips(paths=[tmp_path / "nope"])


@needs_audio
def test_bench_cli_writes_report_and_names_failed_clips(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "in" / "broken.ogg"
    bad.parent.mkdir()
    bad.write_bytes(b"OggS" + os.urandom(1024))
    code = main(["bench-audio", str(OGG), str(OPUS[0]), str(bad), "--out", str(tmp_path / "out"),
                 "--duration", "8", "--quiet"])
    assert code == 0
    report = json.loads((tmp_path / "out" / "bench_audio.json").read_text())
    printed = json.loads(capsys.readouterr().out)
    assert printed["speedup"] == report["speedup"]
    assert report["clips"] == 2 and len(report["failed"]) == 1 and "broken.ogg" in report["failed"][0]["path"]
    assert report["speedup"] == pytest.approx(report["naive_s_per_clip"] / report["project_s_per_clip"], rel=0.01)
    assert set(report["naive_stage_s_per_clip"]) == {n for n, _ in audiobench.NAIVE_STAGES}
    assert report["audio_s_per_clip"] == pytest.approx(8.0, abs=0.1)
    parts = report["load_s_per_clip"] + report["project_features_s_per_clip"] + report["backbone_s_per_clip"]
    assert report["backbone_s_per_clip"] > 0 and report["allin_s_per_clip"] == pytest.approx(parts, abs=5e-4)
    assert report["allin_s_per_clip"] == pytest.approx(
        report["project_s_per_clip"] + report["backbone_s_per_clip"], abs=5e-4)
    assert report["backbone"] == BACKBONE_VERSION
    assert report["goal"]["met"] == (report["goal"]["allin_met"] and report["goal"]["speedup_met"])


def test_bench_cli_without_audio_exits_2(tmp_path: Path) -> None:
    assert main(["bench-audio", str(tmp_path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
