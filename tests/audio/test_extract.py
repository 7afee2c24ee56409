"""``extract_many``: one row per input in input order (librosa features and backbone outputs), a bad
file isolated as an error row."""

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.audio.backbone import BACKBONE_COLUMNS, EMBED_DIM, backbone_outputs
from pipelines.audio.extract import EXTRACT_S, extract_many, warmup
from pipelines.audio.features import FEATURE_COLUMNS, extract_features, load_clip
from pipelines.schema import AUDIO_ERROR, TRACK_ID
from tests.audio.clips import OPUS, music_ogg, needs_audio


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    warmup()


@needs_audio
def test_extract_many_isolates_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.ogg"
    bad.write_bytes(b"OggS" + os.urandom(2048))  # looks like Ogg, decodes as nothing
    items = [("ogg", str(music_ogg())), ("bad", str(bad)), ("opus", str(OPUS[0]))]
    df = extract_many(items=items, workers=2, duration=10.0)
    assert df.height == 3 and df[TRACK_ID].to_list() == ["ogg", "bad", "opus"]
    assert all(df.schema[c] == pl.Float64 for c in FEATURE_COLUMNS)
    ok = df.filter(pl.col(AUDIO_ERROR).is_null())
    assert ok[TRACK_ID].to_list() == ["ogg", "opus"]
    assert ok.select(FEATURE_COLUMNS).null_count().sum_horizontal().item() == 0
    bad_row = df.filter(pl.col(TRACK_ID) == "bad")
    assert bad_row[AUDIO_ERROR].item()
    assert bad_row.select(FEATURE_COLUMNS).null_count().sum_horizontal().item() == len(FEATURE_COLUMNS)
    assert all(df.schema[c] == pl.List(pl.Float32) for c in BACKBONE_COLUMNS)
    assert bad_row.select(BACKBONE_COLUMNS).null_count().sum_horizontal().item() == len(BACKBONE_COLUMNS)
    widths = {"msd_tags": 50, "mtt_tags": 50, "msd_embedding": EMBED_DIM, "mtt_embedding": EMBED_DIM}
    assert all(ok[c].list.len().to_list() == [widths[c]] * 2 for c in BACKBONE_COLUMNS)
    assert ok["mtt_tags"][0].to_list() != ok["mtt_tags"][1].to_list()


@needs_audio
def test_extract_many_in_process_matches_extract_features() -> None:
    path = music_ogg()
    df = extract_many(items=[("a", str(path)), ("missing", "/nonexistent/x.ogg")], workers=1, duration=10.0)
    direct = extract_features(path=path, duration=10.0)
    row = df.row(0, named=True)
    assert row[AUDIO_ERROR] is None and row[EXTRACT_S] > 0
    assert all(row[c] == pytest.approx(direct[c]) for c in FEATURE_COLUMNS)
    expected = backbone_outputs(*load_clip(path=path, duration=10.0))
    assert all(np.array_equal(np.array(row[c], dtype=np.float32), expected[c]) for c in BACKBONE_COLUMNS)
    assert df.row(1, named=True)[AUDIO_ERROR] is not None
    assert all(df.row(1, named=True)[c] is None for c in BACKBONE_COLUMNS)
