"""QueryEncoder: the direct fp32 path reproduces ``embed_texts``; bf16 is near-exact; int8 is a
bounded approximation; the env factory parses strictly. Real Deezer / EmoBank texts."""

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.embed.onnx import OnnxQueryEncoder, ensure_onnx
from pipelines.embed.query import (
    ENV_VAR,
    PRECISIONS,
    TORCH_PRECISIONS,
    QueryEncoder,
    bf16_supported,
    default_precision,
    onnx_available,
    parse_precision,
    query_encoder_from_env,
)
from pipelines.embed.sentence import (
    EMBEDDING_DIM,
    BatchingEncoder,
    embed_texts,
    load_encoder,
)
from pipelines.store import REPO_ROOT
from tests.conftest import open_file

N_QUERIES = 60


@pytest.fixture(scope="module")
def queries() -> list[str]:
    """Real music requests (Deezer music-NER ``original``), every 10th of one file, distinct."""
    col = pl.read_csv(open_file("queries/deezer_music_ner/dataset2_queries.csv"))["original"]
    texts = list(dict.fromkeys(t.strip() for t in col.drop_nulls().to_list() if t.strip()))
    return texts[::10][:N_QUERIES]


@pytest.fixture(scope="module")
def varied_texts(queries: list[str]) -> list[str]:
    """Real texts of varied length: one-word-ish to paragraph, plus one longer than 256 word pieces
    (real queries joined), so truncation is exercised."""
    emobank = pl.read_csv(open_file("text/emobank_train_dev.csv"))["text"].drop_nulls().to_list()
    by_len = sorted(set(emobank), key=len)
    picks = [by_len[0], by_len[len(by_len) // 2], by_len[-1]]  # shortest, median, longest sentence
    return picks + queries[:10] + [" ".join(queries)]


@pytest.fixture(scope="session")
def onnx_cache(request) -> Path:
    """The exported graph's cache, kept between runs (the export takes ~10 s in a child process)."""
    return Path(request.config.cache.mkdir("moodscape_onnx_encoder"))


@pytest.fixture(scope="module")
def encoders(onnx_cache: Path) -> dict:
    model = load_encoder()
    out = {p: QueryEncoder(precision=p, model=model) for p in TORCH_PRECISIONS}
    out["onnx"] = OnnxQueryEncoder(model_path=ensure_onnx(cache_dir=onnx_cache))
    return out


def test_fp32_direct_matches_embed_texts(encoders, varied_texts) -> None:
    enc = encoders["fp32"]
    assert enc.tokenize(varied_texts)["input_ids"].shape == (len(varied_texts), 256)
    assert enc.tokenize([varied_texts[-1]])["input_ids"].shape[1] == enc.max_seq_length == 256  # truncated
    assert enc.tokenize([varied_texts[0]])["input_ids"].shape[1] < 10  # padded only to the longest text
    full = len(load_encoder().tokenizer(varied_texts[-1], truncation=False)["input_ids"])
    assert full > enc.max_seq_length
    ref = embed_texts(varied_texts)
    got = enc(varied_texts)
    assert got.dtype == np.float32 and got.shape == (len(varied_texts), EMBEDDING_DIM)
    cos = (ref * got).sum(1)
    assert cos.min() > 0.9999, cos
    singles = np.vstack([enc([t]) for t in varied_texts[:5]])  # per-text padding changes nothing
    assert np.allclose(singles, got[:5], atol=1e-5)


def test_onnx_runtime_matches_embed_texts(encoders, varied_texts) -> None:
    # The exported graph is the same fp32 model: exact to float rounding, padded batches included
    # (the dynamic batch/sequence axes), and truncation at 256 word pieces the same.
    enc = encoders["onnx"]
    ref = embed_texts(varied_texts)
    got = enc(varied_texts)
    assert got.dtype == np.float32 and got.shape == (len(varied_texts), EMBEDDING_DIM)
    cos = (ref * got).sum(1)
    assert cos.min() > 0.99999, cos
    singles = np.vstack([enc([t]) for t in varied_texts])
    assert np.allclose(singles, got, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # the Rust tokenizer configured by hand gives the ids sentence-transformers' tokenizer gives
    ids = enc.tokenize(varied_texts)
    ref_ids = encoders["fp32"].tokenize(varied_texts)
    for name in ("input_ids", "token_type_ids", "attention_mask"):
        np.testing.assert_array_equal(ids[name], ref_ids[name].numpy(), err_msg=name)


def test_onnx_serving_encoder_never_imports_torch(onnx_cache: Path) -> None:
    # `moodscape serve`'s setup, the encoder and the app load without torch (~660 MB of RSS with
    # the model; its libraries alone ~250 MB).
    code = (
        "import sys\n"
        "from moodscape.cli import _configure_serving_threads\n"
        "_configure_serving_threads()\n"
        "from pipelines.embed.query import query_encoder_from_env\n"
        "import serving.app\n"
        f"enc = query_encoder_from_env(environ={{'MOODSCAPE_QUERY_ENCODER': 'onnx'}}, cache_dir={str(onnx_cache)!r})\n"
        "assert enc(['sad piano at night']).shape == (1, 384)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO_ROOT), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("precision", PRECISIONS)
def test_empty_and_unit_rows(encoders, queries, precision) -> None:
    enc = encoders[precision]
    empty = enc([])
    assert empty.shape == (0, EMBEDDING_DIM) and empty.dtype == np.float32
    out = enc(queries)
    assert out.shape == (len(queries), EMBEDDING_DIM) and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_reduced_precisions_against_fp32(encoders, queries) -> None:
    ref = encoders["fp32"](queries)
    bf16 = (encoders["bf16"](queries) * ref).sum(1)
    assert bf16.min() > 0.999, bf16.min()
    # int8 dynamic quantisation is lossy on MiniLM (measured on 800 real texts: mean 0.97, worst
    # 0.89); these bounds catch a broken quantisation (random-like vectors score ~0) or a regression.
    int8 = (encoders["int8"](queries) * ref).sum(1)
    assert int8.mean() > 0.96, int8.mean()
    assert int8.min() > 0.85, int8.min()
    assert int8.mean() < bf16.mean()  # int8 really is quantised, not the fp32 net under a new name


def test_chunked_calls_keep_input_order(queries) -> None:
    small = QueryEncoder(precision="fp32", batch_size=4)
    texts = queries[:11]
    assert np.allclose(small(texts), embed_texts(texts), atol=1e-5)


def test_thread_safe_and_batchable(encoders, queries) -> None:
    enc = encoders["int8"]
    expected = {q: enc([q])[0] for q in queries[:8]}
    results: dict[str, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(q: str) -> None:
        try:
            for _ in range(3):
                results[q] = enc([q])[0]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(q,)) for q in expected]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    for q, v in expected.items():
        assert np.allclose(results[q], v, atol=1e-5)
    batcher = BatchingEncoder(encode=enc)
    try:
        assert np.allclose(batcher(queries[:3]), enc(queries[:3]), atol=1e-5)
    finally:
        batcher.close()


def test_env_parsing() -> None:
    assert parse_precision(value="int8") == "int8"
    assert parse_precision(value=" FP32 ") == "fp32"
    assert parse_precision(value="bf16") == "bf16"
    assert parse_precision(value=None) == parse_precision(value="") == default_precision()
    assert parse_precision(value="ONNX") == "onnx"
    assert default_precision() == ("onnx" if onnx_available() else "bf16" if bf16_supported() else "fp32")
    for bad in ("fp16", "int4", "yes"):
        with pytest.raises(ValueError, match=ENV_VAR):
            parse_precision(value=bad)


def test_env_factory(onnx_cache: Path) -> None:
    model = load_encoder()
    assert query_encoder_from_env(environ={ENV_VAR: "fp32"}, model=model).precision == "fp32"
    assert query_encoder_from_env(environ={}, model=model, cache_dir=onnx_cache).precision == default_precision()
    with pytest.raises(ValueError, match="int8"):
        query_encoder_from_env(environ={ENV_VAR: "int-8"}, model=model)
    for bad in ("fp64", "onnx"):  # onnx is OnnxQueryEncoder's job
        with pytest.raises(ValueError, match="precision"):
            QueryEncoder(precision=bad, model=model)  # type: ignore[arg-type]


def test_default_falls_back_to_torch_when_the_export_fails(tmp_path: Path, monkeypatch) -> None:
    # An unwritable cache (a file where the folder should be) makes the export fail: the default
    # keeps serving on torch, an explicit request for onnx fails loudly.
    from pipelines.embed import query as queryencoder

    blocked = tmp_path / "not-a-dir"
    blocked.write_text("x")
    monkeypatch.setattr(queryencoder, "default_precision", lambda: "onnx")
    enc = query_encoder_from_env(environ={}, model=load_encoder(), cache_dir=blocked / "sub")
    assert enc.precision in ("bf16", "fp32")
    with pytest.raises((RuntimeError, OSError)):
        query_encoder_from_env(environ={ENV_VAR: "onnx"}, cache_dir=blocked / "sub")


def test_onnx_graph_hands_its_layer_features_to_the_memo(encoders, varied_texts) -> None:
    """The exported graph's second output is the layer features of the torch pass (same blocks)."""
    from pipelines.embed.layers import MEMO, embed_with_layers

    MEMO.clear()
    got = encoders["onnx"](varied_texts)
    _, layers = embed_with_layers(varied_texts)
    memo = MEMO.get(varied_texts, got)
    assert memo is not None
    np.testing.assert_allclose(memo, layers, atol=1e-3)
