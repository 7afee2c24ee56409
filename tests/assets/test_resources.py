"""The store resource and the resources of each deployment."""

import os
from pathlib import Path

import polars as pl
import pytest

from tests.helpers import probe_definitions


def test_store_resource_follows_its_home_or_moodscape_home(tmp_path, monkeypatch) -> None:
    from assets.resources import StoreResource
    from pipelines.store import StoreLayout

    monkeypatch.setenv("MOODSCAPE_HOME", str(tmp_path / "env"))
    explicit, following = StoreResource(home=str(tmp_path / "mine")), StoreResource()
    assert explicit.layout() == StoreLayout.under_home(tmp_path / "mine")
    assert following.layout() == StoreLayout.under_home(tmp_path / "env")
    monkeypatch.setenv("MOODSCAPE_HOME", str(tmp_path / "moved"))  # read when used, not when configured
    assert following.layout() == StoreLayout.under_home(tmp_path / "moved")
    assert explicit.inbox() == (tmp_path / "mine" / "inbox").resolve()

    explicit.write(pl.DataFrame({"x": [1, 2]}), "t")
    assert explicit.load("t")["x"].to_list() == [1, 2]
    assert explicit.load_optional("absent") is None
    with pytest.raises(FileNotFoundError, match="'absent'.*materialize its asset first"):
        explicit.load("absent")
    assert not (tmp_path / "moved").exists()


def test_resources_by_deployment(tmp_path) -> None:
    from dagster import EnvVar

    from assets.resources import resources_for
    from assets.settings import MoodscapeSettings

    test = resources_for("test", home_dir=tmp_path)
    assert Path(test["store"].home) == tmp_path and test["settings"].offline
    assert resources_for("local")["store"].home is None
    prod = resources_for("prod", settings=MoodscapeSettings(workers=4))
    assert prod["store"].home == EnvVar("MOODSCAPE_HOME") and prod["settings"].workers == 4
    with pytest.raises(ValueError, match="explicit home"):
        resources_for("test")
    with pytest.raises(ValueError, match="unknown deployment"):
        resources_for("staging")


def test_definitions_resources_follow_the_dagster_profile() -> None:
    """MOODSCAPE_DAGSTER_PROFILE=prod loads the prod resources (checked in a fresh interpreter: the
    Definitions are built at import)."""
    for profile, expected in [("prod", "MOODSCAPE_HOME"), ("dev", "None")]:
        env = {**os.environ, "MOODSCAPE_DAGSTER_PROFILE": profile}
        got = probe_definitions("repr(defs.resources['store'].home)", env)
        assert expected in got
