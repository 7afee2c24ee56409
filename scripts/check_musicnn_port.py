#!/usr/bin/env python
"""Check the torch port of musicnn against the ORIGINAL TF1 graph, on real clips.

    .venv/bin/python scripts/check_musicnn_port.py --tf-python /tmp/tfenv/bin/python \
        --wheel musicnn-0.1.0-py3-none-any.whl [--report data/models/musicnn/PORT_CHECK.md] [CLIP ...]

The project venv computes the mel patches (``pipelines.audio.backbone``'s own path) and the torch
outputs; a TensorFlow interpreter (``--tf-python``, a separate venv: TF never enters the project)
imports the training graph of each checkpoint from the wheel (``tf.compat.v1.train.import_meta_graph``
on the ``.meta`` file, graph mode, no Keras), restores the checkpoint and feeds the SAME patches to
``model/Placeholder`` (``model/Placeholder_2`` = is_training False), reading ``model/Sigmoid`` and
the penultimate layer (the input of ``model/dense_1/MatMul``). Default clips: the music clips in
``data/audio/librosa`` plus, when present, 5 Emotify clips (read only, for checking).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from convert_musicnn import MODELS, WHEEL_SHA256, sha256  # noqa: E402

TOLERANCE = 1e-4
PENULTIMATE_INPUT_OF = "model/dense_1/MatMul"
DEFAULT_CLIPS = [
    "data/audio/librosa/Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg",
    "data/audio/librosa/admiralbob77_-_Choice_-_Drum-bass.ogg",
    "data/audio/librosa/Kevin_MacLeod_-_Vibe_Ace.ogg",
    "data/audio/librosa/Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg",
    "data/audio/librosa/Karissa_Hobbs_-_Lets_Go_Fishin.ogg",
    "data/audio/librosa/sorohanro_-_solo-trumpet-06.ogg",
]
EMOTIFY = ROOT.parent / "shared" / "data" / "dev-eval" / "emotify" / "audio"


def tf_reference(wheel: Path, patches: Path, out: Path) -> None:
    """(TF interpreter) taggram and penultimate of every model for the patches in ``patches``."""
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2

    if sha256(wheel) != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: unexpected sha256")
    x = np.load(patches)["patches"]
    result = {"tf_version": np.array(tf.__version__)}
    tf.compat.v1.disable_eager_execution()
    with zipfile.ZipFile(wheel) as zf, tempfile.TemporaryDirectory() as tmp:
        for model in MODELS:
            for suffix in (".index", ".data-00000-of-00001"):
                (Path(tmp) / f"{model}{suffix}").write_bytes(zf.read(f"musicnn/{model}/{suffix}"))
            meta = meta_graph_pb2.MetaGraphDef()
            meta.ParseFromString(zf.read(f"musicnn/{model}/.meta"))
            # TF2 rejects some stale shape annotations on the saved optimiser (gradient) nodes;
            # the annotations are only hints, the graph itself is imported unchanged.
            for node in meta.graph_def.node:
                if "_output_shapes" in node.attr:
                    del node.attr["_output_shapes"]
            graph = tf.Graph()
            with graph.as_default():
                saver = tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
                with tf.compat.v1.Session(graph=graph) as sess:
                    saver.restore(sess, str(Path(tmp) / model))
                    fetch = [graph.get_tensor_by_name("model/Sigmoid:0"),
                             graph.get_operation_by_name(PENULTIMATE_INPUT_OF).inputs[0]]
                    feed = {"model/Placeholder:0": x, "model/Placeholder_2:0": False}
                    tags, pen = sess.run(fetch, feed_dict=feed)
            result[f"{model}/tags"], result[f"{model}/penultimate"] = tags, pen
    np.savez(out, **result)


_PREPROCESSING_NOTE = [
    "Input note: musicnn stores the mel spectrogram as float16 and computes `log10(10000 * mel + 1)`. With "
    "numpy < 2 (musicnn 0.1.0 requires numpy < 1.17) value-based promotion makes that product float32; with "
    "numpy >= 2 it stays float16 and overflows to inf wherever the mel power exceeds 6.55 (common in real, "
    "loud music), and the TF graph then returns the same taggram for every patch. The port "
    "(`musicnn.log_mel`) keeps the float16 rounding of the mel and computes the compression in float32, "
    "as musicnn was trained and released.",
]


def default_clips() -> list[Path]:
    clips = [ROOT / c for c in DEFAULT_CLIPS]
    if EMOTIFY.is_dir():
        clips += sorted(EMOTIFY.glob("*.ogg"))[:5]
    return clips


def torch_side(clips: list[Path], duration: float) -> tuple[np.ndarray, list[int], dict[str, np.ndarray]]:
    """(all mel patches, patches per clip, torch outputs per ``<model>/tags|penultimate``)."""
    import librosa
    import torch

    from pipelines.audio import backbone, musicnn

    torch.set_num_threads(1)
    per_clip, counts = [], []
    for clip in clips:
        y, sr = librosa.load(str(clip), sr=22050, mono=True, duration=duration)
        per_clip.append(musicnn.mel_patches(backbone.to_backbone_rate(y, sr)))
        counts.append(per_clip[-1].shape[0])
    patches = np.concatenate(per_clip)
    outputs = {}
    for model in MODELS:
        with torch.inference_mode():
            logits, pen = musicnn.load_model(model)(torch.from_numpy(patches))
        outputs[f"{model}/tags"], outputs[f"{model}/penultimate"] = torch.sigmoid(logits).numpy(), pen.numpy()
    return patches, counts, outputs


def compare(clips, counts, mine, ref) -> tuple[list[dict], dict]:
    from pipelines.audio import musicnn

    rows, worst = [], {"tags": 0.0, "penultimate": 0.0}
    bounds = np.cumsum([0, *counts])
    for i, clip in enumerate(clips):
        sl = slice(bounds[i], bounds[i + 1])
        row = {"clip": clip.name, "patches": counts[i]}
        for model in MODELS:
            short = model.split("_")[0]
            for what in ("tags", "penultimate"):
                d = float(np.abs(mine[f"{model}/{what}"][sl] - ref[f"{model}/{what}"][sl]).max())
                row[f"{short}_{what}_max_abs_diff"] = d
                worst[what] = max(worst[what], d)
            tg = ref[f"{model}/tags"][sl]
            row[f"{short}_tf_patch_spread"] = float(tg.std(axis=0).max()) if counts[i] > 1 else None
            mean = mine[f"{model}/tags"][sl].mean(axis=0)
            names = musicnn.model_card(model)["tags"]
            row[f"{short}_top"] = ", ".join(f"{names[j]} {mean[j]:.2f}" for j in np.argsort(-mean)[:4])
        rows.append(row)
    return rows, worst


def report(rows, worst, tf_version: str, command: str, path: Path) -> str:
    ok = worst["tags"] <= TOLERANCE
    lines = [
        "# musicnn torch port vs the original TF1 graph",
        "",
        f"Command: `{command}`",
        "",
        f"Reference: TensorFlow {tf_version} (separate venv), `import_meta_graph` of each checkpoint's `.meta` "
        "from PyPI musicnn 0.1.0 + `Saver.restore`, graph mode, fed the same float32 mel patches as the port. "
        "Port: `pipelines/audio/musicnn.py`, torch, one thread.",
        "",
        f"Worst max |Δ| over all clips and both models: taggram {worst['tags']:.2e}, penultimate embedding "
        f"{worst['penultimate']:.2e} (tolerance on the taggram {TOLERANCE:g}: {'met' if ok else 'NOT met'}).",
        "",
        "| clip | patches | MSD tags Δ | MSD emb Δ | MTT tags Δ | MTT emb Δ | TF per-patch spread (MSD/MTT) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        spread = "n/a (1 patch)" if r["MSD_tf_patch_spread"] is None else (
            f"{r['MSD_tf_patch_spread']:.3f} / {r['MTT_tf_patch_spread']:.3f}")
        lines.append(
            f"| {r['clip']} | {r['patches']} | {r['MSD_tags_max_abs_diff']:.1e}"
            f" | {r['MSD_penultimate_max_abs_diff']:.1e} | {r['MTT_tags_max_abs_diff']:.1e}"
            f" | {r['MTT_penultimate_max_abs_diff']:.1e} | {spread} |"
        )
    lines += ["", "Per-patch spread: the largest std over a clip's patches of one tag probability in the TF "
              "reference (0 would mean every patch gives the same output).", "", *_PREPROCESSING_NOTE, "",
              "Top tags (clip mean, torch):", "", "| clip | MSD | MTT |", "|---|---|---|"]
    lines += [f"| {r['clip']} | {r['MSD_top']} | {r['MTT_top']} |" for r in rows]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="*", type=Path, help="audio clips (default: see the module docstring)")
    parser.add_argument("--wheel", type=Path, required=True, help="musicnn-0.1.0-py3-none-any.whl")
    parser.add_argument("--tf-python", help="python of a venv with tensorflow (runs the reference)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds read per clip")
    parser.add_argument("--report", type=Path, default=ROOT / "data" / "models" / "musicnn" / "PORT_CHECK.md")
    parser.add_argument("--tf-reference", nargs=2, type=Path, metavar=("PATCHES", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tf_reference:
        tf_reference(args.wheel, *args.tf_reference)
        return 0
    if not args.tf_python:
        parser.error("--tf-python is required")
    sys.path.insert(0, str(ROOT))
    clips = [c.resolve() for c in args.clips] or default_clips()
    patches, counts, mine = torch_side(clips, args.duration)
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "patches.npz", patches=patches)
        cmd = [args.tf_python, __file__, "--wheel", str(args.wheel), "--tf-reference",
               str(Path(tmp) / "patches.npz"), str(Path(tmp) / "ref.npz")]
        subprocess.run(cmd, check=True, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
        with np.load(Path(tmp) / "ref.npz") as z:
            ref = {k: z[k] for k in z.files}
    rows, worst = compare(clips, counts, mine, ref)
    command = "scripts/check_musicnn_port.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(report(rows, worst, str(ref["tf_version"]), command, args.report))
    print(json.dumps(worst))
    return 0 if worst["tags"] <= TOLERANCE else 1


if __name__ == "__main__":
    raise SystemExit(main())
