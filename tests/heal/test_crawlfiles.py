"""Reading a crawl file's rows: text decoding and header mapping."""

import polars as pl
import pytest

from pipelines.errors import IngestError
from pipelines.heal import crawlfiles
from pipelines.heal.crawlfiles import column_map, decode_bytes
from pipelines.schema import CRAWL_COLUMNS, PERMALINK_URL, TRACK_ID
from pipelines.store import DATA_DIR

QUERIES = DATA_DIR / "queries" / "deezer_music_ner"


@pytest.mark.skipif(not QUERIES.is_dir(), reason="bundled data/ missing")
def test_latin1_fallback_records_reason(monkeypatch):
    line = ("What should I listen to if I like the album: Paper Mâché Dream Balloon by King Gizzard and the "
            "Lizard Wizard?")
    queries = pl.concat([pl.read_csv(p) for p in sorted(QUERIES.glob("*.csv"))])
    assert line in queries["original"].to_list()  # a real query
    monkeypatch.setattr(crawlfiles.charset_normalizer, "from_bytes", lambda data: [])
    text, enc, note = decode_bytes(data=line.encode("latin-1"))
    assert (text, enc) == (line, "latin-1")
    assert "not valid UTF-8" in note and "found no encoding" in note


def test_byte_order_marks() -> None:
    assert decode_bytes(data=b"\xef\xbb\xbftrack_id\n") == ("track_id\n", "utf-8-sig", "UTF-8 with byte-order mark")
    assert decode_bytes(data="tïd".encode("utf-16"))[:2] == ("tïd", "utf-16")
    with pytest.raises(IngestError, match="UTF-16"):
        decode_bytes(data=b"\xff\xfe\x00")


def test_column_map_matches_headers_loosely() -> None:
    mapping, missing, ignored = column_map(["\ufeffTrack ID", "Permalink-URL", "likes"], what="crawl.csv")
    assert mapping == {"\ufeffTrack ID": TRACK_ID, "Permalink-URL": PERMALINK_URL}
    assert missing == [c for c in CRAWL_COLUMNS if c not in (TRACK_ID, PERMALINK_URL)]
    assert ignored == ["likes"]
    with pytest.raises(IngestError, match="appears twice"):
        column_map(["track_id", "Track ID"], what="crawl.csv")
    with pytest.raises(IngestError, match="no crawl columns"):
        column_map(["a", "b"], what="crawl.csv")
