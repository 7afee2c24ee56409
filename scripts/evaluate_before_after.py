#!/usr/bin/env python
"""Side-by-side evaluation in one run: an earlier commit ("before") vs the working tree ("after").

    .venv/bin/python scripts/evaluate_before_after.py BEFORE_COMMIT --work DIR
        --set deezer=/tmp/deveval/deezer_val/corpus.csv,/tmp/deveval/deezer_val/labels.csv
        --set emopia=CORPUS,LABELS[,QUERIES] [--reuse] [--offline]

Each side runs with its own code (``PYTHONPATH`` and cwd = that side's checkout; "before" is a git
worktree of BEFORE_COMMIT) and its own ``MOODSCAPE_HOME``/``DAGSTER_HOME`` under ``DIR``:
``moodscape materialize`` (skipped with ``--reuse`` when that home already has a published store),
then ``moodscape evaluate`` on every ``--set NAME=CORPUS[,LABELS[,QUERIES]]`` (the files
``scripts/build_dev_eval.py`` builds). Prints JSON: per set, every numeric leaf of ``report.json``
for before, after and their difference, with max |diff| (also without ``latency_ms``, which is
wall time and differs between any two runs).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.store import StoreLayout  # noqa: E402

TIMED = "latency_ms"  # report section that measures wall time, not the system's output


def parse_set(text: str) -> tuple[str, list[Path | None]]:
    """``NAME=CORPUS[,LABELS[,QUERIES]]`` → (name, [corpus, labels, queries]); an empty or absent
    LABELS/QUERIES field is None."""
    name, sep, files = text.partition("=")
    fields = files.split(",") if files else []
    if not sep or not name or not fields or not fields[0] or len(fields) > 3:
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected NAME=CORPUS[,LABELS[,QUERIES]]")
    paths = [Path(f).expanduser().resolve() if f else None for f in fields + [""] * (3 - len(fields))]
    missing = [str(p) for p in paths if p is not None and not p.exists()]
    if missing:
        raise argparse.ArgumentTypeError(f"--set {text!r}: no such file {missing}")
    return name, paths


def side_env(*, checkout: Path, home: Path) -> dict[str, str]:
    return {
        **os.environ, "PYTHONPATH": str(checkout), "MOODSCAPE_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"), "NUMBA_CACHE_DIR": str(home / "numba_cache"),
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }


def moodscape(args: list[str], *, checkout: Path, home: Path, log: Path) -> None:
    """``python -m moodscape.cli ARGS`` with that side's code and home; output appended to ``log``."""
    with open(log, "ab") as out:
        out.write(f"\n$ moodscape {' '.join(args)}\n".encode())
        out.flush()
        proc = subprocess.run([sys.executable, "-m", "moodscape.cli", *args], cwd=checkout,
                              env=side_env(checkout=checkout, home=home), stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"moodscape {args[0]} failed ({proc.returncode}) with {checkout}; see {log}")


def run_side(*, name: str, checkout: Path, work: Path, sets: dict[str, list[Path | None]], reuse: bool,
             offline: bool) -> dict[str, dict[str, Any]]:
    """Materialize (unless reused) and evaluate every set with one side's code → {set: report}."""
    home = work / f"{name}-home"
    home.mkdir(parents=True, exist_ok=True)
    log = work / f"{name}.log"
    flags = ["--offline"] if offline else []
    if not (reuse and StoreLayout.under_home(home).current_version() is not None):
        print(f"[{name}] materialize in {home}", file=sys.stderr, flush=True)
        moodscape(["materialize", "--quiet", *flags], checkout=checkout, home=home, log=log)
    reports = {}
    for set_name, (corpus, *rest) in sets.items():
        out = work / f"{name}-reports" / set_name
        args = ["evaluate", "--corpus", str(corpus), "--out", str(out), "--json", *flags]
        for flag, path in zip(("--labels", "--queries"), rest):
            if path is not None:
                args += [flag, str(path)]
        print(f"[{name}] evaluate {set_name}", file=sys.stderr, flush=True)
        moodscape(args, checkout=checkout, home=home, log=log)
        reports[set_name] = json.loads((out / "report.json").read_text())
    return reports


def numeric_leaves(obj: Any, prefix: str = "") -> dict[str, float | None]:
    """``{"a.b.c": value}`` for every number (or null) in a nested JSON object."""
    if isinstance(obj, dict):
        out: dict[str, float | None] = {}
        for k, v in obj.items():
            out.update(numeric_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if obj is None or (isinstance(obj, (int, float)) and not isinstance(obj, bool)):
        return {prefix: obj}
    return {}


def compare(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Every numeric leaf of both reports with ``after − before``, and the largest |diff|."""
    b, a = numeric_leaves(before), numeric_leaves(after)
    leaves: dict[str, dict[str, float | None]] = {}
    for key in list(dict.fromkeys([*b, *a])):
        x, y = b.get(key), a.get(key)
        diff = y - x if x is not None and y is not None else None
        leaves[key] = {"before": x, "after": y, "diff": diff}
    diffs = {k: abs(v["diff"]) for k, v in leaves.items() if v["diff"] is not None and math.isfinite(v["diff"])}
    untimed = [d for k, d in diffs.items() if not k.startswith(TIMED + ".")]
    # A leaf present (or non-null) on one side only is a difference no number measures.
    mismatched = [k for k, v in leaves.items() if (v["before"] is None) != (v["after"] is None)]
    return {
        "leaves": leaves,
        "max_abs_diff": max(diffs.values(), default=0.0),
        "max_abs_diff_without_latency": max(untimed, default=0.0),
        "null_on_one_side": mismatched,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", help="commit to compare against the working tree")
    ap.add_argument("--set", dest="sets", action="append", type=parse_set, required=True,
                    metavar="NAME=CORPUS[,LABELS[,QUERIES]]", help="an evaluation set (repeatable)")
    ap.add_argument("--work", type=Path, required=True, help="folder for both sides' homes, logs and reports")
    ap.add_argument("--reuse", action="store_true", help="skip materialize for a side whose home has a published store")
    ap.add_argument("--offline", action="store_true", help="no network (materialize and evaluate --offline)")
    args = ap.parse_args(argv)
    sets = dict(args.sets)
    work = args.work.expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{args.before}^{{commit}}"],
                            check=True, capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="evaluate-before-") as tmp:
        before = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(before), commit],
                       check=True)
        try:
            reports = {
                name: run_side(name=name, checkout=checkout, work=work, sets=sets, reuse=args.reuse,
                               offline=args.offline)
                for name, checkout in (("before", before), ("after", REPO))
            }
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(before)], check=False)
    result = {
        "before_commit": commit,
        "work": str(work),
        "sets": {name: compare(reports["before"][name], reports["after"][name]) for name in sets},
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
