"""The content-keyed extraction cache: hits by file and version, list columns through Parquet."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.audio.backbone import BACKBONE_COLUMNS
from pipelines.audio.cache import extract_with_cache
from pipelines.audio.extract import extract_many
from pipelines.schema import AUDIO_ERROR, TRACK_ID
from tests.audio.clips import OGG, SHORT, needs_audio


class _Counting:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, items: Sequence[tuple[str, str]]) -> pl.DataFrame:
        self.calls.append([t for t, _ in items])
        return extract_many(items=items, workers=1, duration=4.0)


@needs_audio
def test_cache_serves_unchanged_files_with_their_backbone_lists(tmp_path: Path) -> None:
    cache = tmp_path / "cache.parquet"
    music = next(p for p in OGG if p != SHORT)
    items = [("speech", str(SHORT)), ("music", str(music)), ("gone", str(tmp_path / "missing.ogg"))]
    extract = _Counting()
    first, stats = extract_with_cache(items=items, cache_path=cache, extract=extract)
    assert stats == {"requested": 3, "cache_hits": 0, "extracted": 3}
    second, stats = extract_with_cache(items=items, cache_path=cache, extract=extract)
    assert stats == {"requested": 3, "cache_hits": 2, "extracted": 1}
    assert extract.calls == [["speech", "music", "gone"], ["gone"]]  # the failed file is retried
    for c in BACKBONE_COLUMNS:
        assert second.schema[c] == pl.List(pl.Float32)
        a = first.filter(pl.col(TRACK_ID) == "music")[c].item().to_numpy()
        b = second.filter(pl.col(TRACK_ID) == "music")[c].item().to_numpy()
        assert a.size in (50, 200) and np.array_equal(a, b)
    assert second.filter(pl.col(TRACK_ID) == "gone")[AUDIO_ERROR].item()


@needs_audio
def test_cache_of_another_version_is_extracted_again_and_replaced(tmp_path: Path) -> None:
    cache = tmp_path / "cache.parquet"
    items = [("speech", str(SHORT))]
    stale = extract_many(items=items, workers=1, duration=4.0).drop(*BACKBONE_COLUMNS)
    stale.with_columns(  # a cache written before the backbone columns and versions existed
        pl.lit(str(SHORT.resolve())).alias("_path"), pl.lit(SHORT.stat().st_size).alias("_size"),
        pl.lit(SHORT.stat().st_mtime_ns).alias("_mtime_ns"),
    ).write_parquet(cache)
    extract = _Counting()
    got, stats = extract_with_cache(items=items, cache_path=cache, extract=extract)
    assert stats["extracted"] == 1 and got["msd_tags"].list.len().item() == 50
    _, stats = extract_with_cache(items=items, cache_path=cache, extract=extract, version="next")
    assert stats["extracted"] == 1 and extract.calls == [["speech"], ["speech"]]
    assert pl.read_parquet(cache)["_version"].to_list() == ["next"]
