"""The process environment every command that runs the pipeline or the service needs: the Dagster
home (with a ``dagster.yaml``), the numba cache, and offline Hugging Face models.
"""

import os
from pathlib import Path

from pipelines import store


def prepare_env() -> None:
    home = store.home()
    os.environ.setdefault("DAGSTER_HOME", str(store.dagster_home()))
    os.environ.setdefault("NUMBA_CACHE_DIR", str(home / "numba_cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    dh = Path(os.environ["DAGSTER_HOME"])
    dh.mkdir(parents=True, exist_ok=True)
    cfg = dh / "dagster.yaml"
    if not cfg.exists():
        src = store.REPO_ROOT / "dagster.yaml"
        cfg.write_text(src.read_text() if src.exists() else "telemetry:\n  enabled: false\n")
