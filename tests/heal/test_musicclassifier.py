"""The learned music / non-music signal: real labelled examples, held-out metrics, combination rule."""

import numpy as np
import polars as pl
import pytest

from pipelines import schema as S
from pipelines.heal.musicclassifier import LIBROSA_NON_MUSIC, apply_classifier, fit_from_open_data, training_examples
from pipelines.heal.musicfilter import classify_music
from pipelines.store import DATA_DIR


@pytest.fixture(scope="module")
def classifier():
    if not (DATA_DIR / "text" / "emobank_train_dev.csv").exists():
        pytest.skip("open data not available")
    return fit_from_open_data(data_dir=DATA_DIR, n_per_source=150)


def test_training_examples_are_real_and_labelled() -> None:
    ex = training_examples(data_dir=DATA_DIR, n_per_source=20)
    counts = {(origin, label): n for origin, label, n in ex.group_by("origin", "label").len().iter_rows()}
    assert counts[("librosa", 0)] == len(LIBROSA_NON_MUSIC) == 6 and counts[("librosa", 1)] == 8
    assert counts[("emobank", 0)] == 40 and counts[("musiccaps", 1)] == 20 and counts[("mtg_jamendo", 1)] == 20
    assert ex.filter(pl.col("text_doc") == "").height == 0


def test_held_out_metrics_reported(classifier) -> None:
    m = classifier.metrics
    assert m["held_out"] > 100 and m["held_out_music"] > 0 and m["held_out_non_music"] > 0
    assert m["precision_music"] > 0.9 and m["recall_music"] > 0.9 and m["recall_non_music"] > 0.9


def test_applies_only_to_undecided_rows(classifier) -> None:
    # real rows: MusicCaps captions (music words → decided by the heuristic, never scored) and an
    # EmoBank sentence posing as an upload's description (no evidence either way → scored)
    caps = pl.read_csv(DATA_DIR / "corpus" / "musiccaps.csv").head(3)
    emo = pl.read_csv(DATA_DIR / "text" / "emobank_train_dev.csv").filter(pl.col("split") == "dev").head(2)
    tracks = pl.DataFrame({
        S.TRACK_ID: ["c0", "c1", "c2", "e0", "e1"],
        S.DESCRIPTION: caps["caption"].to_list() + emo["text"].to_list(),
    })
    verdict = classify_music(tracks=tracks, audio_features=None)
    out = apply_classifier(tracks=tracks, verdict=verdict, classifier=classifier)
    assert out[S.TRACK_ID].to_list() == tracks[S.TRACK_ID].to_list()
    prob = dict(zip(out[S.TRACK_ID].to_list(), out[S.MUSIC_PROBABILITY].to_list()))
    assert prob["c0"] is None and prob["c1"] is None and prob["c2"] is None
    assert prob["e0"] is not None and prob["e1"] is not None  # no music or non-music words in them
    for r in out.iter_rows(named=True):
        if r[S.MUSIC_PROBABILITY] is not None and r[S.MUSIC_PROBABILITY] < 0.05:
            assert not r[S.IS_MUSIC] and r[S.MUSIC_REASON].startswith("classifier: P(music)=")
        elif r[S.MUSIC_PROBABILITY] is not None:
            assert r[S.IS_MUSIC]
    assert np.all([p is None or 0 <= p <= 1 for p in prob.values()])
