"""The audio side's word-mood reader and the choice of how the audio model's priors read mood words."""

import csv
import shutil
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines import store
from pipelines.audio.backbone import MSD_TAGS, MTT_TAGS
from pipelines.errors import InvalidInputError
from pipelines.mood.labels import AROUSAL_SIGN, VALENCE_SIGN, immich_labels
from pipelines.mood.lexicon import GLASGOW_FILE, VADER_FILE, MoodLexicon, load_glasgow, resolve_open_file
from pipelines.mood.priors import tag_priors
from pipelines.mood.tags import scorer_for
from pipelines.mood.word_mood import (
    ALPHAS,
    CRITERIA,
    choose_tag_priors,
    fit_word_mood_regressor,
    prior_only_scores,
    selection_markdown,
)
from pipelines.schema import AROUSAL, TRACK_ID, VALENCE
from tests.helpers import have_open_file

DATA_DIR = store.DATA_DIR
needs_norms = pytest.mark.skipif(not have_open_file(f"text/{GLASGOW_FILE}"), reason="Glasgow norms not found")
needs_corpora = pytest.mark.skipif(
    not (have_open_file("corpus/mtg_jamendo_tags.csv") and have_open_file("audio/immich/labels.csv")),
    reason="shipped corpora not found",
)


def _hashed_embedding(words, dim: int = 16) -> np.ndarray:
    """A fixed pseudo-random vector per word (its seed: the word's CRC32)."""
    return np.array([np.random.default_rng(zlib.crc32(w.encode())).normal(size=dim) for w in words])


def test_regressor_recovers_a_linear_word_mood_and_picks_the_weakest_penalty() -> None:
    words = [f"w{i}" for i in range(300)]
    truth = np.random.default_rng(0).normal(size=(16, 2)) * 0.1
    norms = {w: tuple(e @ truth) for w, e in zip(words, _hashed_embedding(words))}
    reg = fit_word_mood_regressor(norms=norms, embed=_hashed_embedding)
    assert reg.n_words == 300 and set(reg.cv_table) == {f"{a:g}" for a in ALPHAS}
    assert reg.alphas == (min(ALPHAS), min(ALPHAS))  # noiseless targets: the least shrinkage wins
    assert min(reg.cv_r) > 0.99
    new = ["unseen", "other"]
    out = reg.read(new)
    assert out[:, :2] == pytest.approx(np.clip(_hashed_embedding(new) @ truth, -1, 1), abs=0.02)
    assert out[:, 2] == pytest.approx(np.abs(out[:, :2]).max(axis=1))
    with pytest.raises(InvalidInputError):
        fit_word_mood_regressor(norms=dict(list(norms.items())[:5]), embed=_hashed_embedding)


@needs_norms
def test_regressor_on_the_sentence_encoder_reads_unrated_mood_words() -> None:
    glasgow = load_glasgow(data_dir=DATA_DIR)
    keep = sorted(glasgow)[::6]  # a fixed sixth of the norms keeps the test short
    reg = fit_word_mood_regressor(norms={w: glasgow[w] for w in keep})
    assert reg.cv_r[0] > 0.6 and reg.cv_r[1] > 0.4  # held-out words
    (joy_v, joy_a, _), (grief_v, _, _), (calm_v, calm_a, _) = reg.read(["joyful", "grieving", "serene"])
    assert min(joy_v, calm_v) > 0 > grief_v and joy_a > calm_a


def _copy_norms(data_dir: Path) -> None:
    (data_dir / "text").mkdir(parents=True)
    for name in (GLASGOW_FILE, VADER_FILE):
        shutil.copyfile(resolve_open_file(data_dir=DATA_DIR, relative=f"text/{name}"), data_dir / "text" / name)


def _corpus(data_dir: Path, mtg: list[tuple[str, str]], moodtheme: list[str]) -> None:
    (data_dir / "corpus").mkdir(parents=True)
    with open(data_dir / "corpus" / "mtg_jamendo_tags.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["track_id", "genres", "instruments", "moods"])
        for i, (genre, moods) in enumerate(mtg):
            w.writerow([f"t{i}", genre, "", moods])
    with open(data_dir / "corpus" / "musiccaps.csv", "w", newline="") as f:
        csv.writer(f).writerow(["ytid", "aspect_list"])
    (data_dir / "corpus" / "moodtheme_tags.txt").write_text("".join(f"mood/theme---{m}\n" for m in moodtheme))


READ = {"mellow": (0.4, -0.6, 0.8), "sad": (0.9, 0.9, 1.0), "energetic": (0.1, 0.7, 0.5)}


def reader(words):
    return np.array([READ.get(w, (0.0, 0.0, 0.5)) for w in words]).reshape(-1, 3)


@needs_norms
def test_reader_scopes_decide_which_mood_words_the_reader_reads(tmp_path: Path) -> None:
    _copy_norms(tmp_path)
    _corpus(tmp_path, [("ambient", "mellow|sad")] * 6 + [("rock", "energetic")] * 6, ["mellow", "sad", "energetic"])
    lex = MoodLexicon.from_files(data_dir=tmp_path)
    sad = scorer_for(lexicon=lex, data_dir=tmp_path).tag_mood("sad")

    def prior(scope: str, key: str):
        return tag_priors(lexicon=lex, data_dir=tmp_path, reader=reader, scope=scope).lookup(key)

    # norms only: "mellow" (unrated) is no mood word; "energetic" has a valence norm but no arousal
    none = prior("none", "ambient")
    assert (none.valence, none.arousal) == pytest.approx((sad.valence, sad.arousal))
    assert prior("none", "rock").arousal == 0.0
    assert prior("none", "rock") == prior("unrated", "rock")
    unrated = prior("unrated", "ambient")  # the reader reads mellow, the norms sad: pooled by confidence
    w = np.array([0.8, sad.confidence])
    assert unrated.valence == pytest.approx(np.average([0.4, sad.valence], weights=w))
    assert unrated.arousal == pytest.approx(np.average([-0.6, sad.arousal], weights=w))
    gaps = prior("gaps", "rock")  # the norms' valence, the reader's arousal
    assert gaps.valence == pytest.approx(prior("none", "rock").valence) and gaps.arousal == pytest.approx(0.7)
    every = prior("all", "ambient")  # the reader reads sad as well
    assert every.valence == pytest.approx((0.8 * 0.4 + 1.0 * 0.9) / 1.8)
    assert tag_priors(lexicon=lex, data_dir=tmp_path, scope="unrated").lookup("ambient") == none  # no reader
    with pytest.raises(InvalidInputError):
        tag_priors(lexicon=lex, data_dir=tmp_path, reader=reader, scope="everything")


@pytest.mark.skipif(not have_open_file("audio/immich/labels.csv"), reason="immich tracks not found")
def test_immich_labels_take_unrated_words_from_the_reader() -> None:
    lex = MoodLexicon.from_files(data_dir=DATA_DIR)
    df = immich_labels(data_dir=DATA_DIR, lexicon=lex, reader=reader)
    assert df[VALENCE].null_count() == 0 and df.height == 28
    energetic = df.filter(pl.col("mood") == "energetic").row(0, named=True)
    assert (energetic[VALENCE], energetic[AROUSAL], energetic["label_source"]) == (0.1, 0.7, "word_reader")
    assert set(df.filter(pl.col("mood") == "calm")["label_source"]) == {"glasgow"}


def _backbone_rows(ids: list[str], valence: np.ndarray, arousal: np.ndarray, seed: int) -> pl.DataFrame:
    """Backbone tag outputs where MSD happy/sad follow ``valence`` and MTT fast/slow ``arousal``."""
    rng = np.random.default_rng(seed)
    n = len(ids)
    msd, mtt = rng.uniform(0.0, 0.1, (n, len(MSD_TAGS))), rng.uniform(0.0, 0.1, (n, len(MTT_TAGS)))
    msd[:, MSD_TAGS.index("happy")] = np.clip(0.5 + 0.4 * valence, 0, 1) + rng.uniform(0, 0.1, n)
    msd[:, MSD_TAGS.index("sad")] = np.clip(0.5 - 0.4 * valence, 0, 1) + rng.uniform(0, 0.1, n)
    mtt[:, MTT_TAGS.index("fast")] = np.clip(0.5 + 0.4 * arousal, 0, 1) + rng.uniform(0, 0.1, n)
    mtt[:, MTT_TAGS.index("slow")] = np.clip(0.5 - 0.4 * arousal, 0, 1) + rng.uniform(0, 0.1, n)
    return pl.DataFrame({TRACK_ID: ids}).with_columns(
        pl.Series("msd_tags", msd.astype(np.float32).tolist(), dtype=pl.List(pl.Float32)),
        pl.Series("mtt_tags", mtt.astype(np.float32).tolist(), dtype=pl.List(pl.Float32)),
    )


def _standard(x: np.ndarray) -> np.ndarray:
    return np.clip((x - x.mean()) / x.std(), -1.0, 1.0)


@needs_norms
@needs_corpora
def test_choice_scores_every_candidate_on_labelled_audio_and_keeps_the_best() -> None:
    lex = MoodLexicon.from_files(data_dir=DATA_DIR)
    glasgow = load_glasgow(data_dir=DATA_DIR)
    reg = fit_word_mood_regressor(norms={w: glasgow[w] for w in sorted(glasgow)[::6]})
    rng = np.random.default_rng(3)
    v, a = rng.choice([-1, 1], 60), rng.choice([-1, 1], 60)
    emopia = pl.DataFrame({TRACK_ID: [f"e{i}" for i in range(60)], VALENCE_SIGN: v, AROUSAL_SIGN: a})
    immich = immich_labels(data_dir=DATA_DIR, lexicon=lex, reader=reg.read)
    audio = pl.concat([
        _backbone_rows(emopia[TRACK_ID].to_list(), v, a, seed=4),
        _backbone_rows(immich[TRACK_ID].to_list(), _standard(immich[VALENCE].to_numpy()),
                       _standard(immich[AROUSAL].to_numpy()), seed=5),
    ])
    scopes = ("none", "unrated")
    priors = choose_tag_priors(lexicon=lex, audio=audio, emopia=emopia, regressor=reg, scopes=scopes)
    table = priors.selection["table"]
    assert [row["candidate"] for row in table] == list(scopes)
    for row in table:  # happy/sad and fast/slow priors follow the labels on both label sets
        assert all(row[c] > 0.3 for c in CRITERIA), row
        assert row["emopia_clips"] == 60 and row["immich_clips"] == 28
        assert row["mean_r"] == pytest.approx(np.mean([row[c] for c in CRITERIA]), abs=1e-3)
    best = max(table, key=lambda row: row["mean_r"])
    assert priors.selection["chosen"] == best["candidate"]
    assert priors.priors == tag_priors(lexicon=lex, reader=reg.read, scope=best["candidate"]).priors
    assert prior_only_scores(priors, audio=audio, emopia=emopia, immich=immich)["emopia_valence_r"] == \
        best["emopia_valence_r"]
    md = selection_markdown(priors.selection)
    assert f"| {best['candidate']} ✔ |" in md and "held-out-word CV r" in md
