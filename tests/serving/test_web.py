"""The web page over a real test bundle (see conftest): HTML, /mood-map, static assets."""

import html.parser

import numpy as np
import polars as pl
import pytest

from pipelines import schema as S
from serving import web


class _Collect(html.parser.HTMLParser):
    """Start tags with their attributes, in document order (the stdlib parser: real HTML parsing)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, dict(attrs)))


def _parse(text: str) -> list[tuple[str, dict[str, str | None]]]:
    p = _Collect()
    p.feed(text)
    return p.tags


def test_index_is_html_with_the_search_input(client, tracks) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    tags = _parse(r.text)
    ids = {a.get("id"): (t, a) for t, a in tags if a.get("id")}
    assert ids["q"][0] == "input" and ids["q"][1]["type"] == "search"
    # every form control has a label pointing at it (or is labelled by aria)
    labelled = {a["for"] for t, a in tags if t == "label" and a.get("for")}
    for control in ("q", "min-year", "max-year", "diversity", "exclude-artist"):
        assert control in labelled, control
    assert ids["results"][1]["aria-live"] == "polite"
    assert ids["mood-map"][0] == "svg"
    # nothing from another origin: every script/stylesheet/icon is a local path
    refs = [a.get("src") or a.get("href") for t, a in tags if t in ("script", "link")]
    assert refs and all(ref.startswith("/static/") for ref in refs), refs
    # the genre checkboxes are the bundle's most frequent genres (MTG-Jamendo rows carry genres)
    offered = [a["value"] for t, a in tags if t == "input" and a.get("name") == "genre"]
    expected = web.genre_counts(genres=tracks[S.GENRE].to_list())
    assert offered == [g for g, _ in expected] and len(offered) == web.TOP_GENRES
    assert "test-v1" in r.text and "500 tracks" in r.text


def test_page_escapes_bundle_values() -> None:
    facts = web.VersionFacts(
        store_version='v1"><script>alert(1)</script>', tracks=3, genres=[("<b>rock</b>", 2)],
        min_year=None, max_year=None,
        mood_map=web.MoodMap(store_version="v", bins=1, extent=(-1.0, 1.0), counts=[[0]], max_count=0,
                             tracks=3, tracks_with_mood=0),
    )
    page = web.render_page(facts)
    assert "<script>alert" not in page and "<b>rock</b>" not in page
    assert [t for t, _ in _parse(page)].count("script") == 1  # only the page's own app.js


def test_mood_map_shape_and_counts(client, tracks) -> None:
    r = client.get("/mood-map")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"store_version", "bins", "extent", "counts", "max_count", "tracks", "tracks_with_mood"}
    assert body["store_version"] == "test-v1" and body["extent"] == [-1.0, 1.0]
    n = body["bins"]
    assert n == web.MOOD_MAP_BINS == len(body["counts"]) and all(len(row) == n for row in body["counts"])
    counts = np.array(body["counts"])
    with_mood = tracks.filter(pl.col(S.VALENCE).is_not_null() & pl.col(S.AROUSAL).is_not_null()).height
    assert counts.sum() == body["tracks_with_mood"] == with_mood > 0
    assert body["tracks"] == tracks.height and body["max_count"] == counts.max()
    # orientation: counts[arousal_bin][valence_bin], bins from -1 upward
    v = tracks[S.VALENCE].to_numpy()
    a = tracks[S.AROUSAL].to_numpy()
    vi = np.minimum(((np.clip(v, -1, 1) + 1) / 2 * n).astype(int), n - 1)
    ai = np.minimum(((np.clip(a, -1, 1) + 1) / 2 * n).astype(int), n - 1)
    brute = np.zeros((n, n), int)
    np.add.at(brute, (ai, vi), 1)
    assert (np.abs(counts - brute).sum()) <= 2  # float edge cases at bin boundaries only
    assert counts[ai[0], vi[0]] >= 1
    again = client.get("/mood-map")
    assert again.json() == body and again.headers["etag"] == '"test-v1"'


def test_mood_histogram_drops_unknown_and_clips() -> None:
    v = np.array([-1.0, 1.0, 0.0, np.nan, 1.7, 0.2])
    a = np.array([-1.0, 1.0, 0.0, 0.5, -3.0, np.nan])
    h = web.mood_histogram(valence=v, arousal=a, bins=4)
    assert h.sum() == 4  # two rows lack a mood
    assert h[0, 0] == 1 and h[3, 3] == 1 and h[2, 2] == 1  # upper edge 1.0 lands in the last bin
    assert h[0, 3] == 1  # (1.7, -3.0) clips to valence 1 (last column), arousal -1 (first row)


@pytest.mark.parametrize(("path", "content_type"), [
    ("/static/app.js", ("text/javascript", "application/javascript")),
    ("/static/style.css", ("text/css",)),
    ("/static/favicon.svg", ("image/svg+xml",)),
])
def test_static_assets_served_with_content_types(client, path, content_type) -> None:
    r = client.get(path)
    assert r.status_code == 200, path
    assert r.headers["content-type"].split(";")[0].strip() in content_type
    assert r.content == (web.STATIC_DIR / path.removeprefix("/static/")).read_bytes()


def test_static_rejects_traversal_and_unknown(client) -> None:
    assert client.get("/static/nope.js").status_code == 404
    r = client.get("/static/..%2fweb.py")
    assert r.status_code in (400, 404) and "render_page" not in r.text


def test_page_api_routes_stay_json(client) -> None:
    # the page router must not shadow the API
    assert client.get("/health").json()["status"] == "ok"
    r = client.post("/recommend", json={"query": "calm acoustic guitar", "top_k": 3})
    assert r.status_code == 200 and len(r.json()["results"]) == 3
