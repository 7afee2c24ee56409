"""The evaluation's input files: types, relative audio paths, and errors naming row and column."""

import pytest

from pipelines import schema as S
from pipelines.errors import EvaluationInputError
from pipelines.measure import inputs as I


def test_corpus_audio_path_relative_to_corpus_folder(tmp_path):
    sub = tmp_path / "corpus"
    sub.mkdir()
    (sub / "corpus.csv").write_text(
        "track_id,title,audio_path\n007,Song,clips/a.ogg\n8,Other,/abs/b.wav\n9,None,\n"
    )
    df = I.load_corpus(sub / "corpus.csv")
    assert df[S.TRACK_ID].to_list() == ["007", "8", "9"]  # strings, leading zeros kept
    assert df[S.AUDIO_PATH].to_list() == [str((sub / "clips/a.ogg").resolve()), "/abs/b.wav", None]


def test_bad_inputs_name_row_and_column(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text("track_id,valence,arousal\na,0.1,0.2\nb,1.7,0.0\n")
    with pytest.raises(EvaluationInputError, match=r"row 2, line 3: column 'valence' value 1.7"):
        I.load_labels(p)
    p.write_text("track_id,valence,arousal\na,0.1,x\n")
    with pytest.raises(EvaluationInputError, match=r"column 'arousal' value 'x' is not a number"):
        I.load_labels(p)
    p.write_text("track_id,valence\na,0.1\n")
    with pytest.raises(EvaluationInputError, match=r"lacks column\(s\) \['arousal'\]"):
        I.load_labels(p)
    c = tmp_path / "corpus.csv"
    c.write_text("track_id,title\na,x\na,y\n")
    with pytest.raises(EvaluationInputError, match="duplicate track_id 'a'"):
        I.load_corpus(c)
