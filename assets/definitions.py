"""The one Dagster ``Definitions`` of Moodscape (``dagster dev -w workspace.yaml``).

Jobs (``assets.jobs``): ``materialize_everything``, ``heal``, ``features``, ``mood_models``,
``rebuild_indices``, ``evaluate``, ``recheck_links`` and ``fetch_audio`` (per track shard),
``ingest_batch`` (per inbox file); resources by deployment (``assets.resources``); the executor
every job runs its steps with by ``MOODSCAPE_EXECUTOR`` (``assets.executors``).
"""

from dagster import Definitions

from assets.build import all_assets, all_checks
from assets.executors import executor_for
from assets.jobs import JOBS, audio_fetch_schedule, inbox_sensor, link_recheck_schedule, rebuild_after_batch
from assets.resources import deployment, resources_for

defs = Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=JOBS,
    sensors=[inbox_sensor, rebuild_after_batch],
    schedules=[link_recheck_schedule, audio_fetch_schedule],
    resources=resources_for(deployment()),
    executor=executor_for(),
)
