"""The executor every Dagster job runs its steps with, chosen by ``MOODSCAPE_EXECUTOR``.

- ``multiprocess`` (default): one process per step on the run's machine, at most
  ``MOODSCAPE_MAX_CONCURRENT`` at once (default: the CPUs this process may use, cgroup quota included)
- ``in_process``: every step in the run's own process, one after another
- ``celery``: steps queued on a Celery broker (``MOODSCAPE_CELERY_BROKER``) for ``dagster-celery`` workers
- ``k8s``: one Kubernetes Job per step (``dagster-k8s``, installed in the cluster image only)

``execute_in_process`` and ``moodscape materialize`` always run in-process, whatever the choice.
"""

import math
import os
from pathlib import Path

from dagster import ExecutorDefinition, in_process_executor, multiprocess_executor

from pipelines.errors import InvalidInputError

EXECUTORS = ("in_process", "multiprocess", "celery", "k8s")
DEFAULT_EXECUTOR = "multiprocess"
DEFAULT_CELERY_BROKER = "redis://127.0.0.1:6379/0"
# How long a queued step may stay reserved but unacknowledged before Redis hands it to another
# worker: longer than the longest step, so a long step is never delivered twice.
CELERY_VISIBILITY_TIMEOUT_S = 12 * 3600
_CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1 = (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))


def cgroup_cpu_limit(cpu_max: Path = _CGROUP_V2, v1: tuple[Path, Path] = _CGROUP_V1) -> int | None:
    """The container's CPU quota rounded up to whole CPUs (cgroup v2 ``cpu.max`` or v1 CFS), None without one."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota, period = v1[0].read_text().strip(), v1[1].read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1") or int(period) <= 0:
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_limit()
    return max(1, min(cpus, quota) if quota else cpus)


def max_concurrent() -> int:
    """Steps the multiprocess executor runs at once: ``MOODSCAPE_MAX_CONCURRENT``, else the usable CPUs."""
    value = os.environ.get("MOODSCAPE_MAX_CONCURRENT", "").strip()
    if not value:
        return usable_cpus()
    if not value.isdigit() or int(value) < 1:
        raise InvalidInputError(
            f"MOODSCAPE_MAX_CONCURRENT must be a whole number ≥ 1, not {value!r}", field="MOODSCAPE_MAX_CONCURRENT"
        )
    return int(value)


def executor_name() -> str:
    """The chosen executor: ``MOODSCAPE_EXECUTOR`` (one of ``EXECUTORS``), default ``multiprocess``."""
    name = os.environ.get("MOODSCAPE_EXECUTOR", "").strip().lower().replace("-", "_") or DEFAULT_EXECUTOR
    if name not in EXECUTORS:
        raise InvalidInputError(
            f"MOODSCAPE_EXECUTOR must be one of {', '.join(EXECUTORS)}, not {name!r}", field="MOODSCAPE_EXECUTOR"
        )
    return name


def celery_config() -> dict:
    """The celery executor's config: ``MOODSCAPE_CELERY_BROKER`` (default a local Redis) as broker and
    result backend. Workers are started with the same values (``deploy/celery/celery.yaml``)."""
    broker = os.environ.get("MOODSCAPE_CELERY_BROKER") or DEFAULT_CELERY_BROKER
    return {
        "broker": broker,
        "backend": broker,
        "config_source": {"broker_transport_options": {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT_S}},
    }


def _celery() -> ExecutorDefinition:
    try:
        from dagster_celery import celery_executor
    except ImportError as exc:  # pragma: no cover - dagster-celery is in the lock file
        raise InvalidInputError(
            "MOODSCAPE_EXECUTOR=celery needs dagster-celery (pip install -c requirements.lock .)",
            field="MOODSCAPE_EXECUTOR",
        ) from exc
    return celery_executor.configured(celery_config(), name="celery")


def _k8s() -> ExecutorDefinition:
    try:
        from dagster_k8s import k8s_job_executor
    except ImportError as exc:
        raise InvalidInputError(
            "MOODSCAPE_EXECUTOR=k8s needs dagster-k8s at the version matching dagster (see docs/PRODUCTION.md)",
            field="MOODSCAPE_EXECUTOR",
        ) from exc
    return k8s_job_executor


def executor_for(name: str | None = None) -> ExecutorDefinition:
    """The executor definition of ``name`` (default ``executor_name()``)."""
    name = name or executor_name()
    if name == "in_process":
        return in_process_executor
    if name == "multiprocess":
        return multiprocess_executor.configured({"max_concurrent": max_concurrent()}, name="multiprocess")
    if name == "celery":
        return _celery()
    if name == "k8s":
        return _k8s()
    raise InvalidInputError(f"unknown executor {name!r}: one of {', '.join(EXECUTORS)}", field="MOODSCAPE_EXECUTOR")
