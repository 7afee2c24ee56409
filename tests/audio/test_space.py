"""The audio retrieval space: blocks, weights, absent blocks contribute nothing."""

import numpy as np
import pytest

from pipelines.audio.space import BLOCK_SHARES, fit_audio_space, stack_embeddings


def _data(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 12)), rng.normal(size=(n, 30))


def test_librosa_only_space_is_cosine() -> None:
    feats, _ = _data()
    space = fit_audio_space(features=feats, target_dims=8)
    assert list(space.blocks) == ["librosa"] and space.dims == 8
    v = space.transform(feats)
    assert v.dtype == np.float32 and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_two_blocks_weighted_and_absent_block_is_zero() -> None:
    feats, emb = _data()
    space = fit_audio_space(features=feats, embeddings=emb, target_dims=8)
    assert list(space.blocks) == ["backbone", "librosa"] and space.dims == 16
    assert space.weight("backbone") ** 2 == pytest.approx(BLOCK_SHARES["backbone"])
    emb_missing = emb.copy()
    emb_missing[:5] = np.nan  # imputed tracks: no recording, no embedding
    v = space.transform(feats, emb_missing)
    assert np.allclose(np.linalg.norm(v[5:], axis=1), 1.0, atol=1e-5)
    assert np.allclose(v[:5, :8], 0.0)  # backbone block absent
    assert np.allclose(np.linalg.norm(v[:5], axis=1), space.weight("librosa"), atol=1e-5)
    # inner product = Σ weight² × block cosine
    b = space.blocks["backbone"].transform(emb[5:7])
    lib = space.blocks["librosa"].transform(feats[5:7])
    want = BLOCK_SHARES["backbone"] * b[0] @ b[1] + BLOCK_SHARES["librosa"] * lib[0] @ lib[1]
    assert float(v[5] @ v[6]) == pytest.approx(want, abs=1e-5)


def test_too_few_embeddings_fall_back_to_librosa() -> None:
    feats, emb = _data()
    emb[1:] = np.nan
    assert list(fit_audio_space(features=feats, embeddings=emb).blocks) == ["librosa"]


def test_stack_embeddings() -> None:
    out = stack_embeddings([[[1.0, 2.0], None, [5.0, 6.0]], [[3.0], [4.0], [7.0]]])
    assert out.shape == (3, 3)
    assert out[0].tolist() == [1.0, 2.0, 3.0] and np.isnan(out[1]).all() and out[2].tolist() == [5.0, 6.0, 7.0]
