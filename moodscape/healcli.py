"""``moodscape ingest``, ``check-links`` and ``bench-links``: the crawl-healing commands.

``register(sub)`` adds the subcommands to the CLI's subparsers; each command function takes the
parsed ``argparse.Namespace`` and returns an exit code (0 ok, 2 unusable input). Progress bars and
summaries go to stderr; stdout carries the machine-readable result (its last line is JSON where a
command promises JSON).
"""

import argparse
import csv
import io
import json
import sys
from collections import Counter
from pathlib import Path

from pipelines import store
from pipelines.errors import IngestError, InvalidInputError
from pipelines.schema import (
    CHECKED_AT,
    FINAL_URL,
    HTTP_CODE,
    LINK_URL,
    PERMALINK_URL,
    REASON,
    TRACK_ID,
    URL_STATUS,
)

TRACKS_FILE = "tracks.parquet"
QUARANTINE_FILE = "quarantine.parquet"
STATUS = "status"  # the check-links CSV's name for ``url_status``
CHECK_LINKS_COLUMNS: tuple[str, ...] = (TRACK_ID, LINK_URL, STATUS, HTTP_CODE, FINAL_URL, REASON, CHECKED_AT)
INPUT_FIELD = "input"  # the check-links argument an InvalidInputError names


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- ingest --------------------------------------------------------------------------------

def cmd_ingest(args: argparse.Namespace) -> int:
    """``ingest PATH --out DIR``: crawl file → DIR/tracks.parquet (n, 13) + DIR/quarantine.parquet
    (q, 3), both written atomically. stdout's last line: JSON rows_in/ingested/quarantined/
    duplicates_merged. Exit 2 when the file cannot be read at all."""
    from pipelines.heal.ingest import ingest

    path, out = Path(args.path), Path(args.out)
    try:
        result = ingest(path=path, progress=not args.quiet)
    except IngestError as exc:
        _err(f"error: {exc}")
        return 2
    except (OSError, UnicodeError) as exc:  # unreadable bytes / permissions / undecodable text
        _err(f"error: {path}: cannot read crawl file ({type(exc).__name__}: {exc})")
        return 2
    if out.exists() and not out.is_dir():
        _err(f"error: --out {out} exists and is not a folder")
        return 2
    tracks_path = store.write_table(result.tracks, out / TRACKS_FILE)
    quarantine_path = store.write_table(result.quarantine, out / QUARANTINE_FILE)

    s = result.stats
    _err(f"read {path} ({s.get('encoding_note') or s.get('encoding') or 'typed'})")
    if s.get("columns_missing"):
        _err(f"  columns missing (null): {', '.join(s['columns_missing'])}")
    if s.get("columns_ignored"):
        _err(f"  columns ignored: {', '.join(s['columns_ignored'])}")
    _err(f"  {s['rows_in']} rows in → {s['ingested']} tracks, {s['quarantined']} quarantined, "
         f"{s['duplicates_merged']} duplicates merged")
    if result.quarantine.height:
        reasons = Counter(r.split(": ", 1)[0] for q in result.quarantine[REASON].to_list() for r in q.split("; "))
        _err("  quarantine reasons: " + ", ".join(f"{k} ×{v}" for k, v in reasons.most_common(8)))
    _err(f"wrote {tracks_path} and {quarantine_path}")
    summary = {k: int(s[k]) for k in ("rows_in", "ingested", "quarantined", "duplicates_merged")}
    print(json.dumps(summary), flush=True)
    return 0


# --- check-links ---------------------------------------------------------------------------

def read_link_input(*, path: Path) -> list[tuple[str | None, str | None]]:
    """CSV with ``track_id`` and ``permalink_url`` (or ``url``) → [(track_id, url)] (n rows, input
    order; empty cells → None). Header names match case- and space-insensitively; other columns are
    ignored. Raises InvalidInputError (field ``input``) naming the missing columns, or when the file
    cannot be read."""
    from pipelines.heal.crawlfiles import decode_bytes

    try:
        data = path.read_bytes()
        text, _encoding, _note = decode_bytes(data=data)
    except (OSError, UnicodeError) as exc:
        raise InvalidInputError(f"{path}: cannot read ({type(exc).__name__}: {exc})", field=INPUT_FIELD) from exc
    csv.field_size_limit(2**31 - 1)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if header is None:
            raise InvalidInputError(
                f"{path}: file is empty (expected a CSV header with {TRACK_ID},{PERMALINK_URL})", field=INPUT_FIELD)
        names = [h.replace("\ufeff", "").strip().lower() for h in header]
        missing = []
        if TRACK_ID not in names:
            missing.append(TRACK_ID)
        url_col = PERMALINK_URL if PERMALINK_URL in names else LINK_URL if LINK_URL in names else None
        if url_col is None:
            missing.append(f"{PERMALINK_URL} (or {LINK_URL})")
        if missing:
            raise InvalidInputError(
                f"{path}: missing column(s): {', '.join(missing)}; found: {', '.join(header[:20])}", field=INPUT_FIELD)
        i_id, i_url = names.index(TRACK_ID), names.index(url_col)
        items: list[tuple[str | None, str | None]] = []
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            tid = fields[i_id].strip() if i_id < len(fields) else ""
            url = fields[i_url].strip() if i_url < len(fields) else ""
            items.append((tid or None, url or None))
    except csv.Error as exc:
        raise InvalidInputError(f"{path}: not a readable CSV ({exc})", field=INPUT_FIELD) from exc
    return items


def cmd_check_links(args: argparse.Namespace) -> int:
    """``check-links INPUT --out OUT.csv``: one row per input row, columns ``CHECK_LINKS_COLUMNS``
    (``status`` = the checker's url_status), written atomically. stdout: status counts (one JSON
    line with --json). Exit 2 on an unusable input."""
    from pipelines.heal.links.checker import LinkCheckConfig
    from pipelines.heal.links.run import check_links

    try:
        items = read_link_input(path=Path(args.input))
    except InvalidInputError as exc:
        _err(f"error: {exc}")
        return 2
    defaults = LinkCheckConfig()
    concurrency = defaults.concurrency if args.concurrency is None else args.concurrency
    per_host = defaults.per_host if args.per_host is None else args.per_host
    min_interval = defaults.min_interval_s if args.min_interval is None else args.min_interval
    for name, value in (("concurrency", concurrency), ("per_host", per_host)):
        if value < 1:
            _err(f"error: --{name.replace('_', '-')} must be ≥ 1")
            return 2
    if args.timeout <= 0:
        _err("error: --timeout must be > 0")
        return 2
    if min_interval < 0:
        _err("error: --min-interval must be ≥ 0")
        return 2
    config = LinkCheckConfig(
        concurrency=concurrency, per_host=per_host, min_interval_s=min_interval,
        connect_timeout_s=min(defaults.connect_timeout_s, args.timeout),
        read_timeout_s=min(defaults.read_timeout_s, args.timeout),
        total_timeout_s=args.timeout,
        offline=args.offline, allow_hosts=frozenset(args.allow_host or ()),
    )
    _err(f"checking {len(items)} links ({len({u for _, u in items if u})} distinct URLs)"
         + (" offline: no requests" if args.offline else ""))
    frame = check_links(items, config=config, progress=not args.quiet)
    frame = frame.rename({URL_STATUS: STATUS}).select(CHECK_LINKS_COLUMNS)
    out = Path(args.out)
    with store.atomic_path(out, ".csv") as tmp:
        frame.write_csv(tmp)
    counts = dict(Counter(frame[STATUS].to_list()).most_common())
    reasons = dict(Counter(frame[REASON].to_list()).most_common())
    _err(f"wrote {out}")
    if args.json:
        print(json.dumps({"rows": frame.height, "status_counts": counts, "reason_counts": reasons, "out": str(out)}))
    else:
        width = max((len(k) for k in counts), default=6)
        for status, n in counts.items():
            print(f"{status:<{width}}  {n}")
        print(f"{'total':<{width}}  {frame.height}")
    return 0


# --- bench-links ---------------------------------------------------------------------------

BENCH_LINKS_FILE = "bench_links.json"


def cmd_bench_links(args: argparse.Namespace) -> int:
    """``bench-links --out DIR [--before CHECKOUT]``: check-links throughput against loopback hosts
    (see `bench.links`); the report is printed as JSON and written to ``DIR/bench_links.json``."""
    from bench.links import default_runs, run_bench

    before = Path(args.before) if args.before else None
    if before is not None and not (before / "moodscape" / "cli.py").is_file():
        _err(f"error: --before {before} is not a checkout of this project")
        return 2
    if args.hosts < 1 or args.links < 1 or args.latency < 0:
        _err("error: --hosts and --links must be ≥ 1, --latency ≥ 0")
        return 2
    out = Path(args.out)
    report = run_bench(work=out / "work", runs=default_runs(before=before), hosts=args.hosts, links=args.links,
                       latency_s=args.latency, progress=not args.quiet)
    store.write_json(report, out / BENCH_LINKS_FILE)
    print(json.dumps(report, indent=2))
    return 0


# --- registration --------------------------------------------------------------------------

def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``ingest``, ``check-links`` and ``bench-links`` subcommands (each sets ``func``) to ``sub``."""
    p = sub.add_parser("ingest", help="read a crawl file (CSV/Parquet/JSON Lines) into tracks + quarantine tables")
    p.add_argument("path", help="crawl file: .csv/.tsv, .parquet or .jsonl")
    p.add_argument("--out", required=True, help="folder for tracks.parquet and quarantine.parquet")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("check-links", help="check track permalinks over HTTP and write a status CSV")
    p.add_argument("input", help="CSV with track_id and permalink_url (or url)")
    p.add_argument("--out", required=True, help="output CSV: track_id,url,status,http_code,final_url,reason,checked_at")
    p.add_argument("--allow-host", action="append", default=[], metavar="HOST",
                   help="host name, IP or CIDR allowed although not public (repeatable)")
    p.add_argument("--concurrency", type=int, default=None, help="URLs in flight overall (default 128)")
    p.add_argument("--per-host", type=int, default=None, help="requests in flight per host:port (default 4)")
    p.add_argument("--min-interval", type=float, default=None, metavar="SECONDS",
                   help="minimum spacing between request starts to one host:port (default 0.05)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per request/response exchange")
    p.add_argument("--offline", action="store_true", help="no network: every link UNKNOWN(offline)")
    p.add_argument("--json", action="store_true", help="print the counts as one JSON line")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_check_links)

    p = sub.add_parser("bench-links", help="check-links throughput against loopback hosts (JSON report)")
    p.add_argument("--out", required=True, help="folder for bench_links.json and the runs' files")
    p.add_argument("--before", default=None, metavar="CHECKOUT", help="another checkout to run side by side")
    p.add_argument("--hosts", type=int, default=32, help="loopback hosts (127.0.0.10 on)")
    p.add_argument("--links", type=int, default=3200, help="links, spread evenly over the hosts")
    p.add_argument("--latency", type=float, default=0.05, help="seconds each host takes to answer")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_bench_links)


__all__ = ["register", "cmd_ingest", "cmd_check_links", "cmd_bench_links", "read_link_input", "CHECK_LINKS_COLUMNS"]
