"""The Dagster code location loads, validates, and has the lineage the README promises."""

import subprocess
import sys
from pathlib import Path

from dagster import AssetKey

REPO = Path(__file__).resolve().parents[1]

EXPECTED_EDGES = [
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


def test_dagster_definitions_validate_cli(tmp_path) -> None:
    import os

    exe = Path(sys.executable).parent / "dagster"
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    out = subprocess.run([str(exe), "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
                         cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
