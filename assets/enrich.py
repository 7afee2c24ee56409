"""Embed track text, impute missing metadata, impute audio features where no audio exists."""

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.common import load
from assets.heal import music_tracks, audio_features
from assets.settings import MoodscapeSettings
from pipelines import schema as S
from pipelines.audio import FEATURE_COLUMNS
from pipelines.embedding import EMBEDDING_DIM, MODEL_NAME, embed_texts
from pipelines.imputation import impute_audio_features, impute_metadata
from pipelines.store import array_path, read_array, table_path, write_array, write_table
from pipelines.textdoc import add_text_docs


def load_text_embeddings() -> tuple[pl.DataFrame, np.ndarray]:
    """(table aligned with the vectors: track_id, has_text, text_doc; vectors (n, 384))."""
    return load("text_embeddings"), read_array(array_path("text_embeddings"))


@asset(group_name="embed", deps=[music_tracks], compute_kind="sentence-transformers")
def text_embeddings(context: AssetExecutionContext, settings: MoodscapeSettings) -> MaterializeResult:
    """MiniLM-L6 (384-d, L2-normalised) embedding of each music track's observed text.

    The text document joins title, artist, genre, tags, description and vibe text. Tracks with no
    text at all (e.g. MIDI-only clips) get a zero row and ``has_text = false`` and stay out of the
    text index; their moods come from audio.
    """
    tracks = add_text_docs(load("music_tracks"))
    docs = tracks.get_column(S.TEXT_DOC).to_list()
    has_text = np.array([bool(d) for d in docs])
    vectors = np.zeros((len(docs), EMBEDDING_DIM), dtype=np.float32)
    idx = np.where(has_text)[0]
    if len(idx):
        vectors[idx] = embed_texts([docs[i] for i in idx], progress=settings.progress)
    table = tracks.select(S.TRACK_ID, S.TEXT_DOC).with_columns(pl.Series("has_text", has_text))
    write_array(vectors, array_path("text_embeddings"))
    write_table(table, table_path("text_embeddings"))
    return MaterializeResult(metadata={
        "model": MODEL_NAME, "dims": EMBEDDING_DIM, "tracks": len(docs), "with_text": int(has_text.sum()),
        "mean_doc_chars": round(float(np.mean([len(d) for d in docs])) if docs else 0.0, 1),
    })


@asset(group_name="heal", deps=[music_tracks, text_embeddings], compute_kind="faiss")
def imputed_metadata(context: AssetExecutionContext) -> MaterializeResult:
    """Music tracks with genre and tags imputed by similarity-weighted kNN votes over text embeddings.

    Every filled value says so (``genre_source`` / ``tags_source`` = imputed, with a confidence);
    descriptions are not imputed.
    """
    tracks = load("music_tracks")
    table, vectors = load_text_embeddings()
    if table.get_column(S.TRACK_ID).to_list() != tracks.get_column(S.TRACK_ID).to_list():
        raise ValueError("text_embeddings is not aligned with music_tracks: re-materialize text_embeddings")
    tracks = tracks.with_columns(table.get_column(S.TEXT_DOC))
    out, metrics = impute_metadata(tracks=tracks, text_vectors=vectors, has_text=table.get_column("has_text").to_numpy())
    write_table(out, table_path("imputed_metadata"))
    return MaterializeResult(metadata={**metrics, "tracks": out.height})


@asset(group_name="audio", deps=[imputed_metadata, audio_features, text_embeddings], compute_kind="numpy")
def audio_features_imputed(context: AssetExecutionContext) -> MaterializeResult:
    """An audio feature vector for every music track: extracted where audio decoded, else imputed.

    Imputation = ensemble of text-kNN (neighbours with real audio only) and genre prototypes,
    weighted by held-out validation; ``audio_source`` and ``audio_confidence`` say which and how sure.
    """
    tracks = load("imputed_metadata")
    feats = load("audio_features").filter(pl.col(S.AUDIO_ERROR).is_null())
    table, vectors = load_text_embeddings()
    row_of = {t: i for i, t in enumerate(table.get_column(S.TRACK_ID).to_list())}
    has_text = table.get_column("has_text").to_numpy()
    genre_of = dict(zip(tracks.get_column(S.TRACK_ID).to_list(), tracks.get_column(S.GENRE).to_list()))
    real = feats.filter(pl.col(S.TRACK_ID).is_in(list(row_of)))
    real_ids = real.get_column(S.TRACK_ID).to_list()
    real_matrix = real.select(FEATURE_COLUMNS).to_numpy().astype(np.float64)
    real_rows = np.array([row_of[t] for t in real_ids], dtype=np.int64)
    target_ids = [t for t in tracks.get_column(S.TRACK_ID).to_list() if t not in set(real_ids)]
    target_rows = np.array([row_of[t] for t in target_ids], dtype=np.int64)
    frames = [real.select(S.TRACK_ID, *FEATURE_COLUMNS).with_columns(
        pl.lit("extracted").alias(S.AUDIO_SOURCE), pl.lit(1.0).alias(S.AUDIO_CONFIDENCE))]
    validation: dict = {"n_audio": len(real_ids)}
    if target_ids and len(real_ids) >= 2:
        result = impute_audio_features(
            audio_ids=real_ids, audio_matrix=real_matrix, audio_text=vectors[real_rows],
            audio_has_text=has_text[real_rows], audio_genres=[genre_of.get(t) for t in real_ids],
            target_ids=target_ids, target_text=vectors[target_rows] if len(target_rows) else np.zeros((0, vectors.shape[1])),
            target_has_text=has_text[target_rows] if len(target_rows) else np.zeros(0, dtype=bool),
            target_genres=[genre_of.get(t) for t in target_ids],
        )
        validation = result.validation
        imputed = pl.DataFrame(result.features, schema=list(FEATURE_COLUMNS), orient="row").with_columns(
            pl.Series(S.TRACK_ID, result.track_ids),
            pl.Series(S.AUDIO_SOURCE, result.source),
            pl.Series(S.AUDIO_CONFIDENCE, result.confidence),
        )
        frames.append(imputed.select(frames[0].columns))
    elif target_ids:
        frames.append(pl.DataFrame({S.TRACK_ID: target_ids}).with_columns(
            *[pl.lit(None, dtype=pl.Float64).alias(c) for c in FEATURE_COLUMNS],
            pl.lit("none").alias(S.AUDIO_SOURCE), pl.lit(0.0).alias(S.AUDIO_CONFIDENCE)).select(frames[0].columns))
    out = pl.concat(frames, how="vertical_relaxed")
    write_table(out, table_path("audio_features_imputed"))
    counts = out.get_column(S.AUDIO_SOURCE).value_counts()
    return MaterializeResult(metadata={
        "tracks": out.height,
        "by_source": MetadataValue.json({str(k): int(v) for k, v in counts.iter_rows()}),
        "validation": MetadataValue.json(validation),
    })
