"""Song-grouped folds and calibration metrics of the audio mood model's selection."""

import numpy as np
import polars as pl
import pytest

from pipelines import store
from pipelines.mood.labels import emopia_labels
from pipelines.mood.selection import expected_calibration_error, grouped_folds, song_groups
from tests.helpers import have_open_file

DATA_DIR = store.DATA_DIR


@pytest.mark.skipif(not have_open_file("emopia/labels.csv"), reason="EMOPIA labels not found")
def test_song_groups_keep_emopia_songs_in_one_fold() -> None:
    df = emopia_labels(data_dir=DATA_DIR)
    train = df.filter(pl.col("split") == "train")
    groups = song_groups(track_ids=train["clip_id"].to_list())
    assert groups[0].startswith("emopia:") and song_groups(track_ids=["calm_acoustic_1"])[0] == "track:calm_acoustic_1"
    # a song id with underscores keeps them ("Q4_d_49EtXDMFE_2" → "d_49EtXDMFE")
    assert song_groups(track_ids=["Q4_d_49EtXDMFE_2"])[0] == "emopia:d_49EtXDMFE"
    # clips of one song across quadrants share the group; the official split never splits a song
    assert len(set(groups)) < train.height
    strata = train["quadrant"].to_numpy()
    folds = grouped_folds(groups=groups, strata=strata, n_splits=5, seed=0)
    assert len(folds) == 5
    seen = np.zeros(train.height, dtype=int)
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])
        seen[te] += 1
    assert (seen == 1).all()


def test_expected_calibration_error() -> None:
    y = np.array([0, 0, 1, 1] * 25)
    assert expected_calibration_error(p=y.astype(float), y=y) == 0.0
    assert expected_calibration_error(p=np.full(100, 0.5), y=y) == pytest.approx(0.0)
    # always saying 0.9 for a 50/50 outcome is off by 0.4
    assert expected_calibration_error(p=np.full(100, 0.9), y=y) == pytest.approx(0.4)
