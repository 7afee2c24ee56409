"""Text embeddings of every music track (the text index, imputation and moods read them), kept per
track shard by text content so a rebuild embeds only new or changed texts."""

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, asset

from assets.resources import StoreResource
from assets.settings import MoodscapeSettings
from pipelines import schema as S
from pipelines.embed.cache import cached_embeddings
from pipelines.embed.sentence import EMBEDDING_DIM, MODEL_NAME
from pipelines.heal.links.status import shards_of
from pipelines.heal.textdoc import add_text_docs
from pipelines.store import write_array


@asset(group_name="embed", deps=["music_tracks"], compute_kind="sentence-transformers", code_version=f"1-{MODEL_NAME}")
def text_embeddings(
    context: AssetExecutionContext, settings: MoodscapeSettings, store: StoreResource
) -> MaterializeResult:
    """MiniLM-L6 (384-d, L2-normalised) embedding of each music track's observed text.

    The text document joins title, artist, genre, tags, description and vibe text. Tracks with no
    text at all (e.g. MIDI-only clips) get a zero row and ``has_text = false`` and stay out of the
    text index; their moods come from audio. Texts embedded by an earlier run are taken from the
    per-shard embedding tables (``text_embedding_cache``), so only new or changed texts are embedded.
    """
    tracks = add_text_docs(store.load("music_tracks"))
    docs = tracks.get_column(S.TEXT_DOC).to_list()
    has_text = np.array([bool(d) for d in docs])
    vectors, stats = cached_embeddings(
        docs=docs, shards=shards_of(track_ids=tracks.get_column(S.TRACK_ID).to_list()),
        layout=store.layout(), prune=True, progress=settings.progress,
    )
    table = tracks.select(S.TRACK_ID, S.TEXT_DOC).with_columns(pl.Series("has_text", has_text))
    write_array(vectors, store.layout().array("text_embeddings"))
    store.write(table, "text_embeddings")
    return MaterializeResult(
        metadata={
            "model": MODEL_NAME,
            "dims": EMBEDDING_DIM,
            "tracks": len(docs),
            "with_text": int(has_text.sum()),
            **stats,
            "mean_doc_chars": round(float(np.mean([len(d) for d in docs])) if docs else 0.0, 1),
        }
    )
