"""``moodscape evaluate``: build a store from a labelled corpus and measure moods and rankings
(full vs the SBERT baseline; ``--ablate`` adds the hand weights and each signal left out);
``register(sub)`` adds the subcommand to the CLI's subparsers.
Malformed inputs raise ``EvaluationInputError`` (the CLI prints it and exits 2).
"""

import argparse
import json
import os
from pathlib import Path

from moodscape.env import prepare_env

MAX_QUERIES_ENV = "MOODSCAPE_EVAL_MAX_QUERIES"


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate and print the report as JSON (also in ``--out``: report.json, report.md, plots)."""
    prepare_env()
    from assets.evalstore import build_store_from_corpus
    from pipelines.measure.handle import BundleStoreHandle
    from pipelines.measure.run import run_evaluation

    handles: list[BundleStoreHandle] = []

    def build_store(corpus, workdir: Path) -> BundleStoreHandle:
        folder = build_store_from_corpus(corpus=corpus, workdir=workdir, offline=args.offline,
                                         workers=args.workers)
        handle = BundleStoreHandle(folder)
        handles.append(handle)
        return handle

    try:
        report = run_evaluation(
            corpus_path=Path(args.corpus), labels_path=Path(args.labels) if args.labels else None,
            queries_path=Path(args.queries) if args.queries else None, out_dir=Path(args.out),
            build_store=build_store, progress=True,
            workdir=Path(args.workdir) if args.workdir else None, ablate=args.ablate,
            max_queries=args.max_queries,
        )
    finally:
        for h in handles:
            h.close()
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


def register(sub: "argparse._SubParsersAction") -> None:
    """Add ``evaluate`` to the ``moodscape`` subparsers."""
    p = sub.add_parser(
        "evaluate",
        help="build a store from a labelled corpus and measure moods and rankings (full vs SBERT baseline)",
    )
    p.add_argument("--corpus", required=True,
                   help="CSV or Parquet in the crawl schema with track_id (and optional audio_path)")
    p.add_argument("--labels",
                   help="CSV track_id,valence,arousal in [-1, 1] (scoring only; never reaches the pipeline)")
    p.add_argument("--queries", help="CSV query,valence,arousal in [-1, 1]")
    p.add_argument("--out", required=True, help="folder for report.json, report.md and plots")
    p.add_argument("--offline", action="store_true", help="no network at all (links recorded UNKNOWN/offline)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--workdir", help="keep the evaluation store here instead of a temp folder")
    p.add_argument("--json", action="store_true", help="print the report as one JSON line")
    p.add_argument("--ablate", action="store_true",
                   help="also rank with the hand weights and without text / audio / mood (ranking.<mode>)")
    env_max = os.environ.get(MAX_QUERIES_ENV)
    p.add_argument("--max-queries", type=int, default=int(env_max) if env_max else None,
                   help=f"use a seeded sample of this many QUERIES (default: ${MAX_QUERIES_ENV}, else all)")
    p.set_defaults(func=cmd_evaluate)
