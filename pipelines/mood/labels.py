"""Mood labels of real audio: EMOPIA clips (Russell quadrant) and the immich mood folders.

EMOPIA's quadrant per clip (1 = +v +a, 2 = −v +a, 3 = −v −a, 4 = +v −a) and its song-disjoint
train/val split give ``valence_sign`` / ``arousal_sign`` in {−1, +1}. An immich folder's mood word
gets the Glasgow-norm valence/arousal of that word, rescaled to [−1, 1] (a word reader's where the
norms do not rate the word).
"""

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from pipelines import store
from pipelines.mood.lexicon import MoodLexicon, resolve_open_file
from pipelines.schema import AROUSAL, TRACK_ID, VALENCE

# Label-table columns (besides the schema's track_id / valence / arousal).
VALENCE_SIGN = "valence_sign"
AROUSAL_SIGN = "arousal_sign"
QUADRANT = "quadrant"
SPLIT = "split"
CLIP_ID = "clip_id"
MOOD_WORD = "mood"
PATH = "path"  # immich: the audio file (relative in labels.csv, absolute in `immich_labels`)
LABEL_SOURCE = "label_source"
SAMPLE_WEIGHT = "sample_weight"
GROUP = "group"  # optional label column: rows sharing a value never straddle CV folds

# Russell quadrant → (valence sign, arousal sign), as defined by EMOPIA.
QUADRANT_SIGNS: dict[int, tuple[int, int]] = {1: (1, 1), 2: (-1, 1), 3: (-1, -1), 4: (1, -1)}


def emopia_labels(*, data_dir: Path = store.DATA_DIR) -> pl.DataFrame:
    """EMOPIA clip labels: clip_id, quadrant, split (train/val), valence_sign, arousal_sign."""
    try:
        path = resolve_open_file(data_dir=data_dir, relative="emopia/labels.csv")
    except FileNotFoundError:
        path = resolve_open_file(data_dir=data_dir, relative="midi/emopia/labels.csv")
    df = pl.read_csv(path, schema_overrides={QUADRANT: pl.Int64})
    return df.select(
        pl.col(CLIP_ID).cast(pl.String),
        pl.col(QUADRANT),
        pl.col(SPLIT),
        pl.col(QUADRANT).replace_strict({q: s[0] for q, s in QUADRANT_SIGNS.items()}).alias(VALENCE_SIGN),
        pl.col(QUADRANT).replace_strict({q: s[1] for q, s in QUADRANT_SIGNS.items()}).alias(AROUSAL_SIGN),
    )


def immich_labels(
    *, data_dir: Path = store.DATA_DIR, lexicon: MoodLexicon,
    reader: Callable[[Sequence[str]], np.ndarray] | None = None,
) -> pl.DataFrame:
    """immich tracks: track_id (file stem), path, mood, valence, arousal, valence_sign,
    arousal_sign, label_source ("glasgow" / "word_reader" / null).

    valence/arousal are the Glasgow-norm values of the mood word (null where the norms do not
    rate it, unless a ``reader`` — words → (n, 3) valence, arousal, confidence, e.g.
    ``WordMoodRegressor.read`` — is given to fill them)."""
    csv_path = resolve_open_file(data_dir=data_dir, relative="audio/immich/labels.csv")
    df = pl.read_csv(csv_path)
    words = sorted(set(df[MOOD_WORD].to_list()))
    moods: dict[str, tuple[float | None, float | None, str | None]] = {}
    unrated = [w for w in words if lexicon.word_mood(w) is None]
    read = dict(zip(unrated, reader(unrated))) if reader is not None and unrated else {}
    for word in words:
        norm = lexicon.word_mood(word)
        if norm is not None:
            moods[word] = (norm[0], norm[1], "glasgow")
        elif word in read:
            moods[word] = (float(read[word][0]), float(read[word][1]), "word_reader")
        else:
            moods[word] = (None, None, None)
    base = csv_path.parent
    out = df.select(
        pl.col(PATH).map_elements(lambda p: Path(p).stem, return_dtype=pl.String).alias(TRACK_ID),
        pl.col(PATH).map_elements(lambda p: str(base / p), return_dtype=pl.String).alias(PATH),
        pl.col(MOOD_WORD),
    )
    def by_word(k: int, dtype: pl.DataType) -> pl.Expr:
        return pl.col(MOOD_WORD).replace_strict({w: m[k] for w, m in moods.items()}, return_dtype=dtype)

    out = out.with_columns(
        by_word(0, pl.Float64).alias(VALENCE), by_word(1, pl.Float64).alias(AROUSAL),
        by_word(2, pl.String).alias(LABEL_SOURCE),
    )
    return out.with_columns(
        pl.col(VALENCE).sign().cast(pl.Int64).alias(VALENCE_SIGN),
        pl.col(AROUSAL).sign().cast(pl.Int64).alias(AROUSAL_SIGN),
    )
