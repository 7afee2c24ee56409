#!/usr/bin/env python
"""Convert the musicnn TF1 checkpoints (PyPI musicnn 0.1.0, ISC) into plain numpy weight files.

Run ONCE, in a separate environment with TensorFlow (never the project venv):

    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu numpy
    /tmp/tfenv/bin/python scripts/convert_musicnn.py [--wheel musicnn-0.1.0-py3-none-any.whl]

Without ``--wheel`` the wheel is fetched with ``pip download musicnn==0.1.0 --no-deps``. The wheel's
sha256 must equal ``WHEEL_SHA256``. For each of MSD_musicnn and MTT_musicnn the checkpoint is read with
``tf.train.load_checkpoint``; only the model variables are kept (Adam slots, ``beta1_power`` etc. are
dropped) and written to ``data/models/musicnn/<MODEL>.npz`` (float32, byte-for-byte deterministic) with
``<MODEL>.json`` beside it (tags in output order, source wheel sha256, variable shapes, npz sha256).
``pipelines/audio/musicnn.py`` rebuilds the network from these files in torch.
"""

import argparse
import ast
import hashlib
import io
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

WHEEL_NAME = "musicnn-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
MODELS = {"MSD_musicnn": "MSD_LABELS", "MTT_musicnn": "MTT_LABELS"}
OUT_DIR = Path(__file__).resolve().parents[1] / "data" / "models" / "musicnn"
# tf.compat.v1.layers variables of the network; everything else in the checkpoint is optimiser state.
MODEL_VARIABLE = re.compile(
    r"^(batch_normalization(_\d+)?/(gamma|beta|moving_mean|moving_variance)|(conv2d|dense)(_\d+)?/(kernel|bias))$"
)
N_VARIABLES = 64  # 8 conv (kernel, bias) + 2 dense (kernel, bias) + 11 batch norms (4 each)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_wheel(dest: Path) -> Path:
    """``pip download musicnn==0.1.0 --no-deps`` into ``dest`` → the wheel path."""
    cmd = [sys.executable, "-m", "pip", "download", "musicnn==0.1.0", "--no-deps", "--only-binary=:all:",
           "-d", str(dest)]
    subprocess.run(cmd, check=True)
    return dest / WHEEL_NAME


def wheel_labels(wheel: zipfile.ZipFile) -> dict[str, list[str]]:
    """The tag lists assigned in the wheel's ``musicnn/configuration.py`` (parsed, not imported)."""
    tree = ast.parse(wheel.read("musicnn/configuration.py").decode())
    labels = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name.endswith("_LABELS"):
                labels[name] = list(ast.literal_eval(node.value))
    return labels


def write_npz(arrays: dict[str, np.ndarray], path: Path) -> None:
    """``np.savez``-compatible archive with fixed timestamps and sorted entries (reproducible bytes)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def read_checkpoint(wheel: zipfile.ZipFile, model: str, workdir: Path) -> dict[str, np.ndarray]:
    """Model variables of ``musicnn/<model>/`` (a checkpoint saved with an empty file prefix)."""
    import tensorflow as tf

    ckpt_dir = workdir / model
    ckpt_dir.mkdir()
    for suffix in (".index", ".data-00000-of-00001"):
        (ckpt_dir / f"model{suffix}").write_bytes(wheel.read(f"musicnn/{model}/{suffix}"))
    reader = tf.train.load_checkpoint(str(ckpt_dir / "model"))
    names = sorted(n for n in reader.get_variable_to_shape_map() if MODEL_VARIABLE.match(n))
    if len(names) != N_VARIABLES:
        raise SystemExit(f"{model}: expected {N_VARIABLES} model variables, found {len(names)}")
    return {n: np.asarray(reader.get_tensor(n), dtype=np.float32) for n in names}


def convert(wheel_path: Path, out_dir: Path) -> list[Path]:
    digest = sha256(wheel_path)
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel_path}: sha256 {digest} != expected {WHEEL_SHA256}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with zipfile.ZipFile(wheel_path) as wheel, tempfile.TemporaryDirectory() as tmp:
        labels = wheel_labels(wheel)
        for model, label_name in MODELS.items():
            weights = read_checkpoint(wheel, model, Path(tmp))
            train_config = json.loads(wheel.read(f"musicnn/{model}/config.json"))
            npz = out_dir / f"{model}.npz"
            write_npz(weights, npz)
            meta = {
                "model": model,
                "tags": labels[label_name],
                "source": {
                    "package": "musicnn 0.1.0 (PyPI)", "wheel": WHEEL_NAME, "wheel_sha256": WHEEL_SHA256,
                    "checkpoint": f"musicnn/{model}/", "licence": "ISC",
                    "citation": "Pons & Serra, musicnn: pre-trained convolutional neural networks for music "
                                "audio tagging, ISMIR 2019 late-breaking/demo",
                },
                "audio_representation": {
                    k: train_config["audio_rep"][k] for k in ("resample_sr", "n_fft", "hop", "n_mels")
                } | {"n_frames": train_config["n_frames"], "pre_processing": train_config["pre_processing"]},
                "variables": {n: list(a.shape) for n, a in sorted(weights.items())},
                "n_parameters": int(sum(a.size for a in weights.values())),
                "npz_sha256": sha256(npz),
                "converted_by": "scripts/convert_musicnn.py",
            }
            js = out_dir / f"{model}.json"
            js.write_text(json.dumps(meta, indent=1) + "\n")
            written += [npz, js]
            print(f"{model}: {len(weights)} variables, {meta['n_parameters']} parameters, "
                  f"{npz.stat().st_size} bytes, sha256 {meta['npz_sha256']}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help=f"path to {WHEEL_NAME} (default: pip download it)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"output folder (default {OUT_DIR})")
    args = parser.parse_args(argv)
    if args.wheel is not None:
        convert(args.wheel, args.out)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        convert(fetch_wheel(Path(tmp)), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
