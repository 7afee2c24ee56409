"""The service's settings: read once from the environment, defaults, and startup errors naming the variable."""

import pytest

from serving.app import create_app
from serving.settings import ServingSettings


def test_defaults_from_an_empty_environment() -> None:
    s = ServingSettings.from_env({})
    assert s == ServingSettings()
    assert (s.encoder_batching, s.retrieval_threads, s.reload_interval_s) == ("auto", 3, 2.0)
    assert (s.cache_size, s.redis_url, s.redis_ttl_s, dict(s.encoder_environ)) == (1024, None, 600, {})


def test_values_are_parsed() -> None:
    s = ServingSettings.from_env({
        "MOODSCAPE_ENCODER_BATCHING": " OFF ", "MOODSCAPE_RETRIEVAL_THREADS": "-2",
        "MOODSCAPE_RELOAD_INTERVAL_S": "0.5", "MOODSCAPE_CACHE_SIZE": "7", "MOODSCAPE_REDIS_URL": "redis://h:1/0",
        "MOODSCAPE_REDIS_TTL_S": "30", "MOODSCAPE_QUERY_ENCODER": "fp32", "MOODSCAPE_SERVE_THREADS": "2",
        "UNRELATED": "x",
    })
    assert (s.encoder_batching, s.retrieval_threads, s.reload_interval_s) == ("off", 0, 0.5)
    assert (s.cache_size, s.redis_url, s.redis_ttl_s) == (7, "redis://h:1/0", 30)
    assert dict(s.encoder_environ) == {"MOODSCAPE_QUERY_ENCODER": "fp32", "MOODSCAPE_SERVE_THREADS": "2"}


@pytest.mark.parametrize(("name", "value"), [
    ("MOODSCAPE_ENCODER_BATCHING", "yes"),
    ("MOODSCAPE_RETRIEVAL_THREADS", "three"),
    ("MOODSCAPE_RELOAD_INTERVAL_S", "soon"),
    ("MOODSCAPE_CACHE_SIZE", "1k"),
    ("MOODSCAPE_REDIS_TTL_S", "1.5"),
    ("MOODSCAPE_QUERY_ENCODER", "fp64"),
])
def test_a_bad_value_fails_naming_the_variable(name, value) -> None:
    with pytest.raises(ValueError, match=name):
        ServingSettings.from_env({name: value})


def test_encoder_batching_setting_is_validated(bundle_dir, monkeypatch) -> None:
    monkeypatch.setenv("MOODSCAPE_ENCODER_BATCHING", "yes")
    with pytest.raises(ValueError, match="MOODSCAPE_ENCODER_BATCHING"):
        create_app(bundle_dir=bundle_dir)
    for value in ("auto", "on", "OFF", ""):
        monkeypatch.setenv("MOODSCAPE_ENCODER_BATCHING", value)
        assert create_app(bundle_dir=bundle_dir) is not None
