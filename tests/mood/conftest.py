"""Shared fixtures of the mood tests: the open text data and a query mood model trained on a subset.

Training uses a fixed subset of EmoBank train (2,000 sentences) + every Glasgow word and is scored
on 400 EmoBank dev sentences; encoder features are cached in pytest's cache folder keyed by content.
"""

from pathlib import Path

import numpy as np
import pytest

from pipelines import store
from pipelines.mood.lexicon import MoodLexicon, resolve_open_file
from pipelines.mood.query import QueryMoodModel
from pipelines.mood.query_training import TrainingData, load_emobank, load_glasgow_words, train_query_mood_model

DATA_DIR = store.DATA_DIR


def _have_text_data() -> bool:
    try:
        for name in ("emobank_train_dev.csv", "glasgow_norms.csv", "vader_lexicon.txt"):
            resolve_open_file(data_dir=DATA_DIR, relative=f"text/{name}")
    except FileNotFoundError:
        return False
    return True


needs_text_data = pytest.mark.skipif(not _have_text_data(), reason="open text data not found")


def _subset(data: TrainingData, n: int, seed: int) -> TrainingData:
    idx = np.sort(np.random.default_rng(seed).choice(len(data.texts), size=min(n, len(data.texts)), replace=False))
    return TrainingData(
        texts=[data.texts[i] for i in idx], targets=data.targets[idx], sources=data.sources[idx]
    )


@pytest.fixture(scope="session")
def lexicon() -> MoodLexicon:
    return MoodLexicon.from_files(data_dir=DATA_DIR)


@pytest.fixture(scope="session")
def trained(request) -> tuple[QueryMoodModel, dict]:
    cache_dir = Path(request.config.cache.mkdir("moodscape_querymood_embeddings"))
    eb = _subset(load_emobank(data_dir=DATA_DIR, split="train"), 2000, seed=0)
    gl = load_glasgow_words(data_dir=DATA_DIR)
    train = TrainingData(
        texts=eb.texts + gl.texts,
        targets=np.vstack([eb.targets, gl.targets]),
        sources=np.concatenate([eb.sources, gl.sources]),
    )
    dev = _subset(load_emobank(data_dir=DATA_DIR, split="dev"), 400, seed=1)
    return train_query_mood_model(
        data_dir=DATA_DIR, train=train, dev=dev, alphas=(300.0, 3000.0), glasgow_weights=(0.0, 0.3),
        cache=lambda key: cache_dir / f"{key}.npy",
    )
