"""The link-check benchmark: its input spreads links evenly over the hosts, and a small real run
(check-links subprocesses against a loopback farm) reports what the hosts counted."""

import argparse
import csv
import json
from collections import Counter
from pathlib import Path

from bench.links import LinkBenchRun, run_bench, write_links
from moodscape.healcli import cmd_bench_links

REPO = Path(__file__).resolve().parents[2]


def test_write_links_spreads_links_evenly_and_shuffles(tmp_path: Path) -> None:
    bases = [f"http://127.0.0.{10 + i}:80" for i in range(4)]
    path = tmp_path / "links.csv"
    assert write_links(bases=bases, links=10, path=path, seed=1) == 10
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    hosts = Counter(r["permalink_url"].rsplit("/track/", 1)[0] for r in rows)
    assert sorted(hosts.values()) == [2, 2, 3, 3]
    assert len({r["track_id"] for r in rows}) == 10
    assert [r["track_id"] for r in rows] != [f"t{i}" for i in range(10)]  # shuffled (seeded)


def test_small_run_reports_what_the_hosts_counted(tmp_path: Path) -> None:
    runs = [LinkBenchRun(code="after", root=REPO, per_host=p, min_interval_s=0.0, concurrency=8) for p in (1, 2)]
    report = run_bench(work=tmp_path, runs=runs, hosts=2, links=24, latency_s=0.05, progress=False)
    assert report["setup"]["hosts"] == 2 and report["setup"]["links"] == 24
    for run, per_host in zip(report["runs"], (1, 2)):
        assert run["per_host"] == per_host
        assert run["requests"] == 24  # one HEAD per link, counted by the hosts
        assert run["status_counts"] == {"VALID": 24}
        assert run["max_inflight_per_host"] == per_host  # 12 links per host, 8 in flight: the limit is reached
        assert run["checks_per_s"] > 0
    json.dumps(report)


def test_cli_refuses_a_before_path_that_is_not_a_checkout(tmp_path: Path) -> None:
    args = argparse.Namespace(out=str(tmp_path / "out"), before=str(tmp_path), hosts=2, links=4, latency=0.0,
                              quiet=True)
    assert cmd_bench_links(args) == 2
    assert not (tmp_path / "out").exists()
