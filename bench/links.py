"""Link checking at crawl scale: the real ``moodscape check-links`` against loopback hosts.

`run_bench` starts `bench.linkfarm` (``hosts`` servers on 127.0.0.x answering after ``latency_s``)
in its own process, writes ``links`` URLs spread evenly over the hosts (shuffled, seeded) to a
CSV, and runs ``check-links`` as a subprocess once per setting, from this code and optionally from
another checkout (``before``). Throughput is measured by the servers: checks per second between
the first request's arrival and the last answer; the servers also report the most requests one
host had in flight at once and the closest pair of request starts to one host.
"""

import csv
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, kw_only=True)
class LinkBenchRun:
    """One check-links invocation: the code it runs and the politeness flags it passes."""

    code: str  # "before" / "after"
    root: Path  # checkout whose ``moodscape.cli`` runs
    per_host: int
    min_interval_s: float | None = None  # None: the checkout's default (no flag passed)
    concurrency: int | None = None  # None: the checkout's default


def write_links(*, bases: list[str], links: int, path: Path, seed: int = 0) -> int:
    """``links`` URLs spread round-robin over ``bases``, shuffled, as a check-links input CSV."""
    rows = [(f"t{i}", f"{bases[i % len(bases)]}/track/{i}") for i in range(links)]
    random.Random(seed).shuffle(rows)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["track_id", "permalink_url"])
        writer.writerows(rows)
    return len(rows)


class _Farm:
    """The host farm subprocess, driven over its stdin/stdout."""

    def __init__(self, *, hosts: int, latency_s: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.linkfarm", "--hosts", str(hosts), "--latency", str(latency_s)],
            cwd=_REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.bases: list[str] = self._ask(None)["bases"]

    def _ask(self, command: str | None) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the link farm exited")
        return json.loads(line)

    def reset(self) -> None:
        self._ask("reset")

    def stats(self) -> list[dict]:
        return self._ask("stats")["hosts"]

    def close(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def command_for(*, run: LinkBenchRun, input_csv: Path, out_csv: Path) -> list[str]:
    """The check-links command line of ``run``."""
    cmd = [sys.executable, "-m", "moodscape.cli", "check-links", str(input_csv), "--out", str(out_csv),
           "--allow-host", "127.0.0.0/8", "--per-host", str(run.per_host), "--json", "--quiet"]
    if run.min_interval_s is not None:
        cmd += ["--min-interval", str(run.min_interval_s)]
    if run.concurrency is not None:
        cmd += ["--concurrency", str(run.concurrency)]
    return cmd


def _one(*, run: LinkBenchRun, farm: _Farm, input_csv: Path, work: Path, links: int) -> dict:
    farm.reset()
    out_csv = work / f"out-{run.code}-{run.per_host}-{run.min_interval_s}.csv"
    env = {**os.environ, "PYTHONPATH": str(run.root)}
    started = time.perf_counter()
    done = subprocess.run(command_for(run=run, input_csv=input_csv, out_csv=out_csv), cwd=run.root, env=env,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"check-links ({run.code}) failed: {done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    hosts = farm.stats()
    starts = [h["first_start"] for h in hosts if h["first_start"] is not None]
    ends = [h["last_end"] for h in hosts if h["last_end"] is not None]
    span = max(ends) - min(starts) if starts and ends else float("nan")
    gaps = [h["min_gap_s"] for h in hosts if h["min_gap_s"] is not None]
    return {
        "code": run.code,
        "per_host": run.per_host,
        "min_interval_s": "default" if run.min_interval_s is None else run.min_interval_s,
        "concurrency": "default" if run.concurrency is None else run.concurrency,
        "checks_per_s": round(links / span, 1),
        "checking_s": round(span, 2),
        "command_wall_s": round(wall, 2),
        "requests": sum(h["requests"] for h in hosts),
        "max_inflight_per_host": max(h["max_inflight"] for h in hosts),
        "min_start_gap_ms": round(1000 * min(gaps), 1) if gaps else None,
        "status_counts": summary["status_counts"],
    }


def default_runs(*, before: Path | None) -> list[LinkBenchRun]:
    """--per-host 1 and 4 with each checkout's defaults; this code also with ``--min-interval 0``."""
    runs = []
    if before is not None:
        runs += [LinkBenchRun(code="before", root=before, per_host=p) for p in (1, 4)]
    runs += [LinkBenchRun(code="after", root=_REPO, per_host=p) for p in (1, 4)]
    runs.append(LinkBenchRun(code="after", root=_REPO, per_host=4, min_interval_s=0.0))
    return runs


def run_bench(*, work: Path, runs: list[LinkBenchRun], hosts: int = 32, links: int = 3200,
              latency_s: float = 0.05, seed: int = 0, progress: bool = True) -> dict:
    """Every run of ``runs`` against one farm of ``hosts`` loopback hosts; the report (JSON-able)."""
    work.mkdir(parents=True, exist_ok=True)
    farm = _Farm(hosts=hosts, latency_s=latency_s)
    try:
        input_csv = work / "links.csv"
        n = write_links(bases=farm.bases, links=links, path=input_csv, seed=seed)
        results = []
        for run in runs:
            if progress:
                print(f"bench-links: {run.code} --per-host {run.per_host}"
                      f" --min-interval {run.min_interval_s if run.min_interval_s is not None else 'default'}",
                      file=sys.stderr, flush=True)
            results.append(_one(run=run, farm=farm, input_csv=input_csv, work=work, links=n))
    finally:
        farm.close()
    return {
        "setup": {"hosts": hosts, "links": n, "latency_ms": round(latency_s * 1000, 1), "order": "shuffled",
                  "seed": seed, "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
        "runs": results,
    }
