"""Reading one crawl cell: unambiguous integers and dates only, tag lists, identity URLs."""

import math
from datetime import date, datetime, timedelta, timezone

import pytest

from pipelines.heal.crawlvalues import normalise_url, parse_created_at, parse_int, tags_value, text_value


def test_normalise_url():
    assert normalise_url(url="HTTPS://WWW.YouTube.com:443/watch?v=-0Gj8-vB1q4&t=30s&utm_campaign=x#frag") == \
        "https://www.youtube.com/watch?v=-0Gj8-vB1q4&t=30s"
    assert normalise_url(url="https://www.jamendo.com/track/948/") == "https://www.jamendo.com/track/948"
    assert normalise_url(url="https://www.jamendo.com/Track/948") != normalise_url(url="https://www.jamendo.com/track/948")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1,234", 1234), ("1 234", 1234), ("1234.0", 1234), ("+7", 7), (12, 12), (3.0, 3), (None, None),
     ("", None), ("NaN", None), (math.nan, None)],
)
def test_parse_int_reads_unambiguous_integers(value: object, expected: int | None) -> None:
    assert parse_int(value) == expected


@pytest.mark.parametrize("value", ["abc", "1.234", "1,23", "-5", -5, 2.5, True, str(2**63)])
def test_parse_int_refuses_everything_else(value: object) -> None:
    with pytest.raises(ValueError):
        parse_int(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2013/03/25 18:13:52 +0000", ("2013-03-25T18:13:52Z", 2013)),
        ("2020-01-01T01:30:00+02:00", ("2019-12-31T23:30:00Z", 2019)),
        ("2020-05-01 10:00", ("2020-05-01T10:00:00", 2020)),
        ("2020-05-01", ("2020-05-01", 2020)),
        (date(2001, 2, 3), ("2001-02-03", 2001)),
        (datetime(2001, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=-1))), ("2001-02-03T05:05:06Z", 2001)),
        (None, None),
    ],
)
def test_parse_created_at_normalises_iso_and_soundcloud_dates(value: object, expected: tuple | None) -> None:
    assert parse_created_at(value) == expected


def test_parse_created_at_refuses_ambiguous_dates() -> None:
    with pytest.raises(ValueError):
        parse_created_at("05/01/2020")


def test_tags_and_text_cells() -> None:
    assert tags_value('["chill", "lo-fi"]') == "chill, lo-fi"
    assert tags_value("['a', 'b']") == "a, b"
    assert tags_value(["x", None, " y "]) == "x, y"
    assert tags_value(" , ,") is None
    assert text_value("  null ") is None and text_value(" hi ") == "hi"
