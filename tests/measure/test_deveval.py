"""``scripts/build_dev_eval.py`` and the dev-eval set builders of ``pipelines.measure.deveval``."""


import numpy as np
import polars as pl
import pytest

from pipelines import schema as S
from pipelines.measure import deveval
from pipelines.measure.inputs import load_corpus, load_labels, load_queries
from pipelines.store import DATA_DIR
from tests.helpers import load_script

EMOBANK = DATA_DIR / "text" / "emobank_train_dev.csv"


@pytest.fixture(scope="module")
def dev_eval_script():
    return load_script("build_dev_eval")


def test_z_scores_map_monotonically_onto_unit_range():
    z = pl.DataFrame({"z": [1.25, -3.0, 0.0, 2.5]})
    assert z.select(deveval.z_to_unit(pl.col("z")))["z"].to_list() == [0.5, -1.0, 0.0, 1.0]


def test_script_skips_absent_sources_and_refuses_the_repo(dev_eval_script, tmp_path):
    assert deveval.build_deezer(dev_eval=tmp_path / "absent", out=tmp_path).startswith("skipped: deezer")
    out = tmp_path / "o"
    assert dev_eval_script.main(["--out", str(out), "--dev-eval", str(tmp_path / "absent"), "--parts", "deezer"]) == 0
    readme = (out / "README.md").read_text()
    assert "- skipped: deezer" in readme and readme.endswith(deveval.PARTS_DOC)
    with pytest.raises(SystemExit):  # refuses to write inside the repo
        dev_eval_script.main(["--out", str(deveval.REPO_ROOT / "deveval_here")])


def test_emobank_dev_queries(tmp_path):
    if not EMOBANK.exists():
        pytest.skip(f"{EMOBANK} absent")
    deveval.build_emobank(out=tmp_path)
    q = load_queries(tmp_path / "emobank_dev" / "queries.csv")
    src = pl.read_csv(EMOBANK).filter(pl.col("split") == "dev")
    assert q.height == src.height == 1000
    row = src.row(0, named=True)  # (x − 3)/2 of the first dev sentence
    assert q.row(0) == (row["text"].strip(), pytest.approx((row["V"] - 3) / 2), pytest.approx((row["A"] - 3) / 2))


def test_deezer_validation_set(tmp_path):
    src = deveval.DEFAULT_DEV_EVAL / "deezer_mood" / "validation.csv"
    if not src.exists():
        pytest.skip(f"{src} absent (dev-eval data is not part of a fresh clone)")
    deveval.build_deezer(dev_eval=deveval.DEFAULT_DEV_EVAL, out=tmp_path)
    corpus = load_corpus(tmp_path / "deezer_val" / "corpus.csv")
    labels = load_labels(tmp_path / "deezer_val" / "labels.csv")
    raw = pl.read_csv(src)
    assert corpus.columns == [S.TRACK_ID, S.TITLE, S.ARTIST] and corpus.height == raw.height
    assert corpus[S.TRACK_ID][0] == f"deezer:{raw['dzr_sng_id'][0]}"
    assert (np.sign(labels[S.VALENCE].to_numpy()) == np.sign(raw["valence"].to_numpy())).all()
    assert (np.sign(labels[S.AROUSAL].to_numpy()) == np.sign(raw["arousal"].to_numpy())).all()
