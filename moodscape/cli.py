"""``moodscape`` — materialize the asset graph, serve the API, ask for recommendations.

Heavy imports (dagster, litestar, torch) happen inside each command, so ``--help`` is instant.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

from moodscape.env import prepare_env
from pipelines import store
from pipelines.errors import MoodscapeError, UnavailableError

EXIT_DOMAIN_ERROR = 2  # the input cannot be used, or there is nothing to serve


def cmd_materialize(args: argparse.Namespace) -> int:
    prepare_env()
    from dagster import DagsterInstance

    from assets.build import materialize_all
    from assets.settings import MoodscapeSettings

    overrides = {"progress": not args.quiet}
    if args.offline:
        overrides["offline"] = True
    settings = MoodscapeSettings(**overrides)
    print(f"materializing every asset into {store.store_root()} (Dagster home {os.environ['DAGSTER_HOME']})",
          flush=True)
    started = time.perf_counter()
    # ingest, then the link checks one run per hash shard, then the rest of the graph
    results = materialize_all(instance=DagsterInstance.get(), resources={"settings": settings}, raise_on_error=False)
    elapsed = time.perf_counter() - started
    failed = [r for r in results if not r.success]
    if failed:
        for result in failed:
            for event in result.all_events:
                if event.is_failure:
                    print(f"FAILED: {event.step_key}: {event.message}", file=sys.stderr)
        return 1
    print(json.dumps({"success": True, "seconds": round(elapsed, 1), "runs": len(results),
                      "store_version": store.read_current_version()}))
    return 0


def _configure_serving_threads() -> int:
    """Intra-op threads for the query encoder and FAISS in the service (``MOODSCAPE_SERVE_THREADS``, default 1).

    The service parallelises across requests (a thread per request); letting each model call and
    each one-query search also spawn a thread per core oversubscribes the cores.
    """
    threads = max(1, int(os.environ.get("MOODSCAPE_SERVE_THREADS", "1")))
    # OpenMP reads its default team size once, at load, and threads other than the caller do not
    # inherit omp_set_num_threads: set the environment before faiss/torch are first imported.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import faiss

    faiss.omp_set_num_threads(threads)
    # torch is not imported here: the default (ONNX) query encoder serves without it, and if a
    # torch encoder is chosen, torch sizes its pool from OMP_NUM_THREADS when first imported.
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads


def _require_published_store() -> Path:
    """The published version folder of ``MOODSCAPE_HOME``; UnavailableError when there is none."""
    folder = store.current_version_dir()
    if folder is None:
        raise UnavailableError(f"no published store under {store.store_root()}: run `make materialize` first")
    return folder


def cmd_serve(args: argparse.Namespace) -> int:
    prepare_env()
    threads = _configure_serving_threads()
    import uvicorn

    from serving.app import create_app

    _require_published_store()
    base = f"http://{args.host}:{args.port}"
    print(
        f"Moodscape API:   {base}/recommend (POST)\n"
        f"OpenAPI docs:    {base}/schema/swagger  (spec: {base}/schema/openapi.json)\n"
        f"Try:             curl -s -X POST {base}/recommend -H 'content-type: application/json' "
        "-d '{\"query\": \"i miss my ex\", \"top_k\": 10}'\n"
        f"Dagster UI:      run `make ui` and open http://127.0.0.1:3000\n",
        flush=True,
    )
    print(f"Threads per model call / index search: {threads} (MOODSCAPE_SERVE_THREADS)", flush=True)
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="info")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    prepare_env()
    from pipelines.index.bundle import load_bundle
    from pipelines.rank.learned import ranker_for_bundle
    from pipelines.rank.recommender import Recommender, RecommendRequest

    folder = _require_published_store()
    bundle = load_bundle(folder)
    recommender = Recommender(bundle, ranker=ranker_for_bundle(bundle))
    result = recommender.recommend(RecommendRequest(query=args.query, top_k=args.top_k, mode=args.mode))
    if args.json:
        import msgspec

        print(msgspec.json.encode(result).decode())
        return 0
    from rich.console import Console
    from rich.table import Table

    mood = result.mood_detected
    title = f"{args.query!r} → valence {mood.valence:+.2f}, arousal {mood.arousal:+.2f} ({result.query_type})"
    table = Table(title=title)
    for col in ("#", "score", "title / track", "artist", "genre", "valence", "arousal", "mood src", "link"):
        table.add_column(col)
    for i, r in enumerate(result.results, 1):
        table.add_row(
            str(i), f"{r.score:.3f}", (r.title or r.track_id)[:48], (r.artist or "")[:20], (r.genre or "")[:16],
            f"{r.mood.valence:+.2f}", f"{r.mood.arousal:+.2f}", r.mood.source, r.url_status or "",
        )
    Console().print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moodscape", description="Mood-aware music recommender.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("materialize",
                       help="build every asset (heal → audio → mood → indices) and publish a store version")
    p.add_argument("--offline", action="store_true", help="no network: link checks record UNKNOWN/offline")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_materialize)

    p = sub.add_parser("serve", help="serve the published store over HTTP")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("recommend", help="recommend tracks for a query from the published store")
    p.add_argument("query")
    p.add_argument("--top-k", type=int, default=10)
    from pipelines.rank.types import MODES

    p.add_argument("--mode", choices=list(MODES), default="full")
    p.add_argument("--json", action="store_true", help="print the response as JSON")
    p.set_defaults(func=cmd_recommend)

    from moodscape import evalcli, healcli

    evalcli.register(sub)  # evaluate
    healcli.register(sub)  # ingest, check-links, bench-links
    from moodscape import audiocli

    audiocli.register(sub)  # bench-audio
    from moodscape import benchcli

    benchcli.register(sub)  # bench
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a domain error (bad input, nothing published) prints ``error: …`` to
    stderr and exits 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MoodscapeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DOMAIN_ERROR


if __name__ == "__main__":
    sys.exit(main())
