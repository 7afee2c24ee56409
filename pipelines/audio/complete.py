"""An audio feature vector for every music track: extracted where audio decoded, else imputed."""

import numpy as np
import polars as pl

from pipelines import schema as S
from pipelines.audio.backbone import BACKBONE_COLUMNS
from pipelines.audio.features import FEATURE_COLUMNS
from pipelines.audio.impute import impute_audio_features

EXTRACTED = "extracted"
NO_AUDIO = "none"


def _meta(tracks: pl.DataFrame):
    """ids → (len(ids), 2) release year and log1p playback count; NaN where the crawl has none."""
    ids = tracks.get_column(S.TRACK_ID).to_list()
    year_of = dict(zip(ids, tracks.get_column(S.YEAR).cast(pl.Float64, strict=False).to_list()))
    plays_of = dict(zip(ids, tracks.get_column(S.PLAYBACK_COUNT).cast(pl.Float64, strict=False).to_list()))

    def meta_of(wanted: list[str]) -> np.ndarray:
        year = [year_of.get(t) for t in wanted]
        plays = [plays_of.get(t) for t in wanted]
        return np.array(
            [[np.nan if y is None else y, np.nan if p is None or p < 0 else np.log1p(p)] for y, p in zip(year, plays)],
            dtype=np.float64,
        ).reshape(len(wanted), 2)

    return meta_of


def complete_audio_features(
    *, tracks: pl.DataFrame, features: pl.DataFrame, text_table: pl.DataFrame, vectors: np.ndarray
) -> tuple[pl.DataFrame, dict]:
    """(one row per track of ``tracks``: features, audio_source, audio_confidence and, for extracted
    rows, the backbone outputs; imputation validation).

    ``features`` are the extracted features (failed files already left out); ``text_table`` /
    ``vectors`` the row-aligned text embeddings. Tracks without extracted audio are imputed (text kNN
    over tracks with real audio, a regressor on text + year + plays, genre prototypes; see
    ``impute_audio_features``) when at least two tracks have real audio, else marked ``none``.
    """
    row_of = {t: i for i, t in enumerate(text_table.get_column(S.TRACK_ID).to_list())}
    has_text = text_table.get_column("has_text").to_numpy()
    genre_of = dict(zip(tracks.get_column(S.TRACK_ID).to_list(), tracks.get_column(S.GENRE).to_list()))
    real = features.filter(pl.col(S.TRACK_ID).is_in(list(row_of)))
    real_ids = real.get_column(S.TRACK_ID).to_list()
    real_matrix = real.select(FEATURE_COLUMNS).to_numpy().astype(np.float64)
    real_rows = np.array([row_of[t] for t in real_ids], dtype=np.int64)
    target_ids = [t for t in tracks.get_column(S.TRACK_ID).to_list() if t not in set(real_ids)]
    target_rows = np.array([row_of[t] for t in target_ids], dtype=np.int64)
    carried = [c for c in BACKBONE_COLUMNS if c in real.columns]  # the recording's backbone outputs
    frames = [
        real.select(S.TRACK_ID, *FEATURE_COLUMNS, *carried).with_columns(
            pl.lit(EXTRACTED).alias(S.AUDIO_SOURCE), pl.lit(1.0).alias(S.AUDIO_CONFIDENCE)
        )
    ]
    validation: dict = {"n_audio": len(real_ids)}
    meta_of = _meta(tracks)
    if target_ids and len(real_ids) >= 2:
        result = impute_audio_features(
            audio_ids=real_ids,
            audio_matrix=real_matrix,
            audio_text=vectors[real_rows],
            audio_has_text=has_text[real_rows],
            audio_genres=[genre_of.get(t) for t in real_ids],
            target_ids=target_ids,
            target_text=vectors[target_rows] if len(target_rows) else np.zeros((0, vectors.shape[1])),
            target_has_text=has_text[target_rows] if len(target_rows) else np.zeros(0, dtype=bool),
            target_genres=[genre_of.get(t) for t in target_ids],
            audio_meta=meta_of(real_ids),
            target_meta=meta_of(target_ids),
            feature_names=FEATURE_COLUMNS,
        )
        validation = result.validation
        imputed = pl.DataFrame(result.features, schema=list(FEATURE_COLUMNS), orient="row").with_columns(
            pl.Series(S.TRACK_ID, result.track_ids),
            pl.Series(S.AUDIO_SOURCE, result.source),
            pl.Series(S.AUDIO_CONFIDENCE, result.confidence),
        )
        frames.append(imputed)
    elif target_ids:
        frames.append(
            pl.DataFrame({S.TRACK_ID: target_ids})
            .with_columns(
                *[pl.lit(None, dtype=pl.Float64).alias(c) for c in FEATURE_COLUMNS],
                pl.lit(NO_AUDIO).alias(S.AUDIO_SOURCE),
                pl.lit(0.0).alias(S.AUDIO_CONFIDENCE),
            )
        )
    # Imputed and audio-less rows have no recording, so no backbone outputs: null there.
    return pl.concat(frames, how="diagonal_relaxed").select(frames[0].columns), validation
