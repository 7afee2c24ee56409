"""The Dagster code location loads, validates, and has the lineage the README promises."""

import os
import subprocess
import sys
from pathlib import Path

from dagster import AssetKey

from tests.helpers import probe_definitions

REPO = Path(__file__).resolve().parents[2]

EXPECTED_EDGES = [
    ("raw_tracks", "link_checks"),
    ("link_checks", "track_link_status"),
    ("link_checks", "audio_fetch"),
    ("audio_fetch", "audio_features"),
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
    assert defs.get_schedule_def("link_recheck_daily") and defs.get_schedule_def("audio_fetch_hourly")


def test_every_asset_and_check_reads_well_in_the_ui() -> None:
    """Each asset: a real description, a named group, a compute kind; each check: a description."""
    from assets.build import all_assets, all_checks
    from assets.definitions import defs

    graph = defs.resolve_asset_graph()
    assert len(list(graph.get_all_asset_keys())) >= 17
    for asset_def in all_assets:
        for key in asset_def.keys:
            name = key.to_user_string()
            description = asset_def.descriptions_by_key.get(key) or ""
            assert len(description.split()) >= 5, f"{name}: description too thin: {description!r}"
            assert asset_def.group_names_by_key[key] not in (None, "default"), f"{name} has no group"
            assert asset_def.op.tags.get("dagster/compute_kind") or asset_def.specs_by_key[key].kinds, (
                f"{name} has no compute kind"
            )
    specs = [spec for checks in all_checks for spec in checks.check_specs]
    specs += [spec for asset_def in all_assets for spec in asset_def.check_specs]  # checks reported by their asset
    assert {s.name for s in specs} == {c.name for c in graph.asset_check_keys}
    for spec in specs:
        assert spec.description and len(spec.description.split()) >= 4, f"check {spec.name} has no description"


JOB_ASSETS = {
    "heal": {"raw_tracks", "track_link_status", "music_tracks", "imputed_metadata"},
    "features": {"text_embeddings", "audio_features", "imputed_metadata", "audio_features_imputed", "track_moods"},
    "mood_models": {"query_mood_model", "audio_mood_model", "tag_priors"},
    "rebuild_indices": {"text_index", "audio_index", "mood_index", "published_store"},
    "evaluate": {"evaluation_report"},
    "recheck_links": {"link_checks", "track_link_status"},
    "fetch_audio": {"audio_fetch"},
    "ingest_batch": {"crawl_batch"},
}


def test_jobs_for_the_common_operations() -> None:
    from assets.definitions import defs

    everything = defs.resolve_job_def("materialize_everything")
    all_keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    # the partitioned assets run per partition (inbox sensor, link-check and fetch schedules), not in the everything run
    assert {k.to_user_string() for k in everything.asset_layer.selected_asset_keys} == all_keys - {
        "crawl_batch",
        "link_checks",
        "audio_fetch",
    }
    for name, wanted in JOB_ASSETS.items():
        job = defs.resolve_job_def(name)
        selected = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
        assert wanted <= selected, f"job {name} misses {wanted - selected}"
        assert job.description, f"job {name} has no description"
    assert not {"published_store", "text_index"} & {
        k.to_user_string() for k in defs.resolve_job_def("features").asset_layer.selected_asset_keys
    }
    # rebuilding indices runs their blocking recall checks (they gate publication)
    checks = {c.name for c in defs.resolve_job_def("rebuild_indices").asset_layer.asset_graph.asset_check_keys}
    assert {"text_index_recall", "audio_index_recall", "mood_index_recall"} <= checks
    # the tag the production run queue limits on (dagster.prod.yaml)
    assert defs.resolve_job_def("rebuild_indices").tags["moodscape/resource"] == "cpu"
    assert defs.resolve_job_def("recheck_links").tags["moodscape/resource"] == "network"
    assert defs.resolve_job_def("fetch_audio").tags["moodscape/resource"] == "network"


def test_link_checks_are_sharded_and_scheduled_one_run_per_shard() -> None:
    """link_checks has 8 hash-shard partitions (not one per track) and carries the error-rate check;
    the daily schedule asks for one recheck_links run per shard, keyed by day and shard."""
    from datetime import datetime, timezone

    from dagster import AssetKey, build_schedule_context

    from assets.definitions import defs
    from assets.jobs import link_recheck_schedule

    graph = defs.resolve_asset_graph()
    shards = graph.get(AssetKey("link_checks")).partitions_def
    assert shards.get_partition_keys() == [f"{i:02d}" for i in range(8)]
    assert graph.get(AssetKey("track_link_status")).partitions_def is None
    assert {c.name for c in graph.asset_check_keys if c.asset_key == AssetKey("link_checks")} == {
        "link_check_error_rate"
    }
    job = defs.resolve_job_def("recheck_links")
    assert job.partitions_def == shards

    repo = defs.get_repository_def()  # lets the tick validate each partition key against the job

    def tick(when: datetime) -> list:
        return list(
            link_recheck_schedule.evaluate_tick(
                build_schedule_context(scheduled_execution_time=when, repository_def=repo)
            ).run_requests
        )

    requests = tick(datetime(2026, 3, 4, 3, 0, tzinfo=timezone.utc))
    assert [r.partition_key for r in requests] == shards.get_partition_keys()
    assert [r.run_key for r in requests] == [f"links-2026-03-04-{k}" for k in shards.get_partition_keys()]
    assert defs.get_schedule_def("link_recheck_daily").job_name == "recheck_links"
    next_day = tick(datetime(2026, 3, 5, 3, 0, tzinfo=timezone.utc))
    assert not {r.run_key for r in next_day} & {r.run_key for r in requests}  # a new day re-checks every shard


def test_audio_fetch_shares_the_link_shards_and_is_scheduled_one_run_per_shard() -> None:
    """audio_fetch is partitioned by the link-check shards (shard k reads link-check shard k); the hourly
    schedule asks for one fetch_audio run per shard, keyed by hour and shard."""
    from datetime import datetime, timezone

    from dagster import AssetKey, build_schedule_context

    from assets.definitions import defs
    from assets.jobs import audio_fetch_schedule

    shards = defs.resolve_asset_graph().get(AssetKey("link_checks")).partitions_def
    assert defs.resolve_asset_graph().get(AssetKey("audio_fetch")).partitions_def == shards
    assert defs.resolve_job_def("fetch_audio").partitions_def == shards
    repo = defs.get_repository_def()
    ticks = [
        list(audio_fetch_schedule.evaluate_tick(
            build_schedule_context(scheduled_execution_time=datetime(2026, 3, 4, h, 30, tzinfo=timezone.utc),
                                   repository_def=repo)).run_requests)
        for h in (5, 6)
    ]
    assert [r.partition_key for r in ticks[0]] == shards.get_partition_keys()
    assert [r.run_key for r in ticks[0]] == [f"audio-2026-03-04T05-{k}" for k in shards.get_partition_keys()]
    assert not {r.run_key for r in ticks[1]} & {r.run_key for r in ticks[0]}  # a new hour asks every shard again


def test_automation_default_status_follows_env() -> None:
    """MOODSCAPE_AUTOMATION=on starts the schedule and the inbox sensor RUNNING; unset, both STOPPED.

    Module-level definitions read the variable at import, so each setting is checked in a fresh
    interpreter (reloading asset modules in-process would define their assets twice).
    """
    probe = (
        "[defs.get_schedule_def('link_recheck_daily').default_status.value, "
        "defs.get_schedule_def('audio_fetch_hourly').default_status.value, "
        "defs.get_sensor_def('inbox_sensor').default_status.value, "
        "defs.get_sensor_def('inbox_sensor').job_name, defs.get_sensor_def('inbox_sensor').minimum_interval_seconds]"
    )
    for value, expected in [("on", "RUNNING"), ("", "STOPPED")]:
        got = probe_definitions(probe, {**os.environ, "MOODSCAPE_AUTOMATION": value})
        assert got == [expected, expected, expected, "ingest_batch", 30]


def test_makefile_ui_turns_automation_on_and_profile_selects_yaml(tmp_path) -> None:
    make = subprocess.run(
        ["make", "-n", "ui", f"DAGSTER_HOME={tmp_path}", "STAMP=Makefile"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert make.returncode == 0, make.stderr
    assert "MOODSCAPE_AUTOMATION=${MOODSCAPE_AUTOMATION:-on}" in make.stdout and "dagster dev" in make.stdout
    for profile, source in [("prod", "dagster.prod.yaml"), ("dev", "dagster.yaml")]:
        out = subprocess.run(
            ["make", "dagster-yaml", f"DAGSTER_HOME={tmp_path}", f"MOODSCAPE_DAGSTER_PROFILE={profile}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert (tmp_path / "dagster.yaml").read_text() == (REPO / source).read_text()
    bad = subprocess.run(
        ["make", "dagster-yaml", f"DAGSTER_HOME={tmp_path}", "MOODSCAPE_DAGSTER_PROFILE=staging"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "dev or prod" in bad.stderr


def test_dagster_definitions_validate_cli(tmp_path) -> None:
    import os

    exe = Path(sys.executable).parent / "dagster"
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    out = subprocess.run(
        [str(exe), "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


# The code location's snapshot: asset → (group, partitioned); job → (selected assets, tags); schedules,
# sensors, checks. Changed deliberately when the graph changes (audio_fetch: its own sharded job and
# schedule; audio_features reads the fetch tables instead of downloading).
ASSETS = {
    "audio_fetch": ("audio", True),
    "audio_features": ("audio", False),
    "audio_features_imputed": ("audio", False),
    "audio_index": ("index", False),
    "audio_mood_model": ("mood", False),
    "crawl_batch": ("ingest", True),
    "emopia_audio": ("ingest", False),
    "evaluation_report": ("evaluation", False),
    "imputed_metadata": ("heal", False),
    "learned_ranker": ("rank", False),
    "link_checks": ("heal", True),
    "mood_index": ("index", False),
    "music_classifier": ("heal", False),
    "music_tracks": ("heal", False),
    "published_store": ("publish", False),
    "query_mood_model": ("mood", False),
    "raw_tracks": ("ingest", False),
    "tag_priors": ("mood", False),
    "text_embeddings": ("embed", False),
    "text_index": ("index", False),
    "track_link_status": ("heal", False),
    "track_moods": ("mood", False),
}
CPU, NETWORK = {"moodscape/resource": "cpu"}, {"moodscape/resource": "network"}
JOBS = {
    "evaluate": ({"evaluation_report"}, {}),
    "features": ({"audio_features", "audio_features_imputed", "imputed_metadata", "tag_priors", "text_embeddings",
                  "track_moods"}, CPU),
    "heal": (
        {"emopia_audio", "imputed_metadata", "music_classifier", "music_tracks", "raw_tracks", "track_link_status"},
        NETWORK,
    ),
    "ingest_batch": ({"crawl_batch"}, {}),
    "fetch_audio": ({"audio_fetch"}, NETWORK),
    "materialize_everything": (set(ASSETS) - {"crawl_batch", "link_checks", "audio_fetch"}, CPU),
    "mood_models": ({"audio_mood_model", "query_mood_model", "tag_priors"}, CPU),
    "rebuild_indices": ({"audio_index", "mood_index", "published_store", "text_index"}, CPU),
    "recheck_links": ({"link_checks", "track_link_status"}, NETWORK),
}
PARENTS = {
    "audio_fetch": {"raw_tracks", "link_checks"},
    "audio_features": {"raw_tracks", "audio_fetch"},
    "audio_features_imputed": {"audio_features", "imputed_metadata", "text_embeddings"},
    "audio_index": {"audio_features_imputed", "text_embeddings"},
    "audio_mood_model": {"emopia_audio"},  # the audio mood model does not read the query-mood model
    "evaluation_report": {"audio_mood_model", "published_store", "query_mood_model"},
    "imputed_metadata": {"music_tracks", "text_embeddings"},
    "learned_ranker": {
        "audio_features_imputed",
        "audio_index",
        "audio_mood_model",
        "imputed_metadata",
        "music_tracks",
        "query_mood_model",
        "tag_priors",
        "text_embeddings",
        "track_moods",
    },
    "link_checks": {"raw_tracks"},
    "mood_index": {"track_moods", "text_embeddings"},
    "music_tracks": {"audio_features", "music_classifier", "raw_tracks", "track_link_status"},
    # every table and index the published version is assembled from
    "published_store": {"audio_index", "mood_index", "query_mood_model", "text_index", "track_moods",
                        "text_embeddings", "imputed_metadata", "audio_features_imputed", "learned_ranker",
                        "raw_tracks", "audio_fetch"},
    "raw_tracks": {"crawl_batch", "emopia_audio"},
    "text_embeddings": {"music_tracks"},
    "text_index": {"text_embeddings"},
    "track_link_status": {"link_checks", "raw_tracks"},
    "track_moods": {"audio_features_imputed", "audio_mood_model", "imputed_metadata", "music_tracks",
                    "query_mood_model", "tag_priors", "text_embeddings"},
}


def test_code_location_keeps_its_assets_jobs_schedules_and_sensors() -> None:
    from assets.definitions import defs

    graph = defs.resolve_asset_graph()
    got = {
        k.to_user_string(): (graph.get(k).group_name, graph.get(k).partitions_def is not None)
        for k in graph.get_all_asset_keys()
    }
    assert got == ASSETS
    parents = {
        k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys} for k in graph.get_all_asset_keys()
    }
    assert {k: v for k, v in parents.items() if v} == PARENTS
    repo = defs.get_repository_def()
    jobs = {
        j.name: ({k.to_user_string() for k in j.asset_layer.selected_asset_keys}, dict(j.tags))
        for j in repo.get_all_jobs()
        if not j.name.startswith("__")
    }
    assert jobs == JOBS
    assert {j: repo.get_job(j).partitions_def is not None for j in JOBS} == {
        j: j in {"ingest_batch", "recheck_links", "fetch_audio"} for j in JOBS
    }
    assert {(s.name, s.job_name, s.cron_schedule) for s in repo.schedule_defs} == {
        ("link_recheck_daily", "recheck_links", "0 3 * * *"),
        ("audio_fetch_hourly", "fetch_audio", "30 * * * *"),
    }
    assert {(s.name, tuple(sorted(t.job_name for t in s.targets))) for s in repo.sensor_defs} == {
        ("inbox_sensor", ("ingest_batch",)),
        ("rebuild_after_batch", ("materialize_everything",)),
    }
    assert {f"{c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys} == {
        "audio_index:audio_index_recall",
        "link_checks:link_check_error_rate",
        "mood_index:mood_index_recall",
        "text_index:text_index_recall",
    }


def test_asset_modules_import_no_cycle_and_no_asset_functions_of_each_other() -> None:
    """The import graph among ``assets`` modules is acyclic, and an asset module reaches another's
    assets only by key (it imports helpers, never ``@asset`` functions or ``_private`` names)."""
    import ast
    import importlib

    from dagster import AssetsDefinition

    modules = {p.stem: p for p in (REPO / "assets").glob("*.py") if p.stem != "__init__"}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "assets":
                if node.module == "assets":
                    targets |= {a.name for a in node.names}
                else:
                    target = node.module.split(".")[1]
                    targets.add(target)
                    module = importlib.import_module(node.module)
                    for alias in node.names:
                        assert not alias.name.startswith("_"), f"{name} imports private {node.module}.{alias.name}"
                        if name not in {"graph", "build"}:
                            assert not isinstance(getattr(module, alias.name), AssetsDefinition), (
                                f"{name} imports the asset {node.module}.{alias.name}"
                            )
        edges[name] = targets & set(modules)
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"import cycle: {' -> '.join((*path, node))}"
        if node in done:
            return
        for nxt in edges[node]:
            visit(nxt, (*path, node))
        done.add(node)

    for module in modules:
        visit(module, ())
