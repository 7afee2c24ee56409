"""The pipeline benchmark: the generated crawl has the configured shape (checked through the real
ingest), and a small real run of ``bench-pipeline`` reports every asset of the store graph."""

import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from bench.crawlgen import CrawlShape, demo_prototypes, generate_crawl, null_rates
from pipelines import schema as S
from pipelines.heal.ingest import ingest
from pipelines.store import DATA_DIR, StoreLayout

LIVE = ("http://127.0.0.60:1001", "http://127.0.0.61:1002")
DEAD = ("http://127.0.0.70:1003",)


@pytest.fixture(scope="module")
def prototypes() -> pl.DataFrame:
    return demo_prototypes(data_dir=DATA_DIR, jamendo_limit=600, emopia_audio={})


def test_generated_crawl_has_the_configured_duplicates_malformed_rows_and_links(prototypes, tmp_path: Path) -> None:
    shape = CrawlShape(duplicate_share=0.05, malformed_share=0.02, dead_share=0.2)
    crawl = generate_crawl(prototypes, rows=2000, seed=3, shape=shape, live_bases=LIVE, dead_bases=DEAD)
    assert crawl.height == 2000 and crawl.columns == list(S.CRAWL_COLUMNS)
    ids = crawl.get_column(S.TRACK_ID).drop_nulls()
    assert ids.len() - ids.n_unique() == 100  # 5 % repeat an earlier id
    crawl.write_csv(tmp_path / "crawl.csv")
    result = ingest(path=tmp_path / "crawl.csv")
    assert result.stats["duplicates_merged"] == 100
    assert result.quarantine.height == 40  # 2 % malformed, every one quarantined
    assert result.tracks.height == 2000 - 100 - 40
    links = crawl.get_column(S.PERMALINK_URL).drop_nulls().to_list()
    assert links and all(u.startswith(LIVE + DEAD) for u in links)
    dead = sum(u.startswith(DEAD) for u in links) / len(links)
    assert 0.14 < dead < 0.26


def test_generated_crawl_keeps_the_real_null_rates_and_draws_artists_from_a_zipf_law(prototypes) -> None:
    crawl = generate_crawl(prototypes, rows=5000, seed=1, live_bases=LIVE, dead_bases=DEAD)
    real, made = null_rates(prototypes.cast(pl.Utf8)), null_rates(crawl)
    for column in (S.TITLE, S.ARTIST, S.GENRE, S.TAGS, S.DESCRIPTION, S.PERMALINK_URL, S.AUDIO_PATH):
        assert abs(real[column] - made[column]) < 0.03, column
    counts = sorted(Counter(crawl.get_column(S.ARTIST).drop_nulls().to_list()).values(), reverse=True)
    assert counts[0] >= 10 * counts[len(counts) // 2]  # a few artists own many tracks
    titled = crawl.filter(pl.col(S.TITLE).is_not_null())
    assert titled.height and not set(titled[S.TITLE]) <= set(prototypes[S.TITLE].drop_nulls())  # perturbed


def test_generated_crawl_is_seeded_and_a_later_batch_has_new_ids(prototypes) -> None:
    a = generate_crawl(prototypes, rows=300, seed=7, live_bases=LIVE, dead_bases=DEAD)
    assert a.equals(generate_crawl(prototypes, rows=300, seed=7, live_bases=LIVE, dead_bases=DEAD))
    more = generate_crawl(prototypes, rows=30, seed=7, start=300, live_bases=LIVE, dead_bases=DEAD)
    assert not set(a[S.TRACK_ID].drop_nulls()) & set(more[S.TRACK_ID].drop_nulls())


@pytest.mark.integration
@pytest.mark.slow
def test_small_run_times_every_asset_and_the_incremental_build(tmp_path: Path) -> None:
    from bench.pipeline import MODEL_ASSETS, run_pipeline_bench

    shape = CrawlShape(duplicate_share=0.02, malformed_share=0.01, dead_share=0.2)
    report = run_pipeline_bench(rows=300, out_dir=tmp_path, shape=shape, jamendo_limit=600, log=lambda _: None)
    assert json.loads((tmp_path / "pipeline.json").read_text()) == report
    assert report["rows"] == 300 and report["total_s"] > 0 and report["peak_rss_mb"] > 50
    assets = report["assets"]
    expected = {"raw_tracks", "link_checks", "track_link_status", "audio_fetch", "audio_features", "music_tracks",
                "text_embeddings", "imputed_metadata", "track_moods", "text_index", "published_store"}
    assert expected <= set(assets)
    assert report["models"] == "excluded" and not set(MODEL_ASSETS) & set(assets)
    assert set(report["models_assets"]) >= set(MODEL_ASSETS) and report["models_s"] > 0
    for entry in assets.values():
        assert entry["s"] >= 0 and entry["peak_rss_mb"] > 0
    ingested = 300 - 6 - 3
    assert assets["raw_tracks"]["rows_out"] == ingested
    assert assets["track_link_status"]["rows_out"] == ingested
    assert 0 < assets["music_tracks"]["rows_out"] <= ingested
    assert assets["text_embeddings"]["rows_out"] == assets["music_tracks"]["rows_out"]
    assert assets["link_checks"]["rows_out"] > 0
    # the dead host answered 404: those links are SUSPECT after one check; the live ones VALID
    status = pl.read_parquet(StoreLayout.under_home(tmp_path / "home").table("track_link_status"))
    counts = Counter(status.get_column(S.URL_STATUS).to_list())
    assert counts[S.LINK_SUSPECT] > 0 and counts[S.VALID] > counts[S.LINK_SUSPECT]
    inc = report["incremental"]
    assert inc["added_rows"] == 3 and inc["total_s"] > 0
    assert inc["assets"]["raw_tracks"]["rows_out"] == ingested + 3
