"""Assemble the serving bundle from the checked index assets and tables, then switch ``CURRENT``."""

from pathlib import Path

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.fetch import fetch_table
from assets.metadata import counts_md, value_counts
from assets.resources import StoreResource
from pipelines import schema as S
from pipelines.audio.acquire import acquire_audio
from pipelines.heal.textdoc import split_tags
from pipelines.index.bundle import RANKER_FILE
from pipelines.index.remote_store import RemoteStore, push_version
from pipelines.index.version import assemble_version, new_version_id, publish
from pipelines.store import StoreLayout, read_array

_NO_AUDIO = "none"
# display-only text carried into the version (null where the crawl has none)
_OPTIONAL_TEXT: tuple[str, ...] = (S.AUDIO_PATH, S.SOURCE, S.DESCRIPTION, S.VIBE_TEXT)


def recording_paths(items: list[tuple[str, str]], *, audio_root: Path) -> pl.DataFrame:
    """track_id, audio_path of the recordings the store analysed: paths inside ``audio_root`` relative
    to it (the store can move), others absolute."""
    root = audio_root.resolve()
    rows = []
    for track_id, path in items:
        p = Path(path).resolve()
        rows.append((track_id, str(p.relative_to(root)) if p.is_relative_to(root) else str(p)))
    frame = pl.DataFrame(rows, schema={S.TRACK_ID: pl.String, S.AUDIO_PATH: pl.String}, orient="row")
    return frame.unique(S.TRACK_ID, keep="last", maintain_order=True)


def serving_tracks(
    *, order: pl.DataFrame, metadata: pl.DataFrame, moods: pl.DataFrame, audio: pl.DataFrame,
    recordings: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per music track in the row order of ``order`` (track_id, text_doc: the text embeddings);
    ``recordings`` (track_id, audio_path) replaces the crawl's audio_path (local and fetched files)."""
    order = order.select(S.TRACK_ID, S.TEXT_DOC)
    audio_cols = [c for c in (S.AUDIO_SOURCE, S.AUDIO_CONFIDENCE) if c in audio.columns]
    metadata = metadata.drop(S.TEXT_DOC, strict=False)
    if recordings is not None:
        metadata = metadata.drop(S.AUDIO_PATH, strict=False).join(recordings, on=S.TRACK_ID, how="left")
    out = (
        order.join(metadata, on=S.TRACK_ID, how="left")
        .join(moods, on=S.TRACK_ID, how="left")
        .join(audio.select(S.TRACK_ID, *audio_cols), on=S.TRACK_ID, how="left")
    )
    if out.get_column(S.TRACK_ID).to_list() != order.get_column(S.TRACK_ID).to_list():
        raise ValueError("row order changed while joining the serving tracks")
    return out.with_columns(
        pl.col(S.TAGS).map_elements(split_tags, return_dtype=pl.List(pl.Utf8)).alias(S.TAGS),
        pl.col(S.AUDIO_SOURCE).fill_null(_NO_AUDIO),
        *[pl.lit(None, dtype=pl.String).alias(c) for c in _OPTIONAL_TEXT if c not in out.columns],
        *([] if S.AUDIO_CONFIDENCE in out.columns else [pl.lit(None, dtype=pl.Float32).alias(S.AUDIO_CONFIDENCE)]),
    )


def _extra_files(layout: StoreLayout, *, has_audio_index: bool) -> dict[str, Path]:
    """Files copied into the version besides the indices: the audio space, the learned ranker."""
    files = {layout.audio_space_file.name: layout.audio_space_file} if has_audio_index else {}
    if layout.model("ranker").exists():
        files[RANKER_FILE] = layout.model("ranker")
    return files


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
        "learned_ranker",
        "raw_tracks",
        "audio_fetch",
    ],
    compute_kind="python",
    code_version="1",
)
def published_store(context: AssetExecutionContext, store: StoreResource) -> MaterializeResult:
    """A complete serving version (tracks, vectors, the three checked indices, query-mood model,
    learned ranker when trained, manifest) written to ``store/versions/<version>/`` and made current by
    one atomic pointer swap.

    Runs only after the blocking recall checks of the three indices passed.
    """
    layout = store.layout()
    table, text_vectors = store.text_embeddings()
    tracks = serving_tracks(
        order=table,
        metadata=store.load("imputed_metadata"),
        moods=store.load("track_moods"),
        audio=store.load("audio_features_imputed"),
        recordings=recording_paths(
            acquire_audio(raw=store.load("raw_tracks"), fetch_table=fetch_table(store)).items,
            audio_root=layout.audio(""),
        ),
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
        extra_files=_extra_files(layout, has_audio_index=has_audio_index),
        extra_manifest={"dagster_run_id": context.run_id},
        layout=layout,
    )
    publish(version, layout=layout)
    remote = RemoteStore.from_env()  # replicas serve from an object store: copy the version there, pointer last
    pushed = push_version(local=layout, remote=remote, version=version) if remote is not None else 0
    return MaterializeResult(
        metadata={
            "version": version,
            "object_store": remote.url if remote is not None else "(none: served from this store)",
            "object_store_files": pushed,
            "folder": MetadataValue.path(str(folder)),
            "tracks": n,
            "url_status": counts_md(value_counts(tracks, S.URL_STATUS), key="status"),
            "mood_source": counts_md(value_counts(tracks, S.MOOD_SOURCE), key="source"),
            "learned_ranker": (folder / RANKER_FILE).exists(),
        }
    )
