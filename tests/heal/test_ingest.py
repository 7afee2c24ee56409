"""Ingest with quarantine, on small crawl files written from real MusicCaps / MTG-Jamendo rows."""

import csv
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from pipelines import schema as S
from pipelines.errors import IngestError
from pipelines.heal.democorpus import jamendo_rows, musiccaps_rows
from pipelines.heal.ingest import ingest, ingest_frame
from pipelines.store import DATA_DIR

pytestmark = pytest.mark.skipif(not (DATA_DIR / "corpus" / "musiccaps.csv").exists(),
                                reason="bundled data/ missing")


@pytest.fixture(scope="module")
def real() -> pl.DataFrame:
    """20 real MusicCaps rows (3 of them with a ’ in the caption) + 10 real MTG-Jamendo rows."""
    mc = musiccaps_rows(data_dir=DATA_DIR)
    quotes = mc.filter(pl.col(S.DESCRIPTION).str.contains("’")).head(3)
    plain = mc.filter(~pl.col(S.DESCRIPTION).str.contains("’")).head(17)
    jm = jamendo_rows(data_dir=DATA_DIR, limit=10)
    return pl.concat([quotes, plain, jm])


def _write_csv(path: Path, header: list[str], rows: list[list[object]], encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows([["" if v is None else v for v in r] for r in rows])
    return path


def _check_invariant(stats: dict) -> None:
    assert stats["rows_in"] == stats["ingested"] + stats["quarantined"] + stats["duplicates_merged"]


def test_clean_csv_round_trip_with_missing_columns(tmp_path, real):
    cols = [S.TRACK_ID, S.GENRE, S.TAGS, S.DESCRIPTION, S.PERMALINK_URL, S.SOURCE]  # no title/year/…
    path = _write_csv(tmp_path / "crawl.csv", cols, [list(r) for r in real.select(cols).iter_rows()])
    res = ingest(path=path)
    assert res.tracks.columns == list(S.CRAWL_COLUMNS)
    assert res.tracks.schema[S.YEAR] == pl.Int32 and res.tracks.schema[S.PLAYBACK_COUNT] == pl.Int64
    assert res.stats["rows_in"] == real.height == res.stats["ingested"]
    assert res.stats["quarantined"] == 0 and res.stats["duplicates_merged"] == 0
    assert res.stats["encoding"] == "utf-8"
    assert set(res.stats["columns_missing"]) == {S.TITLE, S.ARTIST, S.YEAR, S.CREATED_AT, S.PLAYBACK_COUNT,
                                                 S.VIBE_TEXT, S.AUDIO_PATH}
    assert res.tracks.select(cols).equals(real.select(cols))
    assert res.tracks[S.TITLE].null_count() == real.height


def test_damaged_values_are_coerced_or_quarantined(tmp_path, real):
    base = real.head(10).select(S.TRACK_ID, S.DESCRIPTION, S.PERMALINK_URL).rows()
    header = ["Track ID", "Description", "Permalink URL", "playback_count", "created_at", "year", "extra"]
    damage = [
        ("1,234", "2019-03-05T10:00:00+02:00", ""),   # 0 ok: 1234, UTC, year from date
        ("abc", "", ""),                              # 1 bad count
        ("12", "2020/01/05 10:00:00 +0000", "2018"),  # 2 ok: SoundCloud date, explicit year kept
        ("1.234", "", ""),                            # 3 ambiguous count
        ("", "05/01/2020", ""),                       # 4 ambiguous date
        ("", "", "1850"),                             # 5 year out of range
        ("7.0", "2021-06-01", "nan"),                 # 6 ok
        ("-3", "", "1999"),                           # 7 negative count
        (" 1 234 ", "1899-12-31", ""),                # 8 count ok, date's year out of range
        ("", "", ""),                                 # 9 ok, all null
    ]
    rows = [[*b, *d, "x"] for b, d in zip(base, damage)]
    rows.append(["", "a caption without any identity", "", "", "", "", ""])  # 11: no identity
    rows.append(["too", "many", "fields", "1", "2", "3", "4", "5"])           # 12: ragged
    res = ingest(path=_write_csv(tmp_path / "damaged.csv", header, rows))
    _check_invariant(res.stats)
    assert res.stats["rows_in"] == 12 and res.stats["ingested"] == 4 and res.stats["quarantined"] == 8
    assert res.stats["columns_ignored"] == ["extra"]
    t = {r[S.TRACK_ID]: r for r in res.tracks.iter_rows(named=True)}
    r0, r2, r6, r9 = (t[base[i][0]] for i in (0, 2, 6, 9))
    assert (r0[S.PLAYBACK_COUNT], r0[S.CREATED_AT], r0[S.YEAR]) == (1234, "2019-03-05T08:00:00Z", 2019)
    assert (r2[S.PLAYBACK_COUNT], r2[S.CREATED_AT], r2[S.YEAR]) == (12, "2020-01-05T10:00:00Z", 2018)
    assert (r6[S.PLAYBACK_COUNT], r6[S.CREATED_AT], r6[S.YEAR]) == (7, "2021-06-01", 2021)
    assert (r9[S.PLAYBACK_COUNT], r9[S.CREATED_AT], r9[S.YEAR]) == (None, None, None)
    assert r0[S.SOURCE] == "damaged.csv" and r0[S.DESCRIPTION] == base[0][1]
    q = {r[S.ROW_NUMBER]: r for r in res.quarantine.iter_rows(named=True)}
    assert sorted(q) == [2, 4, 5, 6, 8, 9, 11, 12]
    assert q[2][S.REASON] == "bad playback_count: 'abc'"
    assert q[4][S.REASON] == "bad playback_count: '1.234'"
    assert q[5][S.REASON].startswith("bad created_at: '05/01/2020'")
    assert q[6][S.REASON].startswith("bad year: '1850'")
    assert q[8][S.REASON] == "bad playback_count: '-3'"
    assert "year outside" in q[9][S.REASON]
    assert q[11][S.REASON] == "no identity: needs track_id, permalink_url or title+artist"
    assert q[12][S.REASON] == "wrong number of fields: 8 (header has 7)"
    raw = json.loads(q[2][S.RAW])
    assert raw["playback_count"] == "abc" and raw["Track ID"] == base[1][0]


def test_duplicates_merge_richest_values(tmp_path, real):
    jm = real.filter(pl.col(S.SOURCE) == "mtg_jamendo")
    a, b, c = jm.head(3).iter_rows(named=True)
    mc = real.filter(pl.col(S.SOURCE) == "musiccaps").row(5, named=True)
    header = [S.TRACK_ID, S.ARTIST, S.GENRE, S.TAGS, S.PERMALINK_URL, S.PLAYBACK_COUNT, S.DESCRIPTION]
    rows = [
        [a[S.TRACK_ID], a[S.ARTIST], None, "chillout", a[S.PERMALINK_URL], "10", None],
        [a[S.TRACK_ID], None, a[S.GENRE], a[S.TAGS], None, "25", None],          # same id
        # no id, same page in another spelling: joins a
        [None, None, None, None, a[S.PERMALINK_URL].replace("https://www.jamendo.com", "HTTPS://WWW.Jamendo.com")
         + "/?utm_source=newsletter&utm_medium=mail", "3", None],
        [None, b[S.ARTIST], b[S.GENRE], None, b[S.PERMALINK_URL] + "/", None, None],  # no id
        [None, b[S.ARTIST], None, b[S.TAGS], b[S.PERMALINK_URL], None, None],         # no id, same page
        [c[S.TRACK_ID], c[S.ARTIST], c[S.GENRE], c[S.TAGS], mc[S.PERMALINK_URL], None, None],
        [mc[S.TRACK_ID], None, None, mc[S.TAGS], mc[S.PERMALINK_URL], None, mc[S.DESCRIPTION]],  # other id
    ]
    res = ingest(path=_write_csv(tmp_path / "dupes.csv", header, rows))
    _check_invariant(res.stats)
    assert res.stats["rows_in"] == 7 and res.stats["duplicates_merged"] == 3 and res.stats["ingested"] == 4
    t = {r[S.TRACK_ID]: r for r in res.tracks.iter_rows(named=True)}
    ra = t[a[S.TRACK_ID]]
    assert ra[S.PLAYBACK_COUNT] == 25 and ra[S.ARTIST] == a[S.ARTIST] and ra[S.GENRE] == a[S.GENRE]
    assert ra[S.TAGS] == a[S.TAGS]  # "chillout" ∪ full tag list, case-insensitive, no repeats
    assert ra[S.PERMALINK_URL] == a[S.PERMALINK_URL]
    hb = "h:" + hashlib.sha1(b[S.PERMALINK_URL].encode()).hexdigest()[:16]
    assert t[hb][S.GENRE] == b[S.GENRE] and t[hb][S.TAGS] == b[S.TAGS]
    assert c[S.TRACK_ID] in t and mc[S.TRACK_ID] in t  # different explicit ids are never merged
    assert list(t)[:2] == [a[S.TRACK_ID], hb]  # first-appearance order


def test_no_track_id_column_gets_stable_hash_ids(real):
    mc = real.filter(pl.col(S.SOURCE) == "musiccaps").head(5)
    df = mc.select(S.DESCRIPTION, S.PERMALINK_URL, S.TAGS)
    first = ingest_frame(df=df, source_name="frame").tracks[S.TRACK_ID].to_list()
    again = ingest_frame(df=df.reverse(), source_name="frame").tracks[S.TRACK_ID].to_list()
    assert sorted(first) == sorted(again) and len(set(first)) == 5
    assert all(t.startswith("h:") and len(t) == 18 for t in first)


def test_cp1252_crawl_is_detected(tmp_path, real):
    mc = real.filter(pl.col(S.SOURCE) == "musiccaps")
    cols = [S.TRACK_ID, S.DESCRIPTION, S.TAGS]
    path = _write_csv(tmp_path / "win.csv", cols, [list(r) for r in mc.select(cols).iter_rows()], encoding="cp1252")
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    res = ingest(path=path)
    assert res.stats["encoding"] == "cp1252" and "not valid UTF-8" in res.stats["encoding_note"]
    assert res.tracks[S.DESCRIPTION].to_list() == mc[S.DESCRIPTION].to_list()  # the ’ survive


def test_jsonl_with_lists_numbers_and_broken_line(tmp_path, real):
    lines = []
    for r in real.head(6).iter_rows(named=True):
        tags = r[S.TAGS].split(", ")
        lines.append(json.dumps({"track_id": r[S.TRACK_ID], "tags": tags, "description": r[S.DESCRIPTION],
                                 "permalink_url": r[S.PERMALINK_URL], "playback_count": 42}))
    lines.insert(3, '{"track_id": "broken", "tags": [')
    lines.insert(1, "")
    path = tmp_path / "crawl.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = ingest(path=path)
    _check_invariant(res.stats)
    assert res.stats["rows_in"] == 7 and res.stats["ingested"] == 6 and res.stats["quarantined"] == 1
    assert res.quarantine[S.REASON][0].startswith("invalid JSON")
    assert res.tracks[S.TAGS].to_list() == real.head(6)[S.TAGS].to_list()
    assert res.tracks[S.PLAYBACK_COUNT].to_list() == [42] * 6


def test_parquet_typed_columns_and_relative_audio(tmp_path, real):
    lb = DATA_DIR / "audio" / "librosa"
    (tmp_path / "clips").mkdir()
    clip = tmp_path / "clips" / "Kevin_MacLeod_-_Vibe_Ace.ogg"
    clip.write_bytes((lb / clip.name).read_bytes())
    df = pl.DataFrame({
        "track_id": ["librosa:Kevin_MacLeod_-_Vibe_Ace", real[S.TRACK_ID][0]],
        "title": ["Vibe Ace", None],
        "artist": ["Kevin MacLeod", None],
        "created_at": [datetime(2020, 11, 13, 9, 30, tzinfo=timezone.utc), None],
        "year": [None, 2007],
        "playback_count": [3, None],
        "audio_path": ["clips/Kevin_MacLeod_-_Vibe_Ace.ogg", None],
        "tags": [["jazz", "vibraphone"], None],
    })
    path = tmp_path / "crawl.parquet"
    df.write_parquet(path)
    res = ingest(path=path)
    _check_invariant(res.stats)
    r0, r1 = res.tracks.iter_rows(named=True)
    assert r0[S.CREATED_AT] == "2020-11-13T09:30:00Z" and r0[S.YEAR] == 2020
    assert r0[S.AUDIO_PATH] == str(clip.resolve()) and Path(r0[S.AUDIO_PATH]).exists()
    assert r0[S.TAGS] == "jazz, vibraphone" and r0[S.PLAYBACK_COUNT] == 3
    assert r1[S.YEAR] == 2007 and r1[S.AUDIO_PATH] is None


def test_unreadable_files_raise(tmp_path):
    with pytest.raises(IngestError, match="not found"):
        ingest(path=tmp_path / "nope.csv")
    ogg = tmp_path / "crawl.csv"
    ogg.write_bytes((DATA_DIR / "audio" / "librosa" / "pibble.ogg").read_bytes()[:4000])  # binary, not CSV
    with pytest.raises(IngestError):
        ingest(path=ogg)
    bad_pq = tmp_path / "crawl.parquet"
    bad_pq.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(IngestError, match="Parquet"):
        ingest(path=bad_pq)
    with pytest.raises(IngestError, match="unsupported"):
        ingest(path=DATA_DIR / "audio" / "immich" / "LICENSE-MUSIC")
    empty = tmp_path / "empty.csv"
    empty.write_text("\n")
    with pytest.raises(IngestError, match="empty"):
        ingest(path=empty)
