"""Co-occurrence priors: a key's mood is the mean of its items' *other* mood tags."""

import csv
from pathlib import Path

import numpy as np
import pytest

from pipelines.mood.lexicon import MoodLexicon
from pipelines.mood.priors import MIN_SUPPORT, learn_tag_priors, normalise, tag_priors
from pipelines.store import DATA_DIR

MOODS = {"happy": (0.8, 0.5, 1.0), "sad": (-0.6, -0.3, 1.0), "calm": (0.4, -0.6, 0.5)}


def word_mood(tag: str):
    return MOODS.get(tag.strip().lower())


def _write(data_dir: Path, mtg_rows: list[tuple[str, str, str]], caps: list[list[str]]) -> None:
    (data_dir / "corpus").mkdir(parents=True)
    with open(data_dir / "corpus" / "mtg_jamendo_tags.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["track_id", "genres", "instruments", "moods"])
        for i, (g, ins, m) in enumerate(mtg_rows):
            w.writerow([f"t{i}", g, ins, m])
    with open(data_dir / "corpus" / "musiccaps.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ytid", "aspect_list"])
        for i, aspects in enumerate(caps):
            w.writerow([f"y{i}", repr(aspects)])


def test_priors_follow_cooccurring_moods(tmp_path: Path) -> None:
    rows = [("metal", "guitar", "sad")] * 6 + [("pop|dance", "", "happy")] * 6 + [("ambient", "", "calm|sad")] * 6
    caps = [["slow tempo", "mellow piano", "sad"]] * 6 + [["fast tempo", "happy"]] * 6
    _write(tmp_path, rows, caps)
    priors = learn_tag_priors(word_mood=word_mood, data_dir=tmp_path)
    assert priors.items == {"mtg_jamendo": 18, "musiccaps": 12}
    metal, pop, ambient = (priors.lookup(t) for t in ("Metal", "pop", "ambient"))
    assert metal.valence == pytest.approx(-0.6) and metal.arousal == pytest.approx(-0.3)
    assert pop.valence == pytest.approx(0.8) and metal.support == 6
    # calm (weight 0.5) and sad (1.0) pooled by confidence
    assert ambient.valence == pytest.approx((0.5 * 0.4 + 1.0 * -0.6) / 1.5)
    # MusicCaps aspects count whole and per word; the mood aspect never explains itself
    assert priors.lookup("slow").valence == pytest.approx(-0.6)
    assert priors.lookup("slow tempo").arousal == pytest.approx(-0.3)
    assert priors.lookup("sad") is None  # its clips have no *other* mood aspect
    assert priors.lookup("tempo").support == 12
    assert 0 < metal.confidence < 1
    assert priors.lookup("guitars") is not None  # plural falls back to the singular
    assert priors.lookup("nonexistent") is None


def test_min_support(tmp_path: Path) -> None:
    _write(tmp_path, [("rare", "", "happy")] * (MIN_SUPPORT - 1), [])
    assert learn_tag_priors(word_mood=word_mood, data_dir=tmp_path).lookup("rare") is None


def test_normalise() -> None:
    assert normalise("Hip-Hop") == "hiphop" and normalise("heavy metal") == "heavymetal"


def test_shipped_priors_know_genres() -> None:
    """On the shipped corpora, music words the norms cannot rate get a mood from co-occurrence."""
    priors = tag_priors(lexicon=MoodLexicon.from_files(data_dir=DATA_DIR), data_dir=DATA_DIR)
    assert priors.items["mtg_jamendo"] > 10_000 and priors.items["musiccaps"] > 3_000
    for calm, lively in (("ambient", "dance"), ("slow", "pop")):
        assert priors.lookup(calm).arousal < priors.lookup(lively).arousal
    assert priors.lookup("metal").valence < priors.lookup("pop").valence


def _artist_rows(tmp_path: Path, rows: list[tuple[str, str, str]]) -> None:
    (tmp_path / "corpus").mkdir(parents=True)
    with open(tmp_path / "corpus" / "mtg_jamendo_tags.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["track_id", "artist_id", "genres", "instruments", "moods"])
        for i, (artist, g, m) in enumerate(rows):
            w.writerow([f"t{i}", artist, g, "", m])
    with open(tmp_path / "corpus" / "musiccaps.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ytid", "aspect_list"])
        for i in range(12):
            w.writerow([f"y{i}", repr(["metal", "sad"] if i % 2 else ["pop", "happy"])])


def test_reliability_transfer_and_artist_icc(tmp_path: Path) -> None:
    """Genres that decide the mood give a high CV and cross-corpus r; artists whose tracks share a
    mood give a high intra-class correlation; a genre unrelated to mood gives r ≈ 0."""
    rows = [(f"a{i % 20}", "metal" if i % 20 < 10 else "pop", "sad" if i % 20 < 10 else "happy") for i in range(200)]
    _artist_rows(tmp_path, rows)
    priors = learn_tag_priors(word_mood=word_mood, data_dir=tmp_path)
    assert priors.reliability[0] > 0.95 and priors.transfer[0] > 0.95
    assert priors.artist_icc[0] > 0.95
    assert priors.spread[0] == pytest.approx(0.7)  # moods ±0.7 around the mean


def test_unrelated_genre_has_no_reliability(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [(f"a{i}", str(rng.choice(["metal", "pop"])), str(rng.choice(["sad", "happy"]))) for i in range(400)]
    _artist_rows(tmp_path, rows)
    priors = learn_tag_priors(word_mood=word_mood, data_dir=tmp_path)
    assert priors.reliability[0] < 0.15 and priors.artist_icc[0] == 0.0  # one track per artist


def test_shipped_priors_reliability() -> None:
    """Within MTG-Jamendo (artist-disjoint CV) genres predict mood better than across corpora."""
    priors = tag_priors(lexicon=MoodLexicon.from_files(data_dir=DATA_DIR), data_dir=DATA_DIR)
    for axis in range(2):
        assert 0.0 < priors.transfer[axis] < priors.reliability[axis] < 0.6
        assert 0.1 < priors.artist_icc[axis] < 0.9
