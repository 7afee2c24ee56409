"""Encoder layer features: one torch pass gives the embedding of ``embed_texts`` and the layer blocks;
the serving encoders compute the same blocks and leave them in the memo."""

import numpy as np

from pipelines.embed.layers import MEMO, N_LAYER_FEATURES, LayerMemo, embed_with_layers
from pipelines.embed.query import QueryEncoder
from pipelines.embed.sentence import embed_texts

TEXTS = ["i miss my ex", "upbeat morning workout music for the gym", "calm", "a much longer sentence " * 5]


def test_embedding_matches_embed_texts_and_layers_are_distinct() -> None:
    emb, layers = embed_with_layers(TEXTS, batch_size=2)
    assert emb.shape == (len(TEXTS), 384) and layers.shape == (len(TEXTS), N_LAYER_FEATURES)
    ref = embed_texts(TEXTS)
    assert (np.sum(emb * ref, axis=1) > 0.99999).all()
    assert np.isfinite(layers).all()
    block0, block1 = layers[:, :384], layers[:, 384:]
    assert not np.allclose(block0, block1)
    assert not np.allclose(block0[0], block0[2])  # texts differ in every block


def test_torch_serving_encoder_memo_matches_training_pass() -> None:
    MEMO.clear()
    enc = QueryEncoder(precision="fp32")
    emb = enc(TEXTS)
    _, layers = embed_with_layers(TEXTS)
    got = MEMO.get(TEXTS, emb)
    assert got is not None
    np.testing.assert_allclose(got, layers, atol=1e-4)


def test_memo_is_bounded_and_checks_the_embedding() -> None:
    memo = LayerMemo(maxsize=2)
    e = np.eye(3, 384, dtype=np.float32)
    f = np.arange(3 * N_LAYER_FEATURES, dtype=np.float32).reshape(3, -1)
    memo.put(["a", "b", "c"], e, f)
    assert memo.get(["a"], e[:1]) is None  # evicted
    np.testing.assert_array_equal(memo.get(["c", "b"], e[[2, 1]]), f[[2, 1]])
    assert memo.get(["b"], e[2:3]) is None  # same text, another embedding
