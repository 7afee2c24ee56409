"""Track text embeddings kept per track shard by text content, so each text is embedded once.

One table per shard (``text_embedding_cache/<shard>.parquet``): content key → 384-d vector. Every
reader of MiniLM vectors of crawl texts (the music classifier, the text embeddings) goes through
it, so a text is encoded once per build and a rebuild encodes only new or changed texts.
"""

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

from pipelines.embed.sentence import EMBEDDING_DIM, MODEL_NAME, embed_texts
from pipelines.store import StoreLayout, read_table, write_table

EMBED_CACHE = "text_embedding_cache"  # one table per track shard: text key → vector of the shard's texts
_KEY, _VECTOR, _ROW, _SHARD = "text_key", "vector", "row", "shard"


def text_key(doc: str) -> str:
    """Content key of one text's embedding (the text and the encoder)."""
    return hashlib.sha1(f"{MODEL_NAME}\0{doc}".encode()).hexdigest()[:24]


def cached_embeddings(
    *, docs: Sequence[str], shards: Sequence[str], layout: StoreLayout, prune: bool,
    encode: Callable[..., np.ndarray] = embed_texts, progress: bool = False,
) -> tuple[np.ndarray, dict[str, int]]:
    """(n, 384) embeddings of ``docs`` (zero rows for empty texts) and how many were embedded / reused.

    ``shards[i]``: the shard of the track that ``docs[i]`` belongs to. The texts missing from their
    shard's table are encoded (each distinct text once) and added to it. ``prune=True`` (the full
    set of the crawl's texts): each shard's table is then rewritten to hold exactly its current
    texts; ``prune=False`` (a subset, e.g. the texts one classifier scores): entries are only added.

    Time O(n) joins + the encoder over the missing texts; memory O(n·384) plus one shard's table.
    """
    vectors = np.zeros((len(docs), EMBEDDING_DIM), dtype=np.float32)
    rows = pl.DataFrame({
        _ROW: np.arange(len(docs)), _KEY: [text_key(d) if d else None for d in docs], _SHARD: list(shards),
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
            new = encode([docs[i] for i in todo.get_column(_ROW).to_list()], progress=progress)
            by_key = dict(zip(todo.get_column(_KEY).to_list(), new))
            vectors[misses.get_column(_ROW).to_numpy()] = np.stack([by_key[k] for k in misses.get_column(_KEY)])
        keys = part.unique(_KEY, keep="first", maintain_order=True)
        current = pl.DataFrame({_KEY: keys.get_column(_KEY), _VECTOR: vectors[keys.get_column(_ROW).to_numpy()]})
        if prune and (misses.height or cache is None or cache.height != keys.height):
            write_table(current, path)
        elif not prune and misses.height:
            kept = cache.join(current, on=_KEY, how="anti") if cache is not None else None
            write_table(current if kept is None else pl.concat([kept, current]), path)
        stats["embedded"] += misses.height
        stats["embedding_reused"] += hits.height
    return vectors, stats
