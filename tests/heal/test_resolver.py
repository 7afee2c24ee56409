"""DEAD-link recovery: catalogue resolver (exact and near title+artist) and metadata inheritance."""

import numpy as np
import polars as pl
import pytest

from pipelines import schema as S
from pipelines.heal.democorpus import librosa_rows
from pipelines.heal.resolver import (
    CatalogueResolver,
    LinkResolver,
    Resolution,
    apply_resolutions,
    inherit_from_similar,
    normalise,
    resolve_dead_links,
)
from pipelines.store import DATA_DIR

DEAD_URL = "http://127.0.0.1:9/gone"


@pytest.fixture(scope="module")
def catalogue() -> pl.DataFrame:
    """The real librosa example rows with an attribution page, as live (VALID) catalogue entries."""
    if not (DATA_DIR / "audio" / "librosa").exists():
        pytest.skip("librosa example clips not available")
    rows = librosa_rows(data_dir=DATA_DIR).filter(pl.col(S.TITLE).is_not_null() & pl.col(S.PERMALINK_URL).is_not_null())
    return rows.with_columns(pl.lit("VALID").alias(S.URL_STATUS), pl.lit(None, dtype=pl.Utf8).alias(S.FINAL_URL))


def _row(catalogue: pl.DataFrame, title: str) -> dict:
    return catalogue.filter(pl.col(S.TITLE) == title).row(0, named=True)


def test_normalise_folds_case_accents_punctuation_keeps_brackets() -> None:
    assert normalise("Beyoncé – HALO!") == "beyonce halo"
    assert normalise("Song (Live)") == "song ( live )"
    assert normalise("A ft. B") == normalise("A feat B")
    assert normalise(None) == ""


def test_exact_match_after_normalisation(catalogue) -> None:
    vibe = _row(catalogue, "Vibe Ace")
    got = CatalogueResolver(catalogue=catalogue).resolve(title="VIBE ACE", artist="kevin macleod", dead_url=DEAD_URL)
    assert got == Resolution(url=vibe[S.PERMALINK_URL], source="catalogue", score=1.0,
                             matched_track_id=vibe[S.TRACK_ID])


def test_near_match_above_threshold_only(catalogue) -> None:
    resolver = CatalogueResolver(catalogue=catalogue, threshold=0.9)
    pist = _row(catalogue, "Pistachio Ice Cream Ragtime")
    got = resolver.resolve(title="Pistachio Ice-Cream Rag time", artist="The Piano Lady (Lena Orsa)", dead_url=DEAD_URL)
    assert got is not None and got.matched_track_id == pist[S.TRACK_ID] and 0.9 <= got.score < 1.0
    # a different piece by a catalogue artist, an unknown artist, a live version: no match
    assert resolver.resolve(title="Hungarian Dance", artist="Kevin MacLeod", dead_url=DEAD_URL) is None
    assert resolver.resolve(title="Vibe Ace", artist="Somebody Else", dead_url=DEAD_URL) is None
    assert resolver.resolve(title="Vibe Ace (Live at the Roxy)", artist="Kevin MacLeod", dead_url=DEAD_URL) is None
    assert resolver.resolve(title=None, artist="Kevin MacLeod", dead_url=DEAD_URL) is None


def test_dead_or_unchecked_catalogue_rows_are_not_offered(catalogue) -> None:
    vibe = _row(catalogue, "Vibe Ace")
    is_vibe = pl.col(S.TRACK_ID) == vibe[S.TRACK_ID]
    dead_cat = catalogue.with_columns(
        pl.when(is_vibe).then(pl.lit(S.DEAD)).otherwise(pl.col(S.URL_STATUS)).alias(S.URL_STATUS))
    assert CatalogueResolver(catalogue=dead_cat).resolve(title="Vibe Ace", artist="Kevin MacLeod",
                                                         dead_url=DEAD_URL) is None
    # its own dead URL is never the answer
    assert CatalogueResolver(catalogue=catalogue).resolve(
        title="Vibe Ace", artist="Kevin MacLeod", dead_url=vibe[S.PERMALINK_URL]) is None


def test_moved_catalogue_row_offers_its_final_url(catalogue) -> None:
    vibe = _row(catalogue, "Vibe Ace")
    is_vibe = pl.col(S.TRACK_ID) == vibe[S.TRACK_ID]
    moved = catalogue.with_columns(
        pl.when(is_vibe).then(pl.lit(S.MOVED)).otherwise(pl.col(S.URL_STATUS)).alias(S.URL_STATUS),
        pl.when(is_vibe).then(pl.lit("https://freemusicarchive.org/new")).otherwise(None).alias(S.FINAL_URL))
    got = CatalogueResolver(catalogue=moved).resolve(title="Vibe Ace", artist="Kevin MacLeod", dead_url=DEAD_URL)
    assert got is not None and got.url == "https://freemusicarchive.org/new"


class _Refuses:
    name = "refuses"

    def resolve(self, *, title, artist, dead_url):
        return None


def test_resolve_and_apply_record_provenance(catalogue) -> None:
    vibe = _row(catalogue, "Vibe Ace")
    # a dead re-upload of the same piece (another id and URL) next to the live catalogue
    dead = pl.DataFrame({S.TRACK_ID: ["reupload:1", "other:2"], S.TITLE: ["Vibe Ace", "No Such Piece"],
                         S.ARTIST: ["Kevin MacLeod", "Nobody"], S.PERMALINK_URL: [DEAD_URL, DEAD_URL + "2"],
                         S.URL_STATUS: ["DEAD", "DEAD"]})
    tracks = pl.concat([catalogue.select(dead.columns), dead])
    assert isinstance(_Refuses(), LinkResolver)
    res = resolve_dead_links(tracks=tracks, resolvers=[_Refuses(), CatalogueResolver(catalogue=tracks)])
    assert res.to_dicts() == [{S.TRACK_ID: "reupload:1", S.PERMALINK_URL: vibe[S.PERMALINK_URL],
                               S.URL_RESOLUTION_SOURCE: "catalogue", S.URL_RESOLUTION_SCORE: 1.0,
                               S.URL_RESOLVED_FROM: vibe[S.TRACK_ID]}]
    out = apply_resolutions(tracks=tracks, resolutions=res)
    assert out[S.TRACK_ID].to_list() == tracks[S.TRACK_ID].to_list()
    r = out.filter(pl.col(S.TRACK_ID) == "reupload:1").row(0, named=True)
    assert r[S.PERMALINK_URL] == vibe[S.PERMALINK_URL] and r[S.URL_ORIGINAL] == DEAD_URL
    other = out.filter(pl.col(S.TRACK_ID) == "other:2").row(0, named=True)
    assert other[S.PERMALINK_URL] == DEAD_URL + "2" and other[S.URL_RESOLUTION_SOURCE] is None


def test_inherit_from_most_similar_live_track(embed_cached) -> None:
    from tests.conftest import open_file

    wanted = ["01PzcPKT3_E", "07xGXxIHOL4", "0_hH79HnEdo"]
    caps = pl.read_csv(open_file("corpus/musiccaps.csv")).filter(pl.col("ytid").is_in(wanted))
    by_id = {r["ytid"]: r for r in caps.iter_rows(named=True)}
    if len(by_id) < 3:
        pytest.skip("MusicCaps rows not found")
    jazz, ballad, metal = by_id["01PzcPKT3_E"], by_id["07xGXxIHOL4"], by_id["0_hH79HnEdo"]
    # real captions: a jazz song and a heavy-metal song are live; a (dead) slow love song with
    # saxophone and piano has no genre or tags of its own
    vectors = embed_cached([jazz["caption"], metal["caption"], ballad["caption"]])
    ids = ["live_jazz", "live_metal", "dead_ballad"]
    kw = dict(track_ids=ids, vectors=vectors, has_text=np.ones(3, bool), recipients=np.array([False, False, True]),
              donors=np.array([True, True, False]), genres=["jazz", "heavy metal", None],
              tags=[jazz["aspect_list"], None, None])
    got = inherit_from_similar(**kw, min_similarity=0.45).row(0, named=True)
    assert got[S.TRACK_ID] == "dead_ballad"
    assert got[S.GENRE] == "jazz" and got["genre_donor"] == "live_jazz" and got["genre_similarity"] >= 0.45
    assert got[S.TAGS] == jazz["aspect_list"] and got["tags_donor"] == "live_jazz"
    # below the similarity floor nothing is inherited; a donor never gives what it lacks
    assert inherit_from_similar(**kw, min_similarity=0.6).height == 0
    no_tags = inherit_from_similar(**{**kw, "tags": [None, None, None]}, min_similarity=0.45).row(0, named=True)
    assert no_tags[S.TAGS] is None and no_tags["tags_donor"] is None


def test_resolve_many_answers_each_row_as_resolve_does(catalogue) -> None:
    resolver = CatalogueResolver(catalogue=catalogue, threshold=0.9)
    vibe = _row(catalogue, "Vibe Ace")
    asks = [("VIBE ACE", "kevin macleod", DEAD_URL), ("Pistachio Ice-Cream Rag time", "The Piano Lady (Lena Orsa)",
            DEAD_URL), ("Vibe Ace", "Kevin MacLeod", vibe[S.PERMALINK_URL]), ("Hungarian Dance", "Kevin MacLeod",
            DEAD_URL), (None, "Kevin MacLeod", DEAD_URL), ("Vibe Ace", "Kevin McLeod", DEAD_URL)]
    one_by_one = [resolver.resolve(title=t, artist=a, dead_url=u) for t, a, u in asks]
    batch = resolver.resolve_many(titles=[t for t, _, _ in asks], artists=[a for _, a, _ in asks],
                                  dead_urls=[u for _, _, u in asks])
    assert batch == one_by_one
    assert [r is not None for r in batch] == [True, True, False, False, False, True]
    assert batch[5].matched_track_id == vibe[S.TRACK_ID] and batch[5].score < 1.0  # near artist spelling
