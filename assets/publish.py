"""Assemble the serving bundle from the checked index assets and tables, then switch ``CURRENT``."""

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.common import counts_md, load, value_counts
from assets.enrich import load_text_embeddings
from assets.index import audio_index, mood_index, text_index
from assets.mood import query_mood_model, track_moods
from pipelines import schema as S
from pipelines.index.version import assemble_version, new_version_id, publish
from pipelines.store import array_path, index_dir, model_path, read_array
from pipelines.heal.textdoc import split_tags


def serving_tracks() -> pl.DataFrame:
    """One row per music track in row-id order (the order of ``text_embeddings``)."""
    table, _ = load_text_embeddings()
    order = table.select(S.TRACK_ID, S.TEXT_DOC)
    meta = load("imputed_metadata").drop(S.TEXT_DOC, strict=False)
    moods = load("track_moods")
    audio = load("audio_features_imputed").select(S.TRACK_ID, S.AUDIO_SOURCE)
    out = order.join(meta, on=S.TRACK_ID, how="left").join(moods, on=S.TRACK_ID, how="left").join(audio, on=S.TRACK_ID, how="left")
    if out.get_column(S.TRACK_ID).to_list() != order.get_column(S.TRACK_ID).to_list():
        raise ValueError("row order changed while joining the serving tracks")
    return out.with_columns(
        pl.col(S.TAGS).map_elements(split_tags, return_dtype=pl.List(pl.Utf8)).alias(S.TAGS),
        pl.col(S.AUDIO_SOURCE).fill_null("none"),
    )


@asset(
    group_name="publish", deps=[text_index, audio_index, mood_index, track_moods, query_mood_model],
    compute_kind="python",
)
def published_store(context: AssetExecutionContext) -> MaterializeResult:
    """A complete serving version (tracks, vectors, the three checked indices, query-mood model,
    manifest) written to ``store/versions/<version>/`` and made current by one atomic pointer swap.

    Runs only after the blocking recall checks of the three indices passed.
    """
    tracks = serving_tracks()
    _, text_vectors = load_text_embeddings()
    n = tracks.height
    has_audio_index = (index_dir() / "audio.faiss").exists()
    if has_audio_index:
        audio_rows = read_array(array_path("audio_ids"))
        audio_vecs = read_array(array_path("audio_vectors"))
        audio_full = np.zeros((n, audio_vecs.shape[1]), dtype=np.float32)
        audio_full[audio_rows] = audio_vecs
    else:
        audio_full = np.zeros((n, 0), dtype=np.float32)
    version = new_version_id()
    folder = assemble_version(
        version=version, tracks=tracks, text_vectors=np.asarray(text_vectors), audio_vectors=audio_full,
        index_files={k: index_dir() / f"{k}.faiss" for k in ("text", "audio", "mood") if k != "audio" or has_audio_index},
        query_mood_model_path=model_path("query_mood"),
        extra_files={"audio_space.joblib": index_dir() / "audio_space.joblib"} if has_audio_index else {},
        extra_manifest={"dagster_run_id": context.run_id},
    )
    publish(version)
    return MaterializeResult(metadata={
        "version": version,
        "folder": MetadataValue.path(str(folder)),
        "tracks": n,
        "url_status": counts_md(value_counts(tracks, S.URL_STATUS), key="status"),
        "mood_source": counts_md(value_counts(tracks, S.MOOD_SOURCE), key="source"),
    })
