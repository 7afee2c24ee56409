"""Training the query mood model: EmoBank dev numbers against the lexicon baselines."""

from tests.mood.conftest import needs_text_data

pytestmark = needs_text_data


def test_context_cues_keep_dev_numbers(trained) -> None:
    _, m = trained
    for key in ("valence_r", "arousal_r", "valence_ccc", "arousal_ccc"):
        assert m["dev_with_context"][key] >= m["dev"][key] - 0.01, (key, m["dev"], m["dev_with_context"])


def test_beats_lexicon_baseline_on_dev(trained) -> None:
    _, m = trained
    for axis in ("valence", "arousal"):
        for stat in ("r", "ccc"):
            key = f"{axis}_{stat}"
            assert m["dev"][key] > m["dev_lexicon_raw"][key], (key, m["dev"], m["dev_lexicon_raw"])
            assert m["dev"][key] > m["dev_lexicon_calibrated"][key], key
    assert m["dev"]["valence_r"] > 0.5
