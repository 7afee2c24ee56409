"""Shared fixtures of the measure tests: real recordings cut into segments, with their kind as genre."""

import polars as pl
import pytest

from pipelines import schema as S
from pipelines.audio.features import features_from_signal
from tests.audio.clips import AUDIO_ROOT

SR = 22050
SEGMENT_S = 3
PER_FILE = 4
SOURCES = {
    "speech": ("198-209-0000", "3436-172162-0000", "5703-47212-0000"),
    "orchestra": ("Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra)",
                  "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy"),
    "beats": ("Kevin_MacLeod_-_Vibe_Ace", "admiralbob77_-_Choice_-_Drum-bass"),
}
FILES = [AUDIO_ROOT / "librosa" / f"{name}.ogg" for names in SOURCES.values() for name in names]
needs_clips = pytest.mark.skipif(not all(p.is_file() for p in FILES), reason=f"librosa clips absent ({AUDIO_ROOT})")


@pytest.fixture(scope="session")
def segments() -> tuple[pl.DataFrame, dict[str, str]]:
    """Features of up to 4 segments per clip, with two list columns shaped like backbone outputs
    (a log-mel profile and a chroma profile of the same segment) and the segment's category."""
    import librosa

    if not all(p.is_file() for p in FILES):
        pytest.skip("librosa clips absent")
    rows, genres = [], {}
    for genre, names in SOURCES.items():
        for name in names:
            y, _ = librosa.load(AUDIO_ROOT / "librosa" / f"{name}.ogg", sr=SR, mono=True,
                                duration=SEGMENT_S * PER_FILE)
            for i in range(min(len(y) // (SEGMENT_S * SR), PER_FILE)):
                seg = y[i * SEGMENT_S * SR:(i + 1) * SEGMENT_S * SR]
                track_id = f"{name}:{i}"
                mel = librosa.power_to_db(librosa.feature.melspectrogram(y=seg, sr=SR, n_mels=32)).mean(axis=1)
                chroma = librosa.feature.chroma_stft(y=seg, sr=SR).mean(axis=1)
                rows.append({S.TRACK_ID: track_id, **features_from_signal(y=seg, sr=SR),
                             "msd_embedding": mel.tolist(), "mtt_embedding": chroma.tolist()})
                genres[track_id] = genre
    return pl.DataFrame(rows), genres
