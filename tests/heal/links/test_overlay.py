"""The availability overlay: which tracks it lists, and its file (atomic, versioned, validated)."""

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from pipelines import schema as S
from pipelines.heal.links.overlay import OVERLAY_SCHEMA, build_overlay, read_overlay, write_overlay
from pipelines.store import StoreLayout

AT = "2026-01-02T03:04:05+00:00"


def _status(rows: list[tuple[str, str, str, str | None]]) -> pl.DataFrame:
    """(track_id, url checked, status, final_url) → a current-status frame."""
    return pl.DataFrame(
        [{S.TRACK_ID: t, S.LINK_URL: u, S.URL_STATUS: s, S.FINAL_URL: f, S.REASON: None, S.CHECKED_AT: AT}
         for t, u, s, f in rows]
    )


def _served(rows: list[tuple[str, str, str | None]]) -> pl.DataFrame:
    """(track_id, permalink_url, url_status) → the published version's tracks."""
    return pl.DataFrame(rows, schema={S.TRACK_ID: pl.Utf8, S.PERMALINK_URL: pl.Utf8, S.URL_STATUS: pl.Utf8},
                        orient="row")


def test_lists_only_tracks_whose_availability_changed_at_the_served_url() -> None:
    status = _status([
        ("died", "u/died", S.DEAD, "u/died"),
        ("recovered", "u/rec", S.VALID, "u/rec"),
        ("moved_back", "u/old", S.MOVED, "u/new"),  # served at where the redirect ends
        ("still_dead", "u/sd", S.DEAD, "u/sd"),
        ("suspect", "u/sus", S.LINK_SUSPECT, "u/sus"),  # one 404: still served, nothing changes
        ("unknown", "u/unk", S.UNKNOWN, None),
        ("resolved", "u/dead-reupload", S.DEAD, "u/dead-reupload"),  # served at another track's URL
        ("unpublished", "u/x", S.DEAD, "u/x"),
    ])
    served = _served([
        ("died", "u/died", S.VALID),
        ("recovered", "u/rec", S.DEAD),
        ("moved_back", "u/new", S.DEAD),
        ("still_dead", "u/sd", S.DEAD),
        ("suspect", "u/sus", S.VALID),
        ("unknown", "u/unk", None),
        ("resolved", "u/live-original", S.VALID),
    ])
    out = build_overlay(status=status, served=served)
    assert out.schema == pl.Schema(OVERLAY_SCHEMA)
    assert out.rows() == [("died", S.DEAD, AT), ("moved_back", S.MOVED, AT), ("recovered", S.VALID, AT)]


def test_nothing_changed_is_an_empty_overlay() -> None:
    status = _status([("a", "u/a", S.VALID, "u/a"), ("b", "u/b", S.DEAD, "u/b")])
    out = build_overlay(status=status, served=_served([("a", "u/a", S.UNKNOWN), ("b", "u/b", S.DEAD)]))
    assert out.height == 0 and out.schema == pl.Schema(OVERLAY_SCHEMA)


def test_written_in_one_rename_and_read_back_with_its_version(tmp_path) -> None:
    path = StoreLayout(tmp_path / "store").availability_overlay
    table = pl.DataFrame({S.TRACK_ID: ["a", "b"], S.URL_STATUS: [S.DEAD, S.VALID], S.CHECKED_AT: [AT, AT]})
    written = write_overlay(table, path, base_version="v7")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left beside it
    back = read_overlay(path)
    assert back.table.equals(table) and back.base_version == "v7" and back.written_at == written.written_at
    assert back.statuses == {"a": S.DEAD, "b": S.VALID} and back.dead == 1
    later = datetime.fromisoformat(back.written_at) + timedelta(seconds=90)
    assert back.age_s(now=later) == pytest.approx(90.0)
    again = write_overlay(table.head(1), path, base_version=None)
    assert again.written_at > written.written_at and read_overlay(path).base_version is None
    assert datetime.fromisoformat(again.written_at).tzinfo == timezone.utc


def test_a_file_that_is_not_an_overlay_is_refused(tmp_path) -> None:
    path = tmp_path / "availability.parquet"
    with pytest.raises(FileNotFoundError):
        read_overlay(path)
    path.write_bytes(b"not parquet")
    with pytest.raises(Exception):  # noqa: B017 - whatever the Parquet reader raises for garbage
        read_overlay(path)
    pl.DataFrame({S.TRACK_ID: ["a"]}).write_parquet(path)  # a Parquet file without the overlay's stamp
    with pytest.raises(ValueError, match="not an availability overlay"):
        read_overlay(path)
