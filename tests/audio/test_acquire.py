"""Which audio a run analyses: local files, live links as download candidates, offline runs."""

import polars as pl

from pipelines import schema as S
from pipelines.audio.acquire import acquire_audio, feature_cache_name, fetch_candidates


def _raw() -> pl.DataFrame:
    return pl.DataFrame(
        {
            S.TRACK_ID: ["local", "valid", "moved", "dead", "nourl"],
            S.AUDIO_PATH: ["/a.ogg", None, None, None, None],
            S.PERMALINK_URL: ["http://h/l", "http://h/v.mp3", "http://h/m", "http://h/d", None],
        }
    )


def _status() -> pl.DataFrame:
    return pl.DataFrame(
        {
            S.TRACK_ID: ["local", "valid", "moved", "dead", "nourl"],
            S.URL_STATUS: ["VALID", "VALID", "MOVED", "DEAD", "UNKNOWN"],
            S.FINAL_URL: [None, None, "http://h/m2.ogg", None, None],
        }
    )


def test_fetch_candidates_are_live_links_without_local_audio() -> None:
    assert fetch_candidates(raw=_raw(), status=_status()) == [("valid", "http://h/v.mp3"), ("moved", "http://h/m2.ogg")]
    assert fetch_candidates(raw=_raw(), status=None) == []  # no link status yet: nothing is live


def test_offline_acquisition_downloads_nothing_and_says_why(tmp_path) -> None:
    got = acquire_audio(
        raw=_raw(),
        status=_status(),
        fetch_log=None,
        dest=tmp_path,
        offline=True,
        budget=10,
        max_bytes=1024,
        allow_hosts=frozenset(),
    )
    assert got.items == [("local", "/a.ogg")] and got.origin == {"local": "local"} and got.local == 1
    assert got.results == [] and got.fetch_log is None
    assert dict(zip(got.fetch_table[S.TRACK_ID], got.fetch_table[S.REASON])) == {"valid": "offline", "moved": "offline"}


def test_feature_cache_is_one_table_per_offset() -> None:
    assert feature_cache_name(0.0) == "audio_feature_cache"
    assert feature_cache_name(30.0) == "audio_feature_cache_offset_30s" != feature_cache_name(12.5)
