"""The service under test: ``moodscape serve`` started as a subprocess on loopback over a store,
its CPU and memory read from ``/proc``, and a hot swap (a new hard-linked version made current).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipelines import store
from pipelines.index import bundle as B

READY_TIMEOUT_S = 900.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status_mb(pid: int) -> dict[str, float]:
    """VmRSS / VmHWM of ``pid`` in MiB (from /proc/<pid>/status)."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) / 1024.0
    except FileNotFoundError:
        pass
    return out


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (utime + stime, all threads) ``pid`` has used so far, from /proc/<pid>/stat; 0.0 if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = raw[raw.rindex(")") + 2:].split()  # comm may contain spaces; fields after it start at #3 (state)
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # #14 utime, #15 stime


@dataclass
class Service:
    """A running ``moodscape serve`` subprocess."""

    proc: subprocess.Popen
    base_url: str
    log_path: Path
    rss_peak_mb: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample_rss(self, interval_s: float = 0.25) -> None:
        def loop() -> None:
            while not self._stop.is_set() and self.proc.poll() is None:
                self.rss_peak_mb = max(self.rss_peak_mb, proc_status_mb(self.proc.pid).get("VmRSS", 0.0))
                self._stop.wait(interval_s)

        threading.Thread(target=loop, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_service(*, home: Path, log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> Service:
    """Start the real service on loopback over ``<home>/store`` and wait for /health.

    ``cwd``: the checkout whose ``moodscape serve`` runs (default this one; give ``PYTHONPATH`` in
    ``env`` too when it is another).
    """
    import httpx

    port = _free_port()
    full_env = {**os.environ, "MOODSCAPE_HOME": str(home), "MOODSCAPE_CACHE_SIZE": "0",
                "NUMBA_CACHE_DIR": str(store.REPO_ROOT / ".numba_cache"), **(env or {})}
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moodscape.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=str(cwd or store.REPO_ROOT), start_new_session=True,
    )
    svc = Service(proc=proc, base_url=f"http://127.0.0.1:{port}", log_path=log_path)
    svc.sample_rss()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text()[-3000:]
            raise RuntimeError(f"service exited with {proc.returncode}; see {log_path}:\n{tail}")
        try:
            if httpx.get(f"{svc.base_url}/health", timeout=2.0).status_code == 200:
                return svc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    svc.stop()
    raise TimeoutError(f"service not ready after {READY_TIMEOUT_S}s; see {log_path}")


def hardlink_version(*, layout: store.StoreLayout, source_version: str, new_version: str) -> Path:
    """A new version folder whose files are hard links of ``source_version`` (manifest rewritten)."""
    src = layout.version_dir(source_version)
    dst = layout.version_dir(new_version)
    tmp = dst.with_name(f".{new_version}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in src.iterdir():
        if f.name == B.MANIFEST_FILE:
            m = json.loads(f.read_text())
            m["version"] = new_version
            (tmp / f.name).write_text(json.dumps(m, indent=2, sort_keys=True))
        else:
            os.link(f, tmp / f.name)
    os.replace(tmp, dst)
    return dst
