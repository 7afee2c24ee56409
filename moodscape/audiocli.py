"""``moodscape bench-audio PATH... --out DIR``: the project's audio extraction (decode, librosa features,
backbone, all-in) against the naive librosa baseline.

``register(sub)`` adds the subcommand to the CLI's subparsers. Progress goes to stderr; stdout
carries the report as JSON (also written to ``DIR/bench_audio.json``).
"""

import argparse
import json
import sys
from pathlib import Path

BENCH_FILE = "bench_audio.json"


def cmd_bench_audio(args: argparse.Namespace) -> int:
    """Benchmark on every audio file under ``args.paths``; exit 2 when there is nothing to time."""
    from bench.audio import collect_clips, run_bench
    from pipelines import store

    try:
        clips = collect_clips(paths=args.paths)
        if args.limit:
            clips = clips[: args.limit]
        report = run_bench(clips=clips, duration=args.duration, threads=args.threads, progress=not args.quiet)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store.write_json(report, out / BENCH_FILE)
    shown = report if args.per_clip else {k: v for k, v in report.items() if k != "per_clip"}
    print(json.dumps(shown, indent=2))
    return 0


def register(sub: "argparse._SubParsersAction") -> None:
    """Add ``bench-audio`` to the ``moodscape`` subparsers."""
    p = sub.add_parser(
        "bench-audio", help="time decode, librosa features and the backbone per clip, vs a naive librosa baseline"
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders (searched recursively)")
    p.add_argument("--out", required=True, help="folder for bench_audio.json")
    p.add_argument("--duration", type=float, default=30.0, help="seconds analysed per clip (default 30)")
    p.add_argument("--threads", type=int, default=1, help="BLAS/FFT/torch threads (default 1: per-core numbers)")
    p.add_argument("--limit", type=int, default=0, help="time only the first N clips (0 = all)")
    p.add_argument("--per-clip", action="store_true", help="also print per-clip timings (always in the file)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_bench_audio)
