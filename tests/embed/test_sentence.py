"""BatchingEncoder: concurrent callers share forward passes and get exactly their own vectors."""

import threading
import time

import numpy as np
import pytest

from pipelines.embed.sentence import BatchingEncoder, embed_texts

QUERIES = ["upbeat morning workout", "i miss my ex", "rainy night piano", "angry metal riffs",
           "chill lofi beats to study", "happy summer pop", "sad acoustic guitar", "epic orchestral trailer"]


def test_concurrent_calls_are_batched_and_match_embed_texts() -> None:
    gate = threading.Event()
    calls: list[int] = []

    def slow_first(texts):  # the real encoder; the first pass waits so the others queue behind it
        calls.append(len(texts))
        if len(calls) == 1:
            gate.wait(timeout=10)
        return embed_texts(texts)

    enc = BatchingEncoder(encode=slow_first)
    try:
        out: dict[str, np.ndarray] = {}

        def ask(q: str) -> None:
            out[q] = enc([q])

        first = threading.Thread(target=ask, args=(QUERIES[0],))
        first.start()
        while not calls:
            time.sleep(0.001)
        rest = [threading.Thread(target=ask, args=(q,)) for q in QUERIES[1:]]
        for t in rest:
            t.start()
        while enc._queue.qsize() < len(rest):  # every later caller is waiting in the queue
            time.sleep(0.001)
        gate.set()
        for t in [first, *rest]:
            t.join(timeout=30)
        assert calls == [1, len(QUERIES) - 1]  # one lone pass, then one batch for everyone else
        expected = embed_texts(QUERIES)
        for i, q in enumerate(QUERIES):
            assert out[q].shape == (1, 384)
            np.testing.assert_allclose(out[q][0], expected[i], atol=1e-5)
    finally:
        enc.close()


def test_errors_reach_every_caller_and_the_encoder_keeps_serving() -> None:
    def flaky(texts):
        if any("boom" in t for t in texts):
            raise ValueError("cannot encode")
        return embed_texts(texts)

    enc = BatchingEncoder(encode=flaky)
    try:
        with pytest.raises(ValueError, match="cannot encode"):
            enc(["boom"])
        assert enc(["fine"]).shape == (1, 384)
        assert enc([]).shape == (0, 384)
    finally:
        enc.close()
