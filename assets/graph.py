"""The asset graph that builds a store from a crawl (every asset but the evaluation), and the
in-process materializer that runs such a graph: the unpartitioned assets the sharded ones read, then
one run per track shard (its link checks, then its audio fetch), then the rest, each run with the
asset checks of its assets.
"""

from collections.abc import Collection, Sequence

from dagster import (
    AssetChecksDefinition,
    AssetsDefinition,
    AssetSelection,
    DagsterInstance,
    ExecuteInProcessResult,
    load_asset_checks_from_modules,
    load_assets_from_modules,
    materialize,
)

from assets import audio, embed, fetch, heal, index, ingest, links, mood, publish, ranker
from assets.partitions import link_shards
from assets.resources import StoreResource

STORE_MODULES = [ingest, links, heal, fetch, embed, audio, mood, index, ranker, publish]
# Partitioned by the same track shards and run shard by shard, together (link checks, then the fetch).
SHARDED = ("link_checks", "audio_fetch")

store_assets: list[AssetsDefinition] = load_assets_from_modules(STORE_MODULES)
store_checks: list[AssetChecksDefinition] = load_asset_checks_from_modules(STORE_MODULES)


def _names(asset_def: AssetsDefinition) -> set[str]:
    return {k.to_user_string() for k in asset_def.keys}


def materialize_graph(
    assets: Sequence[AssetsDefinition],
    checks: Sequence[AssetChecksDefinition],
    *,
    resources: dict,
    instance: DagsterInstance | None = None,
    select: Collection[str] | None = None,
    exclude: Collection[str] = (),
    shards: Sequence[str] | None = None,
    raise_on_error: bool = True,
) -> list[ExecuteInProcessResult]:
    """Materialize ``assets`` in-process (see the module docstring for the run order).

    The batch-partitioned inbox ingest is never run here (``raw_tracks`` reads whatever batches
    exist). ``select`` (asset names, default every unpartitioned asset plus the sharded ones,
    ``link_checks`` and ``audio_fetch``) minus ``exclude`` is what is built; ``shards`` narrows the
    shard partitions (default all). ``resources`` without ``store`` use the store of
    ``MOODSCAPE_HOME``. Returns the results in run order; stops at the first failed run (or raises,
    with ``raise_on_error``).
    """
    resources = {"store": StoreResource(), **resources}

    def picked(a: AssetsDefinition) -> bool:
        return (select is None or bool(_names(a) & set(select))) and not _names(a) & set(exclude)

    wanted = [a for a in assets if a.partitions_def is None and picked(a)]
    sharded = [a for name in SHARDED for a in assets if name in _names(a) and picked(a)]
    before_keys = AssetSelection.assets(*sharded).upstream().resolve(list(assets)) if sharded else set()
    before = [a for a in wanted if set(a.keys) <= before_keys]
    after = [a for a in wanted if a not in before]
    plan: list[tuple[list[AssetsDefinition], str | None]] = []
    if before:
        plan.append((before, None))
    if sharded:
        plan += [(sharded, shard) for shard in (shards if shards is not None else link_shards.get_partition_keys())]
    if after:
        plan.append((after, None))
    results = []
    for selected, shard in plan:
        keys = {k for a in selected for k in a.keys}
        wanted_checks = [c for c in checks if {ck.asset_key for ck in c.check_keys} <= keys]
        result = materialize(
            [*selected, *wanted_checks],
            instance=instance,
            resources=resources,
            partition_key=shard,
            raise_on_error=raise_on_error,
        )
        results.append(result)
        if not result.success:
            break
    return results
