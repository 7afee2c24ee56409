"""Track moods from text, genre priors and the artist's other tracks, on the shipped priors and a
query-mood model trained on open data (no audio: those tracks have none)."""

import numpy as np
import polars as pl
import pytest

from pipelines import schema as S
from pipelines.embed.sentence import embed_texts
from pipelines.heal.genres import GENRE_CONFIDENCE
from pipelines.heal.textdoc import add_text_docs
from pipelines.mood.priors import tag_priors
from pipelines.mood.tags import MTG_TAGS_FILE, scorer_for
from pipelines.mood.tracks import has_free_text, track_moods
from tests.helpers import have_open_file
from tests.mood.conftest import DATA_DIR, needs_text_data

pytestmark = [
    needs_text_data,
    pytest.mark.skipif(not have_open_file(MTG_TAGS_FILE), reason="MTG-Jamendo tag table not found"),
]

ROWS = [  # track_id, title, artist, genre, genre_source
    ("metal", None, None, "Metal", "observed"),
    ("song", "Happy sunshine, joyful love", "Band", None, "unknown"),
    ("untitled", None, "band", None, "unknown"),
    ("nothing", None, None, None, "unknown"),
    ("calm", None, None, "New Age", "observed"),
    ("guess", None, None, "Metal", "knn"),
    ("tagged", None, None, None, "unknown"),
]
TAGS = [None, None, None, None, None, None, "sad, lonely, piano"]


@pytest.fixture(scope="module")
def inputs(lexicon):
    meta = pl.DataFrame(ROWS, schema=[S.TRACK_ID, S.TITLE, S.ARTIST, S.GENRE, S.GENRE_SOURCE], orient="row")
    meta = meta.with_columns(
        pl.Series(S.TAGS, TAGS, dtype=pl.String), pl.lit(None, pl.String).alias(S.DESCRIPTION),
        pl.lit(None, pl.String).alias(S.VIBE_TEXT), pl.lit("observed").alias(S.TAGS_SOURCE),
        pl.Series(GENRE_CONFIDENCE, [1.0, None, None, None, 1.0, 0.5, None]),
    )
    docs = add_text_docs(meta)
    table = docs.select(S.TRACK_ID, S.TEXT_DOC, (pl.col(S.TEXT_DOC).str.len_chars() > 0).alias("has_text"))
    vectors = np.asarray(embed_texts([d or " " for d in table[S.TEXT_DOC].to_list()]), dtype=np.float32)
    audio = pl.DataFrame({S.TRACK_ID: meta[S.TRACK_ID], S.AUDIO_SOURCE: ["none"] * meta.height,
                          S.AUDIO_CONFIDENCE: [0.0] * meta.height})
    priors = tag_priors(lexicon=lexicon, data_dir=DATA_DIR)
    return meta, table, vectors, audio, priors


def _moods(inputs, trained, lexicon, *, with_metadata: bool) -> pl.DataFrame:
    meta, table, vectors, audio, priors = inputs
    result = track_moods(
        text_table=table, vectors=vectors, audio=audio, tags=meta.select(S.TRACK_ID, S.TAGS), audio_model=None,
        text_model=trained[0], scorer=scorer_for(lexicon=lexicon, data_dir=DATA_DIR),
        metadata=meta if with_metadata else None, priors=priors if with_metadata else None,
    )
    return result.moods


def test_free_text_columns() -> None:
    meta = pl.DataFrame({S.TITLE: ["x", None, None, " "], S.DESCRIPTION: [None, "d", "d", None],
                         S.DESCRIPTION_SOURCE: [None, "observed", "synthetic", None]})
    assert has_free_text(meta).tolist() == [True, True, False, False]


def test_genre_priors_and_artist_pooling(inputs, trained, lexicon) -> None:
    moods = {r[S.TRACK_ID]: r for r in _moods(inputs, trained, lexicon, with_metadata=True).iter_rows(named=True)}
    assert moods["metal"][S.MOOD_SOURCE] == "genre"  # a genre-only text is not read as words
    assert moods["calm"][S.MOOD_SOURCE] == "genre"
    assert moods["metal"][S.VALENCE] < 0 < moods["calm"][S.VALENCE]
    assert moods["metal"][S.AROUSAL] > moods["calm"][S.AROUSAL]
    # an imputed genre: the same direction, half the confidence
    assert moods["guess"][S.VALENCE] == pytest.approx(moods["metal"][S.VALENCE])
    assert moods["guess"][S.MOOD_CONFIDENCE] == pytest.approx(moods["metal"][S.MOOD_CONFIDENCE] / 2)
    # its artist's other track has no evidence of its own: nothing to pool
    assert moods["song"][S.MOOD_SOURCE] == "text" and moods["song"][S.VALENCE] > 0.2
    assert moods["untitled"][S.MOOD_SOURCE] == "artist"
    assert moods["untitled"][S.VALENCE] == pytest.approx(moods["song"][S.VALENCE])  # its artist's other track
    assert 0 < moods["untitled"][S.MOOD_CONFIDENCE] < moods["song"][S.MOOD_CONFIDENCE]
    assert moods["nothing"][S.VALENCE] is None and moods["nothing"][S.MOOD_SOURCE] is None
    # mood words among the observed tags: the text model reads the text, the tag scorer the tags,
    # the music tag ("piano") gives a prior
    assert moods["tagged"][S.MOOD_SOURCE] == "fused" and moods["tagged"][S.VALENCE] < 0


def test_without_metadata_the_text_model_reads_every_text(inputs, trained, lexicon) -> None:
    moods = {r[S.TRACK_ID]: r for r in _moods(inputs, trained, lexicon, with_metadata=False).iter_rows(named=True)}
    assert moods["metal"][S.MOOD_SOURCE] == "text" and moods["song"][S.MOOD_SOURCE] == "text"
    assert moods["untitled"][S.MOOD_SOURCE] == "text"  # "By band." read as words
    assert moods["nothing"][S.MOOD_SOURCE] is None
