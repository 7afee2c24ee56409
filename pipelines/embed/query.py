"""The serving query encoder, chosen by ``MOODSCAPE_QUERY_ENCODER``: MiniLM without
sentence-transformers' ``encode`` overhead, every variant derived from the shipped fp32 weights.

- ``onnx`` (default when ``onnxruntime`` is installed): :class:`pipelines.embed.onnx.OnnxQueryEncoder`,
  the fp32 graph run by ONNX Runtime, torch-free in the serving process; exact.
- ``fp32``: ``QueryEncoder`` on the model's own modules; exact (cosine to ``embed_texts`` ≥ 0.99999).
- ``bf16``: the transformer's weights cast to bfloat16 (pooling and normalisation stay fp32);
  near-exact, and fast only on CPUs with native bf16, so the default picks it only there.
- ``int8``: dynamic per-channel qint8 ``Linear`` layers; LOSSY on MiniLM (outlier activations in the
  feed-forward layers), never the default. ``scripts/compare_query_encoders.py`` measures cost and quality.
"""

import copy
import logging
import os
import subprocess
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from pipelines.embed.layers import MEMO, pool_groups
from pipelines.embed.sentence import EMBEDDING_DIM, load_encoder

log = logging.getLogger(__name__)

Precision = Literal["onnx", "fp32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
TORCH_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")  # what QueryEncoder itself runs
ENV_VAR = "MOODSCAPE_QUERY_ENCODER"


def bf16_supported() -> bool:
    """True when oneDNN has native bf16 kernels on this CPU (AVX512-BF16 / AMX)."""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def onnx_available() -> bool:
    """True when ``onnxruntime`` and ``onnx`` (the exporter needs it) import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def default_precision() -> Precision:
    """``onnx`` when ONNX Runtime is installed (exact and cheapest per query), else ``bf16`` where
    the CPU runs it natively (near-exact), else ``fp32``. Never ``int8`` (lossy on MiniLM)."""
    if onnx_available():
        return "onnx"
    return "bf16" if bf16_supported() else "fp32"


def _check_pipeline(model) -> None:
    """Raise ``ValueError`` unless ``model`` is Transformer → mean Pooling → Normalize (what we reproduce)."""
    names = [type(m).__name__ for m in model]
    if names != ["Transformer", "Pooling", "Normalize"]:
        raise ValueError(f"unsupported SentenceTransformer pipeline {names}; expected Transformer, Pooling, Normalize")
    pooling = model[1]
    if pooling.pooling_mode not in ("mean", ("mean",), ["mean"]):
        raise ValueError(f"unsupported pooling mode {pooling.pooling_mode!r}; only 'mean' is reproduced")
    if getattr(model[0], "do_lower_case", False):
        raise ValueError("Transformer.do_lower_case=True is not reproduced (the tokenizer lower-cases itself)")


def quantize_int8(*, module):
    """A dynamically int8-quantised copy of ``module``: every ``torch.nn.Linear`` → per-channel
    symmetric qint8 weights (closer to fp32 than the per-tensor default at the same cost),
    activations quantised per call (per tensor). ``module`` itself is left untouched (deep-copied).
    ``torch.ao.quantization``'s deprecation warnings are silenced."""
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*")
        quantized = quantize_dynamic(
            copy.deepcopy(module), {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
        )
    return quantized.eval()


def cast_bf16(*, module):
    """A bfloat16 copy of ``module`` (``module`` itself is left untouched)."""
    import torch

    return copy.deepcopy(module).to(torch.bfloat16).eval()


class QueryEncoder:
    """``encoder(texts) -> (n, 384) float32`` unit rows: the vectors of ``embed_texts`` (fp32), a
    near-exact bf16 approximation, or a lossy int8 one, without sentence-transformers' ``encode``.

    Each batch is padded only to its longest text and truncated at the model's ``max_seq_length``
    (256 word pieces), exactly as the SentenceTransformer does. Calls are thread-safe: the tokenizer
    (a private copy; the Rust fast tokenizer holds mutable padding/truncation state) is guarded by a
    lock, and the forward pass only reads the weights. The fp32 encoder shares its weights with the
    process-wide SentenceTransformer; bf16 / int8 hold their own copy.
    """

    def __init__(self, *, precision: Precision = "fp32", batch_size: int = 64, model=None) -> None:
        """``precision``: "fp32" (exact), "bf16" (near-exact) or "int8" (lossy; see module doc).
        ``batch_size``: texts per forward pass for long inputs. ``model``: a loaded
        SentenceTransformer (default: :func:`pipelines.embed.sentence.load_encoder`)."""
        if precision not in TORCH_PRECISIONS:
            raise ValueError(f"precision must be one of {TORCH_PRECISIONS}, got {precision!r} "
                             "(onnx: pipelines.embed.onnx.OnnxQueryEncoder)")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        model = model if model is not None else load_encoder()
        _check_pipeline(model)
        transformer = model[0]
        self.precision: Precision = precision
        self.batch_size = batch_size
        self.max_seq_length: int = int(model.max_seq_length)
        self._tokenizer = copy.deepcopy(transformer.tokenizer)
        self._tokenizer_lock = threading.Lock()
        net = transformer.auto_model.eval()
        if precision == "int8":
            self._net = quantize_int8(module=net)
        elif precision == "bf16":
            self._net = cast_bf16(module=net)
        else:
            self._net = net

    def __repr__(self) -> str:
        return f"QueryEncoder(precision={self.precision!r}, max_seq_length={self.max_seq_length})"

    def tokenize(self, texts: Sequence[str]) -> dict:
        """Token tensors for ``texts``: ``input_ids``, ``token_type_ids``, ``attention_mask``, each
        int64 (n, t) with t = the longest text's length (≤ max_seq_length, [CLS]/[SEP] included)."""
        with self._tokenizer_lock:
            return dict(
                self._tokenizer(
                    list(texts),
                    padding=True,
                    truncation="longest_first",
                    max_length=self.max_seq_length,
                    return_tensors="pt",
                )
            )

    def _encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), 384) float32 unit rows for one forward pass; the layer features of the pass
        go to ``pipelines.embed.layers.MEMO``."""
        import torch

        features = self.tokenize(texts)
        with torch.inference_mode():
            states = self._net(**features, return_dict=True, output_hidden_states=True).hidden_states
            states = [h.float() for h in states]
            hidden = states[-1]  # (n, t, 384)
            mask = features["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (n, t, 1)
            summed = (hidden * mask).sum(dim=1)  # (n, 384)
            counts = torch.clamp(mask.sum(dim=1), min=1e-9)  # (n, 1)
            pooled = torch.nn.functional.normalize(summed / counts, p=2, dim=1)
            layers = pool_groups(states, mask)
        out = pooled.numpy().astype(np.float32, copy=False)
        MEMO.put(texts, out, layers.numpy())
        return out

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` → float32 (n, 384), rows L2-normalised (cosine = dot); (0, 384) if empty.

        Inputs longer than ``batch_size`` are encoded in length-sorted chunks (less padding) and
        returned in the input order."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        if len(texts) <= self.batch_size:
            return np.ascontiguousarray(self._encode_batch(texts))
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._encode_batch([texts[i] for i in idx])
        return out


def parse_precision(*, value: str | None) -> Precision:
    """``MOODSCAPE_QUERY_ENCODER`` value → precision ("fp32" | "bf16" | "int8", case- and
    space-insensitive); unset or empty → :func:`default_precision`. ``ValueError`` otherwise."""
    if value is None or not value.strip():
        return default_precision()
    cleaned = value.strip().lower()
    if cleaned not in PRECISIONS:
        raise ValueError(f"{ENV_VAR}={value!r} is not valid; expected one of {', '.join(PRECISIONS)}")
    return cleaned  # type: ignore[return-value]


def query_encoder_from_env(*, environ: Mapping[str, str] | None = None, model=None, cache_dir: Path | None = None):
    """The serving query encoder chosen by ``MOODSCAPE_QUERY_ENCODER`` (``onnx`` | ``fp32`` | ``bf16``
    | ``int8``; default :func:`default_precision`). ``environ`` defaults to ``os.environ``;
    ``model`` as in ``QueryEncoder``; ``cache_dir`` holds the exported ONNX graph (default
    :func:`pipelines.embed.onnx.default_cache_dir`). ``onnx`` never imports torch in this process."""
    env = os.environ if environ is None else environ
    requested = env.get(ENV_VAR)
    precision = parse_precision(value=requested)
    if precision == "onnx":
        from pipelines.embed import onnx as onnxencoder

        folder = Path(cache_dir) if cache_dir is not None else onnxencoder.default_cache_dir(environ=env)
        try:
            threads = max(1, int(env.get("MOODSCAPE_SERVE_THREADS") or 1))
            return onnxencoder.OnnxQueryEncoder(model_path=onnxencoder.ensure_onnx(cache_dir=folder), threads=threads)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            if requested and requested.strip():
                raise  # asked for explicitly: fail loudly
            # The default only: keep serving with the torch encoder rather than not at all.
            precision = "bf16" if bf16_supported() else "fp32"
            log.warning("ONNX query encoder unavailable (%s); using torch %s", exc, precision)
    return QueryEncoder(precision=precision, model=model)
