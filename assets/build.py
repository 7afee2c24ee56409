"""The whole asset graph (the store graph plus the evaluation) and ``materialize_all``, the one
in-process way to build it, used by ``moodscape materialize`` and the tests."""

from collections.abc import Collection, Sequence

from dagster import DagsterInstance, ExecuteInProcessResult, load_asset_checks_from_modules, load_assets_from_modules

from assets import evaluation
from assets.graph import materialize_graph, store_assets, store_checks

all_assets = [*store_assets, *load_assets_from_modules([evaluation])]
all_checks = [*store_checks, *load_asset_checks_from_modules([evaluation])]


def materialize_all(
    *,
    resources: dict,
    instance: DagsterInstance | None = None,
    select: Collection[str] | None = None,
    exclude: Collection[str] = (),
    shards: Sequence[str] | None = None,
    raise_on_error: bool = True,
) -> list[ExecuteInProcessResult]:
    """Materialize the whole graph in-process (``assets.graph.materialize_graph`` over every asset)."""
    return materialize_graph(
        all_assets,
        all_checks,
        resources=resources,
        instance=instance,
        select=select,
        exclude=exclude,
        shards=shards,
        raise_on_error=raise_on_error,
    )
