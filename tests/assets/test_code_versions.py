"""Code versions and Dagster's stale status: a new audio extractor version makes exactly the assets
that read the extracted audio stale, and re-running them makes the store fresh again."""

import polars as pl
import pytest
from dagster import AssetKey, AssetSelection, DagsterInstance
from dagster._core.definitions.data_version import StaleCauseCategory, StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from pipelines.heal import democorpus
from pipelines.store import DATA_DIR

# Everything from the crawl to the imputed audio features (no mood models: they are not needed here).
FRONT = {
    "raw_tracks", "link_checks", "audio_fetch", "track_link_status", "audio_features", "music_classifier",
    "music_tracks", "text_embeddings", "imputed_metadata", "audio_features_imputed",
}


def names(asset_def) -> set[str]:
    return {k.to_user_string() for k in asset_def.keys}


def with_extractor_version(assets: list, old: str, new: str) -> list:
    """The graph as it is when the extractor's version constant reads ``new``: every code version
    built from it changes."""
    def swap(spec):
        return spec.replace_attributes(code_version=spec.code_version.replace(old, new))

    return [a.map_asset_specs(swap) if any(old in (v or "") for v in a.code_versions_by_key.values()) else a
            for a in assets]


def stale(instance: DagsterInstance, assets: list, materialized: set[str]) -> dict[str, list]:
    """Materialized unpartitioned asset → its stale causes (only the stale ones)."""
    resolver = get_stale_status_resolver(instance, assets)
    out = {}
    for a in assets:
        for key in a.keys:
            name = key.to_user_string()
            if name in materialized and a.partitions_def is None:
                if resolver.get_status(key) == StaleStatus.STALE:
                    out[name] = resolver.get_stale_causes(key)
                else:
                    assert resolver.get_status(key) == StaleStatus.FRESH, name
    return out


def test_every_asset_declares_a_code_version_and_audio_ones_follow_the_extractor() -> None:
    from assets.build import all_assets
    from pipelines.audio.extract import EXTRACT_VERSION

    versions = {k.to_user_string(): v for a in all_assets for k, v in a.code_versions_by_key.items()}
    assert all(versions.values()), [n for n, v in versions.items() if not v]
    assert {n for n, v in versions.items() if EXTRACT_VERSION in v} == {"audio_features", "audio_mood_model"}


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """A real store built offline up to the imputed audio features on a tiny crawl, and its instance."""
    home = tmp_path_factory.mktemp("home")
    crawl = pl.concat([
        democorpus.musiccaps_rows(data_dir=DATA_DIR).head(30),
        democorpus.jamendo_rows(data_dir=DATA_DIR, limit=30),
        democorpus.immich_rows(data_dir=DATA_DIR).head(6),
        democorpus.librosa_rows(data_dir=DATA_DIR),
    ], how="vertical")
    crawl.write_csv(home / "crawl.csv")
    from assets.resources import resources_for
    from assets.settings import MoodscapeSettings

    resources = resources_for("test", home_dir=home, settings=MoodscapeSettings(crawl=str(home / "crawl.csv"),
                                                                                 offline=True, workers=2))
    with DagsterInstance.ephemeral() as instance:
        yield instance, resources


@pytest.mark.integration
@pytest.mark.slow
def test_a_new_extractor_version_makes_only_the_audio_readers_stale(small_store) -> None:
    from assets.graph import materialize_graph, store_assets, store_checks
    from pipelines.audio.extract import EXTRACT_VERSION

    instance, resources = small_store
    run = materialize_graph(store_assets, store_checks, resources=resources, instance=instance, select=FRONT)
    assert all(r.success for r in run)
    assert stale(instance, store_assets, FRONT) == {}  # just built: nothing is stale

    changed = with_extractor_version(store_assets, EXTRACT_VERSION, EXTRACT_VERSION + "-next")
    versions = {n: v for a in changed for k, v in a.code_versions_by_key.items() for n in [k.to_user_string()]}
    assert {n for n, v in versions.items() if v.endswith("-next")} == {"audio_features", "audio_mood_model"}
    causes = stale(instance, changed, FRONT)
    assert set(causes) == {"audio_features"}  # the code changed there; nothing upstream or beside it
    assert [c.category for c in causes["audio_features"]] == [StaleCauseCategory.CODE]

    # Re-extracting gives audio_features a new data version: its direct readers are stale now, and
    # only because of it (Dagster marks a step at a time).
    again = materialize_graph(changed, store_checks, resources=resources, instance=instance, select={"audio_features"})
    assert all(r.success for r in again)
    causes = stale(instance, changed, FRONT)
    assert set(causes) == {"music_tracks", "audio_features_imputed"}
    assert all(c.dependency_asset_key.to_user_string() == "audio_features" for cs in causes.values() for c in cs)

    # Re-running what reads the extracted audio (directly or not) brings the store back to fresh; the
    # crawl, the link status and the music classifier are not run again.
    readers = {k.to_user_string() for k in AssetSelection.assets("audio_features").downstream().resolve(changed)}
    readers = (readers & FRONT) - {"audio_features"}
    assert {"text_embeddings", "imputed_metadata"} <= readers
    assert not readers & {"raw_tracks", "track_link_status", "music_classifier"}
    before = {n: instance.get_latest_materialization_event(AssetKey(n)).run_id for n in FRONT - readers}
    rerun = materialize_graph(changed, store_checks, resources=resources, instance=instance, select=readers)
    assert all(r.success for r in rerun)
    assert stale(instance, changed, FRONT) == {}
    assert {m.asset_key.to_user_string() for r in rerun for m in r.get_asset_materialization_events()} == readers
    assert {n: instance.get_latest_materialization_event(AssetKey(n)).run_id for n in before} == before
