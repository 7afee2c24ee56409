"""Mood labels from the real label files: EMOPIA quadrants and the immich mood folders."""

from pathlib import Path

import polars as pl
import pytest

from pipelines import store
from pipelines.mood.labels import AROUSAL_SIGN, VALENCE_SIGN, emopia_labels, immich_labels
from pipelines.mood.lexicon import MoodLexicon
from pipelines.schema import AROUSAL, VALENCE
from tests.helpers import have_open_file

DATA_DIR = store.DATA_DIR


@pytest.mark.skipif(not have_open_file("emopia/labels.csv"), reason="EMOPIA labels not found")
def test_emopia_labels() -> None:
    df = emopia_labels(data_dir=DATA_DIR)
    assert df.height == 990
    assert set(df["split"].unique()) == {"train", "val"}
    assert df.filter(pl.col("split") == "val").height == 114
    q = dict(zip(df["quadrant"].to_list(), zip(df[VALENCE_SIGN].to_list(), df[AROUSAL_SIGN].to_list())))
    assert q == {1: (1, 1), 2: (-1, 1), 3: (-1, -1), 4: (1, -1)}


@pytest.mark.skipif(not have_open_file("audio/immich/labels.csv"), reason="immich tracks not found")
def test_immich_labels_from_glasgow() -> None:
    lex = MoodLexicon.from_files(data_dir=DATA_DIR)
    df = immich_labels(data_dir=DATA_DIR, lexicon=lex)
    assert df.height == 28
    calm = df.filter(pl.col("mood") == "calm").row(0, named=True)
    assert calm[VALENCE] == pytest.approx((7.343 - 5) / 4)
    assert calm[AROUSAL] == pytest.approx((3.743 - 5) / 4)
    # words the Glasgow norms do not rate stay null (no invented targets)
    unrated = df.filter(pl.col("mood").is_in(["energetic", "nostalgic"]))
    assert unrated.height > 0 and unrated[VALENCE].null_count() == unrated.height
    assert all(Path(p).exists() for p in df["path"].to_list())
