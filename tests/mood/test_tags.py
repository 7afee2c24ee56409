"""Tag → mood knowledge on the real word norms (Glasgow, VADER) and the real MTG-Jamendo /
MusicCaps tag vocabularies; skipped when those files are absent."""

import numpy as np
import polars as pl
import pytest

from pipelines import store
from pipelines.mood.lexicon import VADER_NEGATION_SCALAR, MoodLexicon, resolve_open_file
from pipelines.mood.tags import (
    MTG_TAGS_FILE,
    combine_tag_moods,
    scorer_for,
    split_tags,
    tag_mood_table,
    tag_tokens,
    track_tag_moods,
)
from tests.helpers import have_open_file

DATA_DIR = store.DATA_DIR


pytestmark = pytest.mark.skipif(
    not all(have_open_file(f) for f in ("text/glasgow_norms.csv", "text/vader_lexicon.txt", MTG_TAGS_FILE)),
    reason="word norms or MTG-Jamendo tag table not found",
)


@pytest.fixture(scope="module")
def lexicon() -> MoodLexicon:
    return MoodLexicon.from_files(data_dir=DATA_DIR)


@pytest.fixture(scope="module")
def scorer(lexicon):
    return scorer_for(lexicon=lexicon, data_dir=DATA_DIR)


def test_tokens_and_split() -> None:
    assert tag_tokens("mood/theme---melancholic") == ["melancholic"]
    assert tag_tokens("Mellow piano-melody") == ["mellow", "piano", "melody"]
    assert split_tags("sad, piano ,  ") == ["sad", "piano"] and split_tags("") is None and split_tags(None) is None


def test_affective_tags_take_the_norm_values(scorer, lexicon) -> None:
    sad, happy, relaxing = scorer.tag_mood("sad"), scorer.tag_mood("happy"), scorer.tag_mood("relaxing")
    assert sad.valence == pytest.approx(lexicon.valence["sad"]) and sad.arousal == pytest.approx(lexicon.arousal["sad"])
    assert sad.valence < 0 < happy.valence and happy.arousal > 0 > relaxing.arousal
    assert min(sad.confidence, happy.confidence, relaxing.confidence) > 0.3
    # MTG-style prefix and case do not matter
    assert scorer.tag_mood("mood/theme---Sad") == sad


def test_music_and_recording_words_carry_no_mood(scorer) -> None:
    for tag in ("piano", "electric guitar", "rock", "medium tempo", "low quality", "amateur recording", "noisy",
                "male vocal"):
        assert scorer.tag_mood(tag) is None, tag
    # an instrument word next to a mood word neither adds mood nor dilutes confidence
    assert scorer.tag_mood("sad piano") == scorer.tag_mood("sad")
    # tempo words: the norms make "slow" calm
    assert scorer.tag_mood("slow tempo").arousal < -0.3


def test_multiword_mean_and_negation(scorer, lexicon) -> None:
    sad, happy = scorer.tag_mood("sad"), scorer.tag_mood("happy")
    mixed = scorer.tag_mood("happy and sad")
    w = np.array([happy.confidence, sad.confidence]) / (happy.confidence + sad.confidence)
    # affect-weighted mean of the two words (per-word affect == single-word tag confidence here)
    assert mixed.valence == pytest.approx(w[0] * happy.valence + w[1] * sad.valence)
    assert mixed.words == ("happy", "sad")
    neg = scorer.tag_mood("not happy")
    assert neg.valence == pytest.approx(lexicon.valence["happy"] * VADER_NEGATION_SCALAR)
    assert neg.arousal == pytest.approx(happy.arousal)


def test_track_tag_moods(lexicon, scorer) -> None:
    tags = [["happy", "uplifting", "piano"], ["happy"], ["happy", "sad"], ["piano", "rock"], None, []]
    out = track_tag_moods(tags=tags, lexicon=lexicon, scorer=scorer)
    assert out.shape == (6, 3)
    assert np.isnan(out[3:]).all()
    assert np.isfinite(out[:3]).all() and (np.abs(out[:3, :2]) <= 1).all()
    assert ((out[:3, 2] >= 0) & (out[:3, 2] <= 1)).all()
    # agreeing tags add confidence; contradicting tags remove it
    assert out[0, 2] > out[1, 2] > out[2, 2]
    assert out[0, 0] > 0.5 and abs(out[2, 0]) < out[1, 0]
    assert np.isnan(combine_tag_moods([])).all()


def test_knowledge_table_covers_mtg_and_musiccaps(scorer) -> None:
    if not (have_open_file("corpus/moodtheme_tags.txt") and have_open_file("corpus/musiccaps.csv")):
        pytest.skip("MTG mood/theme list or MusicCaps not found")
    table = tag_mood_table(scorer=scorer, data_dir=DATA_DIR)
    mtg = table.filter(pl.col("source") == "mtg_moodtheme")
    assert mtg.height == 59
    scored = mtg.filter(pl.col("confidence") > 0)
    assert scored.height >= 40
    caps = table.filter(pl.col("source") == "musiccaps_aspect")
    assert caps.height > 10_000 and caps.filter(pl.col("confidence") > 0).height > 3_000
    v = dict(zip(scored["tag"].to_list(), scored["valence"].to_list()))
    assert v["sad"] < 0 < v["happy"] and v["horror"] < 0 < v["uplifting"]


def test_held_out_mtg_tag_is_predicted_by_the_others(scorer) -> None:
    """Real-data check of the knowledge: on MTG-Jamendo tracks with several mood tags, the mood of
    one held-out tag correlates with the pooled mood of the track's other tags (valence)."""
    path = resolve_open_file(data_dir=DATA_DIR, relative=MTG_TAGS_FILE)
    moods = pl.read_csv(path, columns=["moods"]).get_column("moods").drop_nulls().to_list()[::3]
    pred, true = [], []
    for s in moods:
        ms = {t: m for t in s.split("|") if (m := scorer.tag_mood(t)) is not None and m.confidence > 0}
        for t, m in ms.items():
            others = [o for u, o in ms.items() if u != t]
            if others:
                pred.append(combine_tag_moods(others)[0])
                true.append(m.valence)
    assert len(true) > 500
    r = float(np.corrcoef(pred, true)[0, 1])
    shuffled = float(np.corrcoef(pred, np.random.default_rng(0).permutation(true))[0, 1])
    assert r > 0.2 and abs(shuffled) < 0.1, (r, shuffled)
