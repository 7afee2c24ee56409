"""Track text embeddings kept per shard by content: a rebuild embeds only new or changed texts."""

import numpy as np
import polars as pl

from pipelines.embed.cache import EMBED_CACHE, cached_embeddings
from pipelines.embed.sentence import embed_texts
from pipelines.heal.links.status import shard_keys, shard_of
from pipelines.store import StoreLayout, read_table


def _pairs(docs: list[str], ids: list[str]) -> set[tuple[str, str]]:
    return {(shard_of(track_id=t), d) for d, t in zip(docs, ids) if d}


def test_rebuild_embeds_only_new_texts_and_matches_a_fresh_embedding(tmp_path) -> None:
    layout = StoreLayout(tmp_path / "store")
    docs = [f"a calm piano piece number {i}" for i in range(12)] + ["", "a calm piano piece number 0"]
    ids = [f"t{i}" for i in range(len(docs))]
    first, stats = cached_embeddings(docs=docs, shards=[shard_of(track_id=t) for t in ids], layout=layout, prune=True)
    assert stats == {"embedded": 13, "embedding_reused": 0}
    assert np.allclose(first[:12], embed_texts(docs[:12]), atol=1e-5) and not first[12].any()
    assert np.allclose(first[13], first[0], atol=1e-5)
    files = layout.batch_tables(EMBED_CACHE)
    assert files and {p.stem for p in files} <= set(shard_keys())
    assert sum(read_table(p).height for p in files) == len(_pairs(docs, ids))  # each shard: its distinct texts

    # a rebuild: one text changed, one track added; the rest comes from the shard tables
    docs2 = [*docs[:3], "an angry metal riff", *docs[4:], "a new upbeat pop song"]
    ids2 = [*ids, "t_new"]
    again, stats = cached_embeddings(docs=docs2, shards=[shard_of(track_id=t) for t in ids2], layout=layout, prune=True)
    assert stats == {"embedded": 2, "embedding_reused": 12}
    fresh = embed_texts([d for d in docs2 if d])
    assert np.allclose(again[[i for i, d in enumerate(docs2) if d]], fresh, atol=1e-5)
    kept = pl.concat([read_table(p) for p in layout.batch_tables(EMBED_CACHE)])
    assert kept.height == len(_pairs(docs2, ids2))  # the replaced text is gone from its shard


def test_a_subset_adds_to_the_shard_tables_and_the_full_set_then_reuses_it(tmp_path) -> None:
    layout = StoreLayout(tmp_path / "store")
    docs = [f"a quiet folk song about the sea {i}" for i in range(10)]
    ids = [f"t{i}" for i in range(10)]
    shards = [shard_of(track_id=t) for t in ids]
    full, _ = cached_embeddings(docs=docs[:6], shards=shards[:6], layout=layout, prune=True)
    # a reader of a subset (the music classifier) encodes only what is missing and drops nothing
    sub, stats = cached_embeddings(docs=docs[4:], shards=shards[4:], layout=layout, prune=False)
    assert stats == {"embedded": 4, "embedding_reused": 2}
    assert np.allclose(sub[:2], full[4:6])
    kept = pl.concat([read_table(p) for p in layout.batch_tables(EMBED_CACHE)])
    assert kept.height == 10
    # the whole crawl afterwards: everything comes from the tables
    again, stats = cached_embeddings(docs=docs, shards=shards, layout=layout, prune=True)
    assert stats == {"embedded": 0, "embedding_reused": 10}
    assert np.allclose(again, embed_texts(docs), atol=1e-5)
