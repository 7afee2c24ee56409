#!/usr/bin/env python
"""Compare query encoders — ``embed_texts`` (sentence-transformers), direct fp32 / bf16 / int8 torch
and the ONNX Runtime graph — on real query texts: CPU and wall ms per call (1, 4, 8 texts) and
each one's quality against direct fp32.

    OMP_NUM_THREADS=1 python scripts/compare_query_encoders.py [--n 400] [--store DIR] > out.json

Queries: the ``original`` column of the Deezer music-NER request sets (MIT) plus EmoBank sentences
(CC BY-SA), both open data. Quality of each reduced precision against direct fp32: cosine between
the vectors, top-10 neighbour overlap by exact inner product against the published store's
``text_vectors.npy``, and the mean absolute (valence, arousal) difference of the published
query-mood model fed those embeddings.
Prints one JSON object.
"""

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines import store
from pipelines.mood import lexicon

Encoder = Callable[[Sequence[str]], np.ndarray]


def load_queries(*, n: int, seed: int) -> dict[str, list[str]]:
    """Up to ``n`` real texts per source ("deezer", "emobank"), distinct, non-empty, seeded sample."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {}
    deezer_dir = lexicon.resolve_open_file(data_dir=store.DATA_DIR, relative="queries/deezer_music_ner")
    deezer = pl.concat([pl.read_csv(p, columns=["original"]) for p in sorted(deezer_dir.glob("*.csv"))])
    try:
        emobank = pl.read_csv(lexicon.resolve_open_file(data_dir=store.DATA_DIR, relative="text/emobank_train_dev.csv"))
        sources = {"deezer": deezer["original"], "emobank": emobank["text"]}
    except FileNotFoundError:
        sources = {"deezer": deezer["original"]}
    for name, col in sources.items():
        texts = list(dict.fromkeys(t.strip() for t in col.drop_nulls().to_list() if t and t.strip()))
        idx = rng.permutation(len(texts))[:n]
        out[name] = [texts[i] for i in sorted(idx)]
    return out


def time_encoders(
    *, encoders: dict[str, Encoder], texts: list[str], batch: int, warmup: int = 5
) -> dict[str, dict[str, float]]:
    """CPU (process_time) and wall (perf_counter) ms per call of each encoder on consecutive
    ``batch``-sized slices of ``texts``, after ``warmup`` untimed calls. The encoders take turns
    on every slice, so load from other processes on the box hits them alike."""
    calls = [texts[i : i + batch] for i in range(0, len(texts) - batch + 1, batch)]
    for c in calls[:warmup]:
        for enc in encoders.values():
            enc(c)
    cpu = dict.fromkeys(encoders, 0.0)
    wall = dict.fromkeys(encoders, 0.0)
    for c in calls:
        for name, enc in encoders.items():
            cpu0, wall0 = time.process_time(), time.perf_counter()
            enc(c)
            cpu[name] += time.process_time() - cpu0
            wall[name] += time.perf_counter() - wall0
    return {
        name: {
            "calls": len(calls),
            "cpu_ms_per_call": round(1000 * cpu[name] / len(calls), 3),
            "wall_ms_per_call": round(1000 * wall[name] / len(calls), 3),
            "cpu_ms_per_query": round(1000 * cpu[name] / (len(calls) * batch), 3),
        }
        for name in encoders
    }


def topk_overlap(*, a: np.ndarray, b: np.ndarray, base: np.ndarray, k: int) -> dict[str, float]:
    """Mean / min fraction of shared top-``k`` rows of ``base`` (N, d) by exact inner product for
    query sets ``a``, ``b`` (n, d), plus the share of queries whose top-1 agrees."""
    def top(q: np.ndarray) -> np.ndarray:
        scores = q @ base.T  # (n, N)
        part = np.argpartition(-scores, k, axis=1)[:, :k]
        return np.take_along_axis(part, np.argsort(-np.take_along_axis(scores, part, 1), axis=1), 1)

    ta, tb = top(a), top(b)
    overlap = np.array([len(set(x) & set(y)) / k for x, y in zip(ta, tb)])
    return {
        f"top{k}_overlap_mean": round(float(overlap.mean()), 4),
        f"top{k}_overlap_min": round(float(overlap.min()), 4),
        "top1_agree": round(float((ta[:, 0] == tb[:, 0]).mean()), 4),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=400, help="texts sampled per source")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", type=Path, default=None, help="published store version folder")
    args = parser.parse_args(argv)

    import torch

    from pipelines.embed.query import QueryEncoder, bf16_supported
    from pipelines.embed.sentence import embed_texts, load_encoder

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    queries = load_queries(n=args.n, seed=args.seed)
    all_texts = [t for texts in queries.values() for t in texts]
    model = load_encoder()
    t0 = time.perf_counter()
    fp32 = QueryEncoder(precision="fp32", model=model)
    t1 = time.perf_counter()
    int8 = QueryEncoder(precision="int8", model=model)
    t2 = time.perf_counter()
    bf16 = QueryEncoder(precision="bf16", model=model)
    t3 = time.perf_counter()
    from pipelines.embed.onnx import OnnxQueryEncoder, default_cache_dir, ensure_onnx

    onnx = OnnxQueryEncoder(model_path=ensure_onnx(cache_dir=default_cache_dir()))
    t4 = time.perf_counter()
    encoders: dict[str, Encoder] = {
        "embed_texts": embed_texts, "direct_fp32": fp32, "direct_bf16": bf16, "direct_int8": int8, "onnx": onnx,
    }

    report: dict = {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "quantized_engine": torch.backends.quantized.engine,
        "machine": platform.machine(),
        "n_texts": {k: len(v) for k, v in queries.items()},
        "bf16_native": bf16_supported(),
        "load_s": {"direct_fp32": round(t1 - t0, 3), "direct_int8": round(t2 - t1, 3), "direct_bf16": round(t3 - t2, 3),
                   "onnx": round(t4 - t3, 3)},
        "timing": {},
    }
    timing_texts = queries["deezer"]
    report["timing_texts"] = f"deezer ({len(timing_texts)} real queries), consecutive slices, encoders interleaved"
    for batch in (1, 4, 8):
        report["timing"][f"batch{batch}"] = time_encoders(encoders=encoders, texts=timing_texts, batch=batch)

    ref = embed_texts(all_texts)
    v32 = fp32(all_texts)
    quality: dict = {"fp32_direct_vs_embed_texts_cos_min": round(float((ref * v32).sum(1).min()), 7)}
    version_dir = args.store or store.current_version_dir()
    base = mood_model = None
    if version_dir is not None and (Path(version_dir) / "text_vectors.npy").exists():
        published = np.load(Path(version_dir) / "text_vectors.npy")  # (N, 384) track text vectors
        # Tracks sharing a text share a vector: search the distinct vectors, or ties make the
        # top-10 of a query arbitrary and the overlap meaningless.
        base = np.unique(published, axis=0)
        quality["store"] = {
            "version_dir": str(version_dir), "rows": int(published.shape[0]), "distinct_rows": int(base.shape[0]),
        }
        if (Path(version_dir) / "query_mood.joblib").exists():
            from pipelines.mood.query import QueryMoodModel

            mood_model = QueryMoodModel.load(Path(version_dir) / "query_mood.joblib")
            p32 = mood_model.predict(all_texts, embeddings=v32)
    d = len(queries["deezer"])
    for label, enc in (("onnx", onnx), ("bf16", bf16), ("int8", int8)):
        vq = enc(all_texts)
        q: dict = {"norm_max_dev": float(np.abs(np.linalg.norm(vq, axis=1) - 1).max())}
        offset = 0
        for name, texts in queries.items():
            cos = (v32[offset : offset + len(texts)] * vq[offset : offset + len(texts)]).sum(1)
            q[f"cos_{name}"] = {
                "mean": round(float(cos.mean()), 5),
                "min": round(float(cos.min()), 5),
                "p01": round(float(np.quantile(cos, 0.01)), 5),
            }
            offset += len(texts)
        if base is not None:
            q["neighbours_deezer"] = topk_overlap(a=v32[:d], b=vq[:d], base=base, k=10)
            q["neighbours_all"] = topk_overlap(a=v32, b=vq, base=base, k=10)
        if mood_model is not None:
            pq = mood_model.predict(all_texts, embeddings=vq)
            diff = np.abs(p32[:, :2] - pq[:, :2])
            q["query_mood"] = {
                "mae_valence": round(float(diff[:, 0].mean()), 5),
                "mae_arousal": round(float(diff[:, 1].mean()), 5),
                "max_abs_diff": round(float(diff.max()), 5),
                "mae_confidence": round(float(np.abs(p32[:, 2] - pq[:, 2]).mean()), 5),
            }
        quality[f"{label}_vs_fp32"] = q
    report["quality"] = quality
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
