"""``moodscape bench``: build (or reuse) a synthetic store of N tracks and load-test the real service;
``moodscape bench-pipeline``: a generated N-row crawl through the real materialize path, timed."""

import argparse
import json
from pathlib import Path


def cmd_bench(args: argparse.Namespace) -> int:
    from bench.service import run_benchmark

    env = {}
    if args.serve_threads:
        env["MOODSCAPE_SERVE_THREADS"] = str(args.serve_threads)
    result = run_benchmark(
        n_tracks=args.tracks, out_dir=Path(args.out), queries=args.queries, concurrency=args.concurrency,
        cache=Path(args.cache) if args.cache else None, factory=args.factory, seed=args.seed,
        publish_vectors=True if args.publish_vectors else None,
        prototypes=args.prototypes, audio_clips=args.audio_clips, mood_model_rows=args.mood_model_rows,
        load_seconds=args.load_seconds, clients=args.clients, swap=args.swap, service_env=env,
        progress=not args.quiet,
    )
    print(json.dumps(result, indent=2))
    return 0 if result["full"]["errors"] == 0 and result["baseline"]["errors"] == 0 else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand to the ``moodscape`` parser."""
    p = sub.add_parser("bench",
                       help="load-test the real service over a synthetic store of N tracks (writes DIR/bench.json)")
    p.add_argument("--tracks", type=int, required=True, help="synthetic store size N (built once, reused by N)")
    p.add_argument("--queries", type=int, default=400, help="real query texts per mode (full and baseline)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    p.add_argument("--out", required=True, help="output folder for bench.json and service.log")
    p.add_argument("--cache", help="synthetic store cache (default $MOODSCAPE_SYNTH_CACHE or <home>/synth)")
    p.add_argument("--factory", help="FAISS factory for text/audio indices (default: size-adaptive)")
    p.add_argument("--publish-vectors", action="store_true",
                   help="also publish text/audio .npy copies (default: only below 50k tracks)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prototypes", type=int, default=4000, help="real demo-crawl rows the tracks derive from")
    p.add_argument("--audio-clips", type=int, default=42,
                   help="real bundled clips whose audio features seed the audio vectors")
    p.add_argument("--mood-model-rows", type=int, default=3000, help="EmoBank rows for the store's query-mood model")
    p.add_argument("--load-seconds", type=float, default=0.0, help="also run a soak test this long (full mode)")
    p.add_argument("--clients", type=int, default=100, help="concurrent clients in the soak test")
    p.add_argument("--swap", action="store_true", help="publish a hard-linked new version mid-soak (hot reload)")
    p.add_argument("--serve-threads", type=int, default=0,
                   help="encoder/FAISS threads per call in the service "
                        "(MOODSCAPE_SERVE_THREADS; 0 = the service default, 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_bench)
    _register_pipeline(sub)


def cmd_bench_pipeline(args: argparse.Namespace) -> int:
    from bench.crawlgen import CrawlShape
    from bench.pipeline import run_pipeline_bench

    shape = CrawlShape(duplicate_share=args.duplicate_share, malformed_share=args.malformed_share,
                       dead_share=args.dead_share)
    report = run_pipeline_bench(
        rows=args.rows, out_dir=Path(args.out), incremental_share=args.incremental_share, seed=args.seed,
        shape=shape, jamendo_limit=args.jamendo_limit or None, emopia_limit=args.emopia_limit or None,
        query_mood_limit=args.query_mood_limit or None, workers=args.workers, models_in_run=args.models_in_run,
        models_from=Path(args.models_from) if args.models_from else None, warmup=not args.no_warmup,
        profile=args.profile, nice=args.nice,
    )
    print(json.dumps({k: report[k] for k in ("rows", "total_s", "peak_rss_mb", "assets", "incremental")}, indent=2))
    return 0


def _register_pipeline(sub: argparse._SubParsersAction) -> None:
    """Add the ``bench-pipeline`` subcommand to the ``moodscape`` parser."""
    p = sub.add_parser("bench-pipeline",
                       help="materialize a generated N-row crawl, per-asset seconds and peak RSS "
                            "(writes DIR/pipeline.json)")
    p.add_argument("--rows", type=int, required=True, help="crawl rows to generate (from the real demo rows)")
    p.add_argument("--out", required=True, help="output folder (pipeline.json, logs/, home/ with the store)")
    p.add_argument("--incremental-share", type=float, default=0.01,
                   help="then add this share of new rows and build again (0 = no incremental run)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duplicate-share", type=float, default=0.02)
    p.add_argument("--malformed-share", type=float, default=0.005)
    p.add_argument("--dead-share", type=float, default=0.05, help="of the rows with a link: dead (404) links")
    p.add_argument("--jamendo-limit", type=int, default=6000, help="MTG-Jamendo prototype rows (0 = all)")
    p.add_argument("--emopia-limit", type=int, default=16, help="EMOPIA clips rendered in the warm-up (0 = all)")
    p.add_argument("--query-mood-limit", type=int, default=1500,
                   help="EmoBank rows for the warm-up query-mood model (0 = all, the full CV)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--models-in-run", action="store_true",
                   help="keep the crawl-independent models in the timed builds (when materialize reuses them)")
    p.add_argument("--models-from", metavar="EARLIER_OUT",
                   help="seed the home with the models of an earlier run's output folder (reused when unchanged)")
    p.add_argument("--no-warmup", action="store_true",
                   help="with --models-from: build with the copied models as they are (no warm-up run)")
    p.add_argument("--profile", action="store_true", help="cProfile each timed build (DIR/*.pstats)")
    p.add_argument("--nice", type=int, default=0, help="run the builds under nice -n N")
    p.set_defaults(func=cmd_bench_pipeline)
