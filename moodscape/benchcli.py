"""``moodscape bench``: build (or reuse) a synthetic store of N tracks and load-test the real service."""

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
