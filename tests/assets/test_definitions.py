"""The Dagster code location loads, validates, and has the lineage the README promises."""

import subprocess
import sys
from pathlib import Path

from dagster import AssetKey

REPO = Path(__file__).resolve().parents[1]

EXPECTED_EDGES = [
    ("raw_tracks", "link_checks"),
    ("link_checks", "track_link_status"),
    ("raw_tracks", "track_link_status"),
    ("track_link_status", "music_tracks"),
    ("music_tracks", "text_embeddings"),
    ("text_embeddings", "imputed_metadata"),
    ("imputed_metadata", "audio_features_imputed"),
    ("audio_features", "audio_features_imputed"),
    ("audio_features_imputed", "track_moods"),
    ("query_mood_model", "track_moods"),
    ("audio_mood_model", "track_moods"),
    ("text_embeddings", "text_index"),
    ("audio_features_imputed", "audio_index"),
    ("track_moods", "mood_index"),
    ("text_index", "published_store"),
    ("audio_index", "published_store"),
    ("mood_index", "published_store"),
]


def test_definitions_lineage_and_checks() -> None:
    from assets.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    for up, down in EXPECTED_EDGES:
        assert up in keys and down in keys
        parents = {p.to_user_string() for p in graph.get(AssetKey(down)).parent_keys}
        assert up in parents, f"{up} is not upstream of {down}"
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, f"{key.to_user_string()} has no description"
        assert node.group_name and node.group_name != "default", f"{key.to_user_string()} has no group"
    checks = {c.name for c in graph.asset_check_keys}
    assert {"text_index_recall", "audio_index_recall", "mood_index_recall"} <= checks
    assert defs.get_schedule_def("link_recheck_daily")


def test_every_asset_and_check_reads_well_in_the_ui() -> None:
    """Each asset: a real description, a named group, a compute kind; each check: a description."""
    from assets.definitions import all_assets, all_checks, defs

    graph = defs.resolve_asset_graph()
    assert len(list(graph.get_all_asset_keys())) >= 17
    for asset_def in all_assets:
        for key in asset_def.keys:
            name = key.to_user_string()
            description = asset_def.descriptions_by_key.get(key) or ""
            assert len(description.split()) >= 5, f"{name}: description too thin: {description!r}"
            assert asset_def.group_names_by_key[key] not in (None, "default"), f"{name} has no group"
            assert asset_def.op.tags.get("dagster/compute_kind") or asset_def.specs_by_key[key].kinds, f"{name} has no compute kind"
    specs = [spec for checks in all_checks for spec in checks.check_specs]
    specs += [spec for asset_def in all_assets for spec in asset_def.check_specs]  # checks reported by their asset
    assert {s.name for s in specs} == {c.name for c in graph.asset_check_keys}
    for spec in specs:
        assert spec.description and len(spec.description.split()) >= 4, f"check {spec.name} has no description"


JOB_ASSETS = {
    "heal": {"raw_tracks", "track_link_status", "music_tracks", "imputed_metadata"},
    "features": {"text_embeddings", "audio_features", "imputed_metadata", "audio_features_imputed", "track_moods"},
    "mood_models": {"query_mood_model", "audio_mood_model"},
    "rebuild_indices": {"text_index", "audio_index", "mood_index", "published_store"},
    "evaluate": {"evaluation_report"},
    "recheck_links": {"link_checks", "track_link_status"},
    "ingest_batch": {"crawl_batch"},
}


def test_jobs_for_the_common_operations() -> None:
    from assets.definitions import defs

    everything = defs.resolve_job_def("materialize_everything")
    all_keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    # the partitioned assets run per partition (inbox sensor, link-check schedule), not in the everything run
    assert {k.to_user_string() for k in everything.asset_layer.selected_asset_keys} == all_keys - {"crawl_batch", "link_checks"}
    for name, wanted in JOB_ASSETS.items():
        job = defs.resolve_job_def(name)
        selected = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
        assert wanted <= selected, f"job {name} misses {wanted - selected}"
        assert job.description, f"job {name} has no description"
    assert not {"published_store", "text_index"} & {k.to_user_string() for k in defs.resolve_job_def("features").asset_layer.selected_asset_keys}
    # rebuilding indices runs their blocking recall checks (they gate publication)
    checks = {c.name for c in defs.resolve_job_def("rebuild_indices").asset_layer.asset_graph.asset_check_keys}
    assert {"text_index_recall", "audio_index_recall", "mood_index_recall"} <= checks
    # the tag the production run queue limits on (dagster.prod.yaml)
    assert defs.resolve_job_def("rebuild_indices").tags["moodscape/resource"] == "cpu"
    assert defs.resolve_job_def("recheck_links").tags["moodscape/resource"] == "network"


def test_link_checks_are_sharded_and_scheduled_one_run_per_shard() -> None:
    """link_checks has 8 hash-shard partitions (not one per track) and carries the error-rate check;
    the daily schedule asks for one recheck_links run per shard, keyed by day and shard."""
    from datetime import datetime, timezone

    from dagster import AssetKey, build_schedule_context

    from assets.definitions import defs, link_recheck_schedule

    graph = defs.resolve_asset_graph()
    shards = graph.get(AssetKey("link_checks")).partitions_def
    assert shards.get_partition_keys() == [f"{i:02d}" for i in range(8)]
    assert graph.get(AssetKey("track_link_status")).partitions_def is None
    assert {c.name for c in graph.asset_check_keys if c.asset_key == AssetKey("link_checks")} == {"link_check_error_rate"}
    job = defs.resolve_job_def("recheck_links")
    assert job.partitions_def == shards

    repo = defs.get_repository_def()  # lets the tick validate each partition key against the job

    def tick(when: datetime) -> list:
        return list(link_recheck_schedule.evaluate_tick(
            build_schedule_context(scheduled_execution_time=when, repository_def=repo)).run_requests)

    requests = tick(datetime(2026, 3, 4, 3, 0, tzinfo=timezone.utc))
    assert [r.partition_key for r in requests] == shards.get_partition_keys()
    assert [r.run_key for r in requests] == [f"links-2026-03-04-{k}" for k in shards.get_partition_keys()]
    assert defs.get_schedule_def("link_recheck_daily").job_name == "recheck_links"
    next_day = tick(datetime(2026, 3, 5, 3, 0, tzinfo=timezone.utc))
    assert not {r.run_key for r in next_day} & {r.run_key for r in requests}  # a new day re-checks every shard


def test_automation_default_status_follows_env() -> None:
    """MOODSCAPE_AUTOMATION=on starts the schedule and the inbox sensor RUNNING; unset, both STOPPED.

    Module-level definitions read the variable at import, so each setting is checked in a fresh
    interpreter (reloading asset modules in-process would define their assets twice).
    """
    import json
    import os
    import subprocess
    import sys

    probe = (
        "import json; from assets.definitions import defs; "
        "s = defs.get_schedule_def('link_recheck_daily'); i = defs.get_sensor_def('inbox_sensor'); "
        "print(json.dumps([s.default_status.value, i.default_status.value, i.job_name, i.minimum_interval_seconds]))"
    )
    for value, expected in [("on", "RUNNING"), ("", "STOPPED")]:
        env = {**os.environ, "MOODSCAPE_AUTOMATION": value}
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                             check=True, timeout=120).stdout.strip().splitlines()[-1]
        assert json.loads(out) == [expected, expected, "ingest_batch", 30]


def test_makefile_ui_turns_automation_on_and_profile_selects_yaml(tmp_path) -> None:
    make = subprocess.run(["make", "-n", "ui", f"DAGSTER_HOME={tmp_path}", "STAMP=Makefile"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert make.returncode == 0, make.stderr
    assert "MOODSCAPE_AUTOMATION=${MOODSCAPE_AUTOMATION:-on}" in make.stdout and "dagster dev" in make.stdout
    for profile, source in [("prod", "dagster.prod.yaml"), ("dev", "dagster.yaml")]:
        out = subprocess.run(["make", "dagster-yaml", f"DAGSTER_HOME={tmp_path}", f"MOODSCAPE_DAGSTER_PROFILE={profile}"],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert (tmp_path / "dagster.yaml").read_text() == (REPO / source).read_text()
    bad = subprocess.run(["make", "dagster-yaml", f"DAGSTER_HOME={tmp_path}", "MOODSCAPE_DAGSTER_PROFILE=staging"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "dev or prod" in bad.stderr


def test_dagster_definitions_validate_cli(tmp_path) -> None:
    import os

    exe = Path(sys.executable).parent / "dagster"
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    out = subprocess.run([str(exe), "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
                         cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
