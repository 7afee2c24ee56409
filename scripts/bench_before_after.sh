#!/usr/bin/env bash
# Side-by-side service benchmark: an earlier commit ("before") and the working tree ("after") on the
# same synthetic store, one after the other, on the same machine.
#   scripts/bench_before_after.sh BEFORE_COMMIT [N_TRACKS] [CONCURRENCY]
# Prints {"before": {...}, "after": {...}} with full/baseline latency, QPS and RSS. Both sides share
# the synthetic store cache ($MOODSCAPE_SYNTH_CACHE): whichever side builds it first defines its index
# layout, so compare index-layout changes with a separate cache per side.
set -euo pipefail
BEFORE=${1:?usage: scripts/bench_before_after.sh BEFORE_COMMIT [N_TRACKS] [CONCURRENCY]}
N=${2:-100000}
C=${3:-4}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY="$REPO/.venv/bin/python"
WORK=$(mktemp -d)
trap 'git -C "$REPO" worktree remove --force "$WORK/before" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
git -C "$REPO" worktree add -q --detach "$WORK/before" "$BEFORE"
CACHE=${MOODSCAPE_SYNTH_CACHE:-$REPO/.moodscape/synth}
ARGS="--tracks $N --queries 300 --concurrency $C --prototypes 2000 --audio-clips 42 --mood-model-rows 1000 --quiet --cache $CACHE"
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$REPO/.moodscape/numba_cache}
(cd "$WORK/before" && PYTHONPATH="$WORK/before" "$PY" -m moodscape.cli bench $ARGS --out "$WORK/out-before" > "$WORK/before.log" 2>&1)
(cd "$REPO" && "$PY" -m moodscape.cli bench $ARGS --out "$WORK/out-after" > "$WORK/after.log" 2>&1)
"$PY" - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
out = {}
for name in ("before", "after"):
    d = json.load(open(f"{work}/out-{name}/bench.json"))
    out[name] = {"full": d["full"], "baseline": d["baseline"], "rss_mb": d["rss_mb"]}
print(json.dumps(out, indent=1))
PY
