"""Assemble the serving bundle from the checked index assets and tables, then switch ``CURRENT``."""

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.metadata import counts_md, value_counts
from assets.resources import StoreResource
from pipelines import schema as S
from pipelines.heal.textdoc import split_tags
from pipelines.index.version import assemble_version, new_version_id, publish
from pipelines.store import read_array

_NO_AUDIO = "none"


def serving_tracks(
    *, order: pl.DataFrame, metadata: pl.DataFrame, moods: pl.DataFrame, audio: pl.DataFrame
) -> pl.DataFrame:
    """One row per music track in the row order of ``order`` (track_id, text_doc: the text embeddings)."""
    order = order.select(S.TRACK_ID, S.TEXT_DOC)
    out = (
        order.join(metadata.drop(S.TEXT_DOC, strict=False), on=S.TRACK_ID, how="left")
        .join(moods, on=S.TRACK_ID, how="left")
        .join(audio.select(S.TRACK_ID, S.AUDIO_SOURCE), on=S.TRACK_ID, how="left")
    )
    if out.get_column(S.TRACK_ID).to_list() != order.get_column(S.TRACK_ID).to_list():
        raise ValueError("row order changed while joining the serving tracks")
    return out.with_columns(
        pl.col(S.TAGS).map_elements(split_tags, return_dtype=pl.List(pl.Utf8)).alias(S.TAGS),
        pl.col(S.AUDIO_SOURCE).fill_null(_NO_AUDIO),
    )


@asset(
    group_name="publish",
    deps=[
        "text_index",
        "audio_index",
        "mood_index",
        "track_moods",
        "query_mood_model",
        "text_embeddings",
        "imputed_metadata",
        "audio_features_imputed",
    ],
    compute_kind="python",
)
def published_store(context: AssetExecutionContext, store: StoreResource) -> MaterializeResult:
    """A complete serving version (tracks, vectors, the three checked indices, query-mood model,
    manifest) written to ``store/versions/<version>/`` and made current by one atomic pointer swap.

    Runs only after the blocking recall checks of the three indices passed.
    """
    layout = store.layout()
    table, text_vectors = store.text_embeddings()
    tracks = serving_tracks(
        order=table,
        metadata=store.load("imputed_metadata"),
        moods=store.load("track_moods"),
        audio=store.load("audio_features_imputed"),
    )
    n = tracks.height
    has_audio_index = layout.index_file("audio").exists()
    if has_audio_index:
        audio_rows = read_array(layout.array("audio_ids"))
        audio_vecs = read_array(layout.array("audio_vectors"))
        audio_full = np.zeros((n, audio_vecs.shape[1]), dtype=np.float32)
        audio_full[audio_rows] = audio_vecs
    else:
        audio_full = np.zeros((n, 0), dtype=np.float32)
    version = new_version_id()
    folder = assemble_version(
        version=version,
        tracks=tracks,
        text_vectors=np.asarray(text_vectors),
        audio_vectors=audio_full,
        index_files={k: layout.index_file(k) for k in ("text", "audio", "mood") if k != "audio" or has_audio_index},
        query_mood_model_path=layout.model("query_mood"),
        extra_files={layout.audio_space_file.name: layout.audio_space_file} if has_audio_index else {},
        extra_manifest={"dagster_run_id": context.run_id},
        layout=layout,
    )
    publish(version, layout=layout)
    return MaterializeResult(
        metadata={
            "version": version,
            "folder": MetadataValue.path(str(folder)),
            "tracks": n,
            "url_status": counts_md(value_counts(tracks, S.URL_STATUS), key="status"),
            "mood_source": counts_md(value_counts(tracks, S.MOOD_SOURCE), key="source"),
        }
    )
