"""The service's settings, read once from the environment at startup (a bad value fails there).

=============================== ========= ======================================================
variable                        default   meaning
=============================== ========= ======================================================
MOODSCAPE_QUERY_ENCODER         (auto)    onnx | fp32 | bf16 | int8 (``pipelines.embed.query``)
MOODSCAPE_ENCODER_BATCHING      auto      on | off | auto: batch concurrent queries (torch only)
MOODSCAPE_RETRIEVAL_THREADS     3         threads running one request's searches (0: inline)
MOODSCAPE_RELOAD_INTERVAL_S     2         seconds between checks of the published version and of the
                                          availability overlay (<= 0: off)
MOODSCAPE_CACHE_SIZE            1024      responses kept in the in-process LRU (0 disables it)
MOODSCAPE_REDIS_URL             (none)    a Redis shared by replicas as a second cache level
MOODSCAPE_REDIS_TTL_S           600       lifetime of a response in Redis
MOODSCAPE_AUDIO_ROOTS           (none)    more folders (os.pathsep-separated) whose audio may be served
MOODSCAPE_STORE_URL             (none)    serve the version published on this object store (s3://bucket/prefix),
                                          cached under the local store (``serving.mirror``)
MOODSCAPE_STORE_ENDPOINT_URL    (none)    an S3-compatible endpoint for that URL (MinIO, moto, Ceph)
=============================== ========= ======================================================
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipelines.embed.query import ENV_VAR as QUERY_ENCODER_VAR
from pipelines.embed.query import parse_precision
from pipelines.index.remote_store import ENDPOINT_VAR as STORE_ENDPOINT_VAR
from pipelines.index.remote_store import URL_VAR as STORE_URL_VAR

Batching = Literal["auto", "on", "off"]
BATCHING: tuple[str, ...] = ("auto", "on", "off")
# What the query encoder reads (its precision, ONNX Runtime threads, where its graph is cached).
ENCODER_VARS = (QUERY_ENCODER_VAR, "MOODSCAPE_SERVE_THREADS", "MOODSCAPE_MODEL_CACHE", "XDG_CACHE_HOME")


def _number(env: Mapping[str, str], name: str, default: float, kind: type) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return kind(default)
    try:
        return kind(raw)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise ValueError(f"{name}={raw!r} is not valid; expected {expected}") from None


@dataclass(frozen=True)
class ServingSettings:
    encoder_batching: Batching = "auto"
    retrieval_threads: int = 3
    reload_interval_s: float = 2.0
    cache_size: int = 1024
    redis_url: str | None = None
    redis_ttl_s: int = 600
    encoder_environ: Mapping[str, str] = field(default_factory=dict)  # ENCODER_VARS that are set
    audio_roots: tuple[Path, ...] = ()  # besides the store's and the bundled data's audio folders
    store_url: str | None = None  # an object store whose published version is mirrored locally
    store_endpoint_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "ServingSettings":
        """The settings of ``environ`` (default ``os.environ``); ValueError naming a bad variable."""
        env = os.environ if environ is None else environ
        batching = env.get("MOODSCAPE_ENCODER_BATCHING", "auto").strip().lower() or "auto"
        if batching not in BATCHING:
            raise ValueError(f"MOODSCAPE_ENCODER_BATCHING={batching!r} is not valid; expected auto, on or off")
        encoder = env.get(QUERY_ENCODER_VAR)
        if encoder is not None and encoder.strip():
            parse_precision(value=encoder)  # raises ValueError naming the variable
        return cls(
            encoder_batching=batching,  # type: ignore[arg-type]
            retrieval_threads=max(0, int(_number(env, "MOODSCAPE_RETRIEVAL_THREADS", 3, int))),
            reload_interval_s=float(_number(env, "MOODSCAPE_RELOAD_INTERVAL_S", 2.0, float)),
            cache_size=max(0, int(_number(env, "MOODSCAPE_CACHE_SIZE", 1024, int))),
            redis_url=env.get("MOODSCAPE_REDIS_URL") or None,
            redis_ttl_s=int(_number(env, "MOODSCAPE_REDIS_TTL_S", 600, int)),
            encoder_environ={k: env[k] for k in ENCODER_VARS if k in env},
            audio_roots=tuple(Path(p) for p in env.get("MOODSCAPE_AUDIO_ROOTS", "").split(os.pathsep) if p.strip()),
            store_url=env.get(STORE_URL_VAR, "").strip() or None,
            store_endpoint_url=env.get(STORE_ENDPOINT_VAR, "").strip() or None,
        )
