"""Text embeddings of every music track (the text index, imputation and moods read them), kept per
track shard by text content so a rebuild embeds only new or changed texts."""

import hashlib

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, asset

from assets.resources import StoreResource
from assets.settings import MoodscapeSettings
from pipelines import schema as S
from pipelines.embed.sentence import EMBEDDING_DIM, MODEL_NAME, embed_texts
from pipelines.heal.links.status import shard_of
from pipelines.heal.textdoc import add_text_docs
from pipelines.store import StoreLayout, read_table, write_array, write_table

EMBED_CACHE = "text_embedding_cache"  # one table per track shard: text key → vector of the shard's texts
_KEY, _VECTOR, _ROW, _SHARD = "text_key", "vector", "row", "shard"


def text_key(doc: str) -> str:
    """Content key of one text's embedding (the text and the encoder)."""
    return hashlib.sha1(f"{MODEL_NAME}\0{doc}".encode()).hexdigest()[:24]


def cached_embeddings(
    *, docs: list[str], track_ids: list[str], layout: StoreLayout, progress: bool = False
) -> tuple[np.ndarray, dict[str, int]]:
    """(n, 384) embeddings of ``docs`` (zero rows for empty texts) and how many were embedded / reused.

    Each track shard keeps the vectors of its tracks' texts by content key; a shard's table is
    rewritten only when its texts changed, and then holds exactly its current texts.
    """
    vectors = np.zeros((len(docs), EMBEDDING_DIM), dtype=np.float32)
    rows = pl.DataFrame({
        _ROW: np.arange(len(docs)), _KEY: [text_key(d) if d else None for d in docs],
        _SHARD: [shard_of(track_id=t) for t in track_ids],
    }, schema={_ROW: pl.Int64, _KEY: pl.String, _SHARD: pl.String}).filter(pl.col(_KEY).is_not_null())
    stats = {"embedded": 0, "embedding_reused": 0}
    for (shard,), part in rows.group_by(_SHARD, maintain_order=True):
        path = layout.table(EMBED_CACHE, shard)
        cache = read_table(path) if path.exists() else None
        found = part.join(cache, on=_KEY, how="left") if cache is not None else part.with_columns(
            pl.lit(None, dtype=pl.Array(pl.Float32, EMBEDDING_DIM)).alias(_VECTOR))
        hits = found.filter(pl.col(_VECTOR).is_not_null())
        if hits.height:
            vectors[hits.get_column(_ROW).to_numpy()] = hits.get_column(_VECTOR).to_numpy()
        misses = found.filter(pl.col(_VECTOR).is_null())
        if misses.height:
            todo = misses.unique(_KEY, keep="first", maintain_order=True)
            new = embed_texts([docs[i] for i in todo.get_column(_ROW).to_list()], progress=progress)
            by_key = dict(zip(todo.get_column(_KEY).to_list(), new))
            vectors[misses.get_column(_ROW).to_numpy()] = np.stack([by_key[k] for k in misses.get_column(_KEY)])
        keys = part.unique(_KEY, keep="first", maintain_order=True)
        if misses.height or cache is None or cache.height != keys.height:
            table = pl.DataFrame({_KEY: keys.get_column(_KEY), _VECTOR: vectors[keys.get_column(_ROW).to_numpy()]})
            write_table(table, path)
        stats["embedded"] += misses.height
        stats["embedding_reused"] += hits.height
    return vectors, stats


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
        docs=docs, track_ids=tracks.get_column(S.TRACK_ID).to_list(), layout=store.layout(),
        progress=settings.progress,
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
