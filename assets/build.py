"""The whole asset graph (the store graph plus the evaluation) and ``materialize_all``, the one
in-process way to build it, used by ``moodscape materialize`` and the tests."""

from typing import Any

from dagster import ExecuteInProcessResult, load_asset_checks_from_modules, load_assets_from_modules

from assets import evaluation
from assets.graph import materialize_graph, store_assets, store_checks

all_assets = [*store_assets, *load_assets_from_modules([evaluation])]
all_checks = [*store_checks, *load_asset_checks_from_modules([evaluation])]


def materialize_all(**kwargs: Any) -> list[ExecuteInProcessResult]:
    """Materialize the whole graph in-process; keyword arguments as ``assets.graph.materialize_graph``
    (``resources``, ``instance``, ``select``, ``exclude``, ``shards``, ``raise_on_error``)."""
    return materialize_graph(all_assets, all_checks, **kwargs)
