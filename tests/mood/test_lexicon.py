"""The mood lexicon on the real word norms (Glasgow, VADER) and the context-cue shifts."""

import numpy as np
import pytest

from pipelines.mood.lexicon import MoodLexicon, tokenize
from tests.mood.conftest import needs_text_data

pytestmark = needs_text_data


def test_lexicon_values_come_from_files(lexicon: MoodLexicon) -> None:
    # glasgow_norms.csv: happy valence 8.242, arousal 6.938; vader_lexicon.txt: happy 2.7
    assert lexicon.glasgow["happy"] == pytest.approx(((8.242 - 5) / 4, (6.938 - 5) / 4))
    assert lexicon.valence["happy"] == pytest.approx(((8.242 - 5) / 4 + 2.7 / 4) / 2)
    assert lexicon.arousal["calm"] == pytest.approx((3.743 - 5) / 4)
    # VADER-only token: valence, no arousal
    assert "miss" in lexicon.valence and "miss" not in lexicon.arousal
    # senses averaged: "tender", "tender (sensitive)", "tender (soft)"
    assert lexicon.glasgow["tender"][1] == pytest.approx(((5.303 + 5.286 + 6.257) / 3 - 5) / 4)


def test_lexicon_negation_and_stemming(lexicon: MoodLexicon) -> None:
    happy = lexicon.score("happy")
    not_happy = lexicon.score("I am not happy")
    assert happy.valence > 0.5
    assert not_happy.valence == pytest.approx(-0.74 * happy.valence)
    assert not_happy.arousal == pytest.approx(happy.arousal)
    assert tokenize("I don't care") == ["i", "do", "n't", "care"]
    assert lexicon.score("i don't like this").valence <= 0
    assert lexicon.lookup("parties") is not None
    assert lexicon.score("sadness").matched  # suffix-stripped to a rated word
    empty = lexicon.score("xqzzt blorf")
    assert (empty.valence, empty.arousal, empty.coverage) == (0.0, 0.0, 0.0)


def test_lexicon_context_cues_only_if_normed(lexicon: MoodLexicon) -> None:
    cues = lexicon.context_cues("songs for a sleepy night at the party")
    assert "party" in cues and "night" in cues
    for cue in cues:
        assert cue in lexicon.glasgow
    # "workout" is not in the Glasgow norms, so it is not reported as a cue with a mood
    assert "workout" not in lexicon.context_cues("workout")


def test_lexicon_features_shape(lexicon: MoodLexicon) -> None:
    f = lexicon.features(["happy day", "", "not calm at all"])
    assert f.shape == (3, MoodLexicon.N_FEATURES) and f.dtype == np.float32
    assert np.isfinite(f).all()
    assert f[1].tolist() == [0.0] * 5


def test_context_shift_table_negation_and_intensifiers() -> None:
    from pipelines.mood.lexicon import CONTEXT_SHIFTS, MAX_CONTEXT_SHIFT, VADER_BOOST, context_shift

    workout = context_shift("workout")
    assert (workout.valence, workout.arousal) == pytest.approx(CONTEXT_SHIFTS["workout"][:2])
    assert context_shift("workouts for the gym").cues == ("workout", "gym")
    assert context_shift("not for a party").cues == ("not party",)
    assert context_shift("not for a party").arousal == 0.0
    assert context_shift("really chill").arousal == pytest.approx((1 + VADER_BOOST) * CONTEXT_SHIFTS["chill"][1])
    assert context_shift("a bit chill").arousal == pytest.approx((1 - VADER_BOOST) * CONTEXT_SHIFTS["chill"][1])
    assert context_shift("songs after a break up").cues == ("breakup",)
    stacked = context_shift("upbeat energetic hype workout party running")
    assert stacked.arousal == pytest.approx(MAX_CONTEXT_SHIFT)
    assert context_shift("the table is in the room").cues == ()
    prose = "He went back to work on Monday after a long night of negotiations with the union"
    assert context_shift(prose).cues == ()  # long text, no listening word: prose, not a request
    assert context_shift(prose + " while listening to music").cues  # a listening word makes it a request
