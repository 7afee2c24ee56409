"""Run settings for every asset, as one Dagster resource (values default from the environment)."""

import os

from dagster import ConfigurableResource, DefaultScheduleStatus, DefaultSensorStatus


def _env_bool(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _env_int(name: str, default: int | None) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return None if value.lower() in {"none", "all"} else int(value)


class MoodscapeSettings(ConfigurableResource):
    """How a run behaves (the store it writes to is the ``store`` resource, ``assets.resources``)."""

    crawl: str | None = os.environ.get("MOODSCAPE_CRAWL") or None
    offline: bool = _env_bool("MOODSCAPE_OFFLINE")
    jamendo_limit: int | None = _env_int("MOODSCAPE_JAMENDO_LIMIT", 6000)
    emopia_limit: int | None = _env_int("MOODSCAPE_EMOPIA_LIMIT", None)
    workers: int = int(os.environ.get("MOODSCAPE_WORKERS", "2"))
    link_check_budget: int = int(os.environ.get("MOODSCAPE_LINKCHECK_BUDGET", "2000"))
    link_check_deadline_s: float = float(os.environ.get("MOODSCAPE_LINKCHECK_DEADLINE_S", "60"))
    link_allow_hosts: str = os.environ.get("MOODSCAPE_LINKCHECK_ALLOW_HOSTS", "")
    # Quick mode for integration tests: train the query-mood model on a subset, one ridge candidate.
    query_mood_train_limit: int | None = _env_int("MOODSCAPE_QUERY_MOOD_LIMIT", None)
    eval_max_queries: int | None = _env_int("MOODSCAPE_EVAL_MAX_QUERIES", 300)
    progress: bool = False
    # Audio features: analyse 30 s from this offset.
    audio_offset_s: float = float(os.environ.get("MOODSCAPE_AUDIO_OFFSET_S", "0"))
    # Audio fetching (tracks without audio_path whose link is VALID/MOVED): links asked per run over all
    # shards (each shard run its share), within a wall-clock deadline per shard run; audio capped at
    # max_bytes, a track page at page_max_bytes; per host at most per_host requests in flight, their
    # starts host_interval_s apart.
    audio_fetch_budget: int = int(os.environ.get("MOODSCAPE_AUDIO_FETCH_BUDGET", "200"))
    audio_fetch_deadline_s: float = float(os.environ.get("MOODSCAPE_AUDIO_FETCH_DEADLINE_S", "30"))
    audio_fetch_max_bytes: int = int(os.environ.get("MOODSCAPE_AUDIO_FETCH_MAX_BYTES", str(4 * 1024 * 1024)))
    audio_fetch_page_max_bytes: int = int(
        os.environ.get("MOODSCAPE_AUDIO_FETCH_PAGE_MAX_BYTES", str(2 * 1024 * 1024))
    )
    audio_fetch_per_host: int = int(os.environ.get("MOODSCAPE_AUDIO_FETCH_PER_HOST", "2"))
    audio_fetch_host_interval_s: float = float(os.environ.get("MOODSCAPE_AUDIO_FETCH_HOST_INTERVAL_S", "1.0"))

    def allow_hosts(self) -> frozenset[str]:
        return frozenset(h.strip() for h in self.link_allow_hosts.split(",") if h.strip())


def automation_enabled() -> bool:
    """Whether schedules and sensors start RUNNING (``MOODSCAPE_AUTOMATION=on``, set by ``make ui``).

    Off by default, so tests, the CLI and ``dagster definitions validate`` never start automation.
    A status an operator toggles in the UI is stored in the instance and wins over this default.
    """
    return _env_bool("MOODSCAPE_AUTOMATION")


def schedule_status() -> DefaultScheduleStatus:
    """RUNNING when automation is on (``MOODSCAPE_AUTOMATION``), else STOPPED."""
    return DefaultScheduleStatus.RUNNING if automation_enabled() else DefaultScheduleStatus.STOPPED


def sensor_status() -> DefaultSensorStatus:
    """RUNNING when automation is on (``MOODSCAPE_AUTOMATION``), else STOPPED."""
    return DefaultSensorStatus.RUNNING if automation_enabled() else DefaultSensorStatus.STOPPED
