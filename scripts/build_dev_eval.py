#!/usr/bin/env python
"""Build development evaluation sets for ``moodscape evaluate`` in a folder OUTSIDE the repo.

    python scripts/build_dev_eval.py --out /tmp/deveval [--parts deezer,emobank,emopia]

The builders live in ``pipelines/measure/deveval.py`` (``PARTS_DOC`` says what each part holds).
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.measure import deveval
from pipelines.measure.deveval import DEFAULT_DEV_EVAL, PARTS, build_deezer, build_emobank, build_emopia
from pipelines.store import atomic_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (outside the repo)")
    parser.add_argument("--dev-eval", type=Path, default=DEFAULT_DEV_EVAL,
                        help=f"dev-eval data folder (default {DEFAULT_DEV_EVAL})")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {PARTS}")
    parser.add_argument("--workers", type=int, default=2, help="render processes for EMOPIA")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    out = args.out.expanduser().resolve()
    if deveval.inside_repo(out):
        parser.error(f"--out {out} is inside the repo; dev-eval sets must live outside it")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {PARTS}")
    out.mkdir(parents=True, exist_ok=True)

    status: list[str] = []
    try:
        if "deezer" in parts:
            status.append(build_deezer(dev_eval=args.dev_eval.expanduser().resolve(), out=out))
            print(status[-1], flush=True)
        if "emobank" in parts:
            status.append(build_emobank(out=out))
            print(status[-1], flush=True)
        if "emopia" in parts:
            status.append(build_emopia(out=out, workers=args.workers, progress=not args.no_progress))
            print(status[-1], flush=True)
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if status:
            _write_readme(out, status)
    return 0


def _write_readme(out: Path, status: Sequence[str]) -> None:
    text = (
        "# Moodscape dev-eval sets (built by scripts/build_dev_eval.py)\n\n"
        "Evaluation only: never copy into the project, never train on them.\n\n"
        + "\n".join(f"- {s}" for s in status) + "\n\n"
        + deveval.PARTS_DOC
    )
    with atomic_path(out / "README.md", ".md") as tmp:
        tmp.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
