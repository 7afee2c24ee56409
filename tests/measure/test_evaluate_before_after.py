"""``scripts/evaluate_before_after.py``: its ``--set`` parsing and the report comparison."""

import argparse
import math

import pytest

from tests.helpers import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("evaluate_before_after")


def test_set_names_corpus_and_optional_labels_and_queries(script, tmp_path) -> None:
    for name in ("c.csv", "l.csv", "q.csv"):
        (tmp_path / name).write_text("x\n")
    c, lab, q = (tmp_path / n for n in ("c.csv", "l.csv", "q.csv"))
    assert script.parse_set(f"s={c}") == ("s", [c, None, None])
    assert script.parse_set(f"s={c},,{q}") == ("s", [c, None, q])
    assert script.parse_set(f"s={c},{lab},{q}") == ("s", [c, lab, q])
    for bad in (f"{c}", "s=", f"s={c},{lab},{q},{q}", f"s={tmp_path / 'absent.csv'}"):
        with pytest.raises(argparse.ArgumentTypeError):
            script.parse_set(bad)


def test_compare_reports_every_numeric_leaf(script) -> None:
    before = {"n_tracks": 10, "query_mood": {"valence_r": 0.5, "arousal_r": None},
              "track_mood": {"by_source": {"text": {"n": 4, "valence_r": 0.25}}},
              "latency_ms": {"full": {"p50": 3.0}}, "label": "ignored"}
    after = {"n_tracks": 10, "query_mood": {"valence_r": 0.75, "arousal_r": 0.1},
             "track_mood": {"by_source": {"text": {"n": 4, "valence_r": 0.25}}},
             "latency_ms": {"full": {"p50": 9.0}}, "label": "ignored"}
    out = script.compare(before, after)
    leaves = out["leaves"]
    assert set(leaves) == {"n_tracks", "query_mood.valence_r", "query_mood.arousal_r",
                           "track_mood.by_source.text.n", "track_mood.by_source.text.valence_r",
                           "latency_ms.full.p50"}
    assert leaves["query_mood.valence_r"] == {"before": 0.5, "after": 0.75, "diff": 0.25}
    assert leaves["query_mood.arousal_r"]["diff"] is None
    assert out["max_abs_diff"] == 6.0 and math.isclose(out["max_abs_diff_without_latency"], 0.25)
    assert out["null_on_one_side"] == ["query_mood.arousal_r"]
