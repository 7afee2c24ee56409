"""``moodscape bench-pipeline``: a generated crawl of N rows through the real materialize path, timed.

Every build runs in a child process (``python -m bench.pipeline --child SPEC``) with its own
``MOODSCAPE_HOME``/``DAGSTER_HOME`` under the output folder. The child samples the RSS of its process
tree on a thread and attributes time and peak RSS to each asset from the Dagster step events of its
runs; the parent adds the child's ``ru_maxrss``. Links point at loopback hosts this process serves.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import polars as pl

from bench.crawlgen import CrawlShape, demo_prototypes, generate_crawl, null_rates
from bench.linkfarm import HostFarm
from pipelines.store import DATA_DIR, REPO_ROOT, StoreLayout

# Crawl-independent models: built by the warm-up run, not by the timed crawl builds.
MODEL_ASSETS = ("emopia_audio", "query_mood_model", "audio_mood_model", "music_classifier", "tag_priors")
# rows_out: the asset's own table, else the first of these metadata counts (summed over shard runs).
ROW_KEYS = ("tracks", "ntotal", "checks_made", "tracks_without_local_audio", "labelled_tracks", "clips", "trained")
# Links spread over 32 live loopback hosts (as a crawl of many sites; with one host, checking is bound
# by the per-host politeness, 20 starts/s) and one host that answers 404.
LIVE_HOSTS, LIVE_OCTET, DEAD_OCTET = 32, 60, 100
SAMPLE_S = 0.25


# --- the child: one materialize, timed per step ----------------------------------------------

def _proc_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_rss_mb(root: int) -> float:
    """RSS of ``root`` and every process descending from it (read from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += _proc_rss_mb(pid)
        todo.extend(parents.get(pid, ()))
    return total


class RssSampler(threading.Thread):
    """(unix time, MB) of this process tree every ``SAMPLE_S`` until ``stop``."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.samples: list[tuple[float, float]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.samples.append((time.time(), tree_rss_mb(os.getpid())))
            self._stop_event.wait(SAMPLE_S)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def peak(self, start: float, end: float) -> float:
        inside = [mb for t, mb in self.samples if start - SAMPLE_S <= t <= end + SAMPLE_S]
        return round(max(inside, default=0.0), 1)


def _rows_out(layout: StoreLayout, name: str, counts: list[int]) -> int | None:
    table, parts = layout.table(name), layout.batch_tables(name)
    if table.exists() or parts:
        return sum(pl.scan_parquet(p).select(pl.len()).collect().item() for p in ([table] if table.exists() else parts))
    return sum(counts) if counts else None


def _step_windows(instance, run_id: str) -> dict[str, list[tuple[float, float, bool]]]:
    from dagster import DagsterEventType

    starts: dict[str, float] = {}
    windows: dict[str, list[tuple[float, float, bool]]] = {}
    kinds = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
    for entry in instance.all_logs(run_id, of_type=kinds):
        kind = entry.dagster_event_type
        if kind == DagsterEventType.STEP_START:
            starts[entry.step_key] = entry.timestamp
        elif entry.step_key in starts:
            ok = kind == DagsterEventType.STEP_SUCCESS
            windows.setdefault(entry.step_key, []).append((starts.pop(entry.step_key), entry.timestamp, ok))
    return windows


def child_main(spec_path: Path) -> int:
    """Run the materialize described by the spec JSON; write its timings to ``spec["result"]``."""
    spec = json.loads(Path(spec_path).read_text())
    sampler = RssSampler()
    sampler.start()
    started = time.time()
    from dagster import DagsterInstance

    from assets.graph import materialize_graph, store_assets, store_checks
    from assets.settings import MoodscapeSettings
    from pipelines.store import layout

    imported = time.time()
    instance = DagsterInstance.get()
    settings = MoodscapeSettings(**spec["settings"])
    profiler = None
    if spec.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    results = materialize_graph(store_assets, store_checks, instance=instance, resources={"settings": settings},
                                select=spec.get("select"), exclude=spec.get("exclude", ()), raise_on_error=False)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(spec["profile"])
    ended = time.time()
    windows: dict[str, list[tuple[float, float, bool]]] = {}
    counts: dict[str, list[int]] = {}
    reused: dict[str, bool] = {}
    for result in results:
        for step, spans in _step_windows(instance, result.run_id).items():
            windows.setdefault(step, []).extend(spans)
        for event in result.get_asset_materialization_events():
            mat = event.step_materialization_data.materialization
            meta = {k: v.value for k, v in mat.metadata.items()}
            name = mat.asset_key.to_user_string()
            if isinstance(meta.get("reused"), bool):
                reused[name] = reused.get(name, True) and meta["reused"]
            key = next((k for k in ROW_KEYS if type(meta.get(k)) is int), None)
            if key is not None:
                counts.setdefault(name, []).append(int(meta[key]))
    sampler.stop()
    steps = {}
    for step, spans in windows.items():
        steps[step] = {
            "s": round(sum(e - s for s, e, _ in spans), 2),
            "peak_rss_mb": max(sampler.peak(s, e) for s, e, _ in spans),
            "rows_out": _rows_out(layout(), step, counts.get(step, [])),
            "runs": len(spans),
            "ok": all(ok for _, _, ok in spans),
            **({"reused": reused[step]} if step in reused else {}),
        }
    failures = [f"{e.step_key}: {e.message}" for r in results for e in r.all_events if e.is_failure]
    Path(spec["result"]).write_text(json.dumps({
        "success": bool(results) and all(r.success for r in results),
        "total_s": round(ended - started, 2),
        "import_s": round(imported - started, 2),
        "runs": len(results),
        "steps": steps,
        "peak_rss_mb_sampled": round(max((mb for _, mb in sampler.samples), default=0.0), 1),
        "failures": failures[:20],
    }, indent=2))
    return 0 if all(r.success for r in results) else 1


# --- the parent ----------------------------------------------------------------------------

def _child_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "MOODSCAPE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        "NUMBA_CACHE_DIR": env.get("NUMBA_CACHE_DIR") or str(home / "numba_cache"),
    })
    env.pop("MOODSCAPE_OFFLINE", None)
    env.pop("MOODSCAPE_CRAWL", None)
    return env


def run_child(*, name: str, home: Path, spec: dict, out_dir: Path, nice: int = 0) -> dict:
    """One materialize in a child process; its result JSON plus ``peak_rss_mb`` (max of the child's
    ``ru_maxrss`` and the sampled process tree) and the wall time seen from here."""
    logs = out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "result": str(logs / f"{name}.json")}
    spec_path = logs / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    cmd = [sys.executable, "-m", "bench.pipeline", "--child", str(spec_path)]
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    started = time.perf_counter()
    with open(logs / f"{name}.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=_child_env(home), stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if not Path(spec["result"]).exists():
        raise RuntimeError(f"{name} build crashed (exit {proc.returncode}); see {logs / f'{name}.log'}")
    result = json.loads(Path(spec["result"]).read_text())
    result["wall_s"] = round(wall, 2)
    result["peak_rss_mb"] = round(max(usage.ru_maxrss / 1024, result["peak_rss_mb_sampled"]), 1)
    if not result["success"]:
        raise RuntimeError(f"{name} build failed: {result['failures'][:3]}; see {logs / f'{name}.log'}")
    return result


def _assets_table(result: dict) -> dict:
    keep = ("s", "peak_rss_mb", "rows_out", "reused")
    return {k: {f: v[f] for f in keep if f in v} for k, v in result["steps"].items()}


def _models_mode(models_in_run: bool, full: dict) -> str:
    """"excluded", or with the models in the timed build: "reused" when every one said so, else "retrained"."""
    if not models_in_run:
        return "excluded"
    steps = full["steps"]
    return "reused" if all(steps.get(m, {}).get("reused") for m in MODEL_ASSETS) else "retrained"


def _model_paths(home: Path) -> list[Path]:
    """What the model warm-up leaves in a home: the models, the rendered EMOPIA audio, training caches."""
    layout = StoreLayout.under_home(home)
    return [layout.models_dir, layout.audio("emopia"), layout.table("emopia_audio"), layout.array("x").parent]


def _prepare_home(home: Path, *, models_from: Path | None) -> None:
    """An empty home, or one holding only the model warm-up results of the home ``models_from``."""
    if home.exists():
        shutil.rmtree(home)
    (home / "dagster").mkdir(parents=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster" / "dagster.yaml")
    for src, dst in zip(_model_paths(models_from) if models_from else [], _model_paths(home)):
        if src.is_dir():
            shutil.copytree(src, dst)
        elif src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def run_pipeline_bench(
    *,
    rows: int,
    out_dir: Path,
    incremental_share: float = 0.01,
    seed: int = 0,
    shape: CrawlShape | None = None,
    jamendo_limit: int | None = 6000,
    emopia_limit: int | None = 16,
    query_mood_limit: int | None = 1500,
    workers: int = 2,
    models_in_run: bool = False,
    models_from: Path | None = None,
    warmup: bool = True,
    profile: bool = False,
    nice: int = 0,
    log=print,
) -> dict:
    """Warm up the models, build the store from an N-row generated crawl, then again after adding
    ``incremental_share`` new rows; writes and returns ``out_dir/pipeline.json``. The home is
    ``out_dir/home``, emptied first; ``models_from`` (an earlier output folder) seeds it with that
    run's models, which the warm-up then reuses where materialize reuses unchanged models (or, without
    ``warmup``, which the builds use as they are)."""
    if not warmup and not models_from:
        raise ValueError("without the warm-up the models must come from an earlier run (models_from)")
    shape = shape or CrawlShape()
    out_dir = Path(out_dir).resolve()
    home = out_dir / "home"
    _prepare_home(home, models_from=Path(models_from).resolve() / "home" if models_from else None)
    quick = {"emopia_limit": emopia_limit, "query_mood_train_limit": query_mood_limit, "workers": workers}
    live = HostFarm(hosts=LIVE_HOSTS, latency_s=0.02, first_octet=LIVE_OCTET).start()
    dead = HostFarm(hosts=1, latency_s=0.02, first_octet=DEAD_OCTET, status=404, body=b"gone").start()
    try:
        hosts = [b.split("//", 1)[1].split(":", 1)[0] for b in live.bases + dead.bases]
        base_settings = {**quick, "offline": False, "link_allow_hosts": ",".join(hosts),
                         "audio_fetch_host_interval_s": 0.0, "jamendo_limit": jamendo_limit, "progress": False}
        models = None
        if warmup:
            log(f"models warm-up into {home}")
            models = run_child(name="models", home=home, out_dir=out_dir, nice=nice,
                               spec={"settings": base_settings, "select": list(MODEL_ASSETS)})
        rendered = pl.read_parquet(StoreLayout.under_home(home).table("emopia_audio"))
        rendered = rendered.filter(pl.col("render_error").is_null())
        protos = demo_prototypes(data_dir=DATA_DIR, jamendo_limit=jamendo_limit,
                                 emopia_audio=dict(zip(rendered["clip_id"], rendered["audio_path"])))
        t0 = time.perf_counter()
        crawl = generate_crawl(protos, rows=rows, seed=seed, shape=shape, live_bases=live.bases, dead_bases=dead.bases)
        crawl_path = home / "crawl.csv"
        crawl.write_csv(crawl_path)
        gen_s = time.perf_counter() - t0
        exclude = [] if models_in_run else list(MODEL_ASSETS)
        settings = {**base_settings, "crawl": str(crawl_path)}
        log(f"full build: {rows} rows")
        full = run_child(name="full", home=home, out_dir=out_dir, nice=nice,
                         spec={"settings": settings, "exclude": exclude,
                               "profile": str(out_dir / "full.pstats") if profile else None})
        added = round(rows * incremental_share)
        inc = None
        if added > 0:
            more = generate_crawl(protos, rows=added, seed=seed, start=rows, shape=shape,
                                  live_bases=live.bases, dead_bases=dead.bases)
            grown = home / "crawl_incremental.csv"
            pl.concat([crawl, more]).write_csv(grown)
            log(f"incremental build: +{added} rows")
            inc = run_child(name="incremental", home=home, out_dir=out_dir, nice=nice,
                            spec={"settings": {**settings, "crawl": str(grown)}, "exclude": exclude,
                                  "profile": str(out_dir / "incremental.pstats") if profile else None})
    finally:
        live.stop()
        dead.stop()
    report = {
        "rows": rows,
        "total_s": full["total_s"],
        "peak_rss_mb": full["peak_rss_mb"],
        "assets": _assets_table(full),
        "incremental": None if inc is None else {
            "added_rows": added, "total_s": inc["total_s"], "peak_rss_mb": inc["peak_rss_mb"],
            "assets": _assets_table(inc)},
        "models": _models_mode(models_in_run, full),
        "models_warmup": "run" if warmup else f"skipped: models copied from {models_from}",
        "models_s": models["total_s"] if models else None,
        "models_assets": _assets_table(models) if models else None,
        "links": (f"every link rewritten to loopback: {LIVE_HOSTS} hosts answer 200, 1 answers 404 "
                  f"({shape.dead_share:.0%} of linked rows); online checks, allowed hosts = those loopback IPs, "
                  "no other traffic"),
        "evaluation": "not run (evaluation_report is not part of the store graph)",
        "crawl": {"generate_s": round(gen_s, 2), "prototypes": protos.height, "shape": asdict(shape),
                  "null_rates": null_rates(crawl), "prototype_null_rates": null_rates(protos.cast(pl.Utf8))},
        "settings": {**quick, "jamendo_limit": jamendo_limit, "seed": seed},
        "run_overhead": {"import_s": full["import_s"], "runs": full["runs"],
                         "unattributed_s": round(full["total_s"] - sum(v["s"] for v in full["steps"].values()), 2)},
    }
    (out_dir / "pipeline.json").write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline")
    parser.add_argument("--child", required=True, help="spec JSON of one materialize (written by the runner)")
    sys.exit(child_main(Path(parser.parse_args().child)))
