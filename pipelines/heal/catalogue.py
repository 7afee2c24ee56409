"""The crawl catalogue, stage by stage: ingest (base crawl + inbox batches), keep the music with its
link status, then heal its metadata (genre, tags, description, metadata features).

Each step takes tables and returns tables; reading and writing the store is the caller's job.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from pipelines import schema as S
from pipelines.heal.democorpus import build_demo_crawl
from pipelines.heal.genres import GENRE_CONFIDENCE, impute_genres
from pipelines.heal.impute import fill_descriptions, impute_metadata
from pipelines.heal.ingest import IngestResult, ingest, ingest_frame
from pipelines.heal.metafeatures import metadata_features
from pipelines.heal.musicclassifier import MusicClassifier, TrackTextEncoder, apply_classifier
from pipelines.heal.musicfilter import classify_music
from pipelines.heal.resolver import CatalogueResolver, apply_resolutions, inherit_from_similar, resolve_dead_links
from pipelines.heal.tagvocab import build_vocabulary, tags_from_text

CRAWL_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl", ".ndjson", ".json")


def new_inbox_files(*, folder: Path, known: set[str]) -> list[str]:
    """Crawl files in ``folder`` (by suffix, hidden files skipped) whose names are not in ``known``."""
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in CRAWL_SUFFIXES and not p.name.startswith(".") and p.name not in known
    )


def select_emopia(items: list[tuple[str, object]], labels: pl.DataFrame, limit: int | None) -> list[tuple[str, object]]:
    """All clips, or a deterministic subset balanced over quadrant × split (for small test runs)."""
    if limit is None or limit >= len(items):
        return items
    groups = labels.sort("clip_id").group_by(["quadrant", "split"], maintain_order=True).agg(pl.col("clip_id"))
    per_group = max(1, math.ceil(limit / max(1, groups.height)))
    chosen = {c for ids in groups.get_column("clip_id").to_list() for c in ids[:per_group]}
    return [it for it in items if it[0] in chosen][:limit]


def ingest_catalogue(
    *,
    crawl: str | None,
    emopia_audio: pl.DataFrame | None,
    batches: Sequence[pl.DataFrame],
    data_dir: Path,
    jamendo_limit: int | None,
) -> tuple[IngestResult, str]:
    """(the ingested catalogue, a description of its source).

    The crawl file ``crawl`` or, without one, the bundled demo corpus (its EMOPIA clips taken from
    the rendered ``emopia_audio`` table), unioned with every ingested inbox batch (duplicates merged).
    """
    if crawl:
        result = ingest(path=crawl)
        source = crawl
    else:
        rendered = emopia_audio.filter(pl.col("render_error").is_null())
        emopia = dict(zip(rendered.get_column("clip_id").to_list(), rendered.get_column("audio_path").to_list()))
        demo = build_demo_crawl(data_dir=data_dir, jamendo_limit=jamendo_limit, emopia_audio=emopia)
        # EMOPIA clips that were not rendered (subset runs, render errors) have no audio: leave them out.
        demo = demo.filter((pl.col(S.SOURCE) != "emopia") | pl.col(S.AUDIO_PATH).is_not_null())
        result = ingest_frame(df=demo, source_name="demo")
        source = "bundled demo corpus"
    if batches:
        base_stats = result.stats
        merged = ingest_frame(df=pl.concat([result.tracks, *batches], how="diagonal_relaxed"), source_name="batches")
        result = type(result)(
            tracks=merged.tracks,
            quarantine=pl.concat([result.quarantine, merged.quarantine], how="diagonal_relaxed"),
            stats={
                **base_stats,
                "batches": len(batches),
                "rows_after_batches": merged.tracks.height,
                "batch_duplicates_merged": merged.stats.get("duplicates_merged", 0),
            },
        )
        source += f" + {len(batches)} inbox batch(es)"
    return result, source


@dataclass(frozen=True)
class MusicCatalogue:
    music: pl.DataFrame  # music rows with link status, MOVED / resolved URLs applied
    rejected: pl.DataFrame  # non-music rows with their reason
    verdict: pl.DataFrame  # per track: is_music, music_reason, music_probability
    resolutions: pl.DataFrame  # confirmed DEAD links replaced by a live catalogue copy


def music_catalogue(
    *, tracks: pl.DataFrame, audio_features: pl.DataFrame, link_status: pl.DataFrame,
    classifier: MusicClassifier | None, embed: TrackTextEncoder | None = None,
) -> MusicCatalogue:
    """Split the catalogue into music and non-music and give each track its served link.

    Text evidence and, where audio decoded, a speech/music rule decide; the learned classifier (when
    given) scores only the rows they left undecided. MOVED links take their new address (the crawled
    one stays in ``permalink_url_original``); a confirmed DEAD link takes the URL and status of a live
    copy of the same track elsewhere in the catalogue (provenance in ``url_resolution_*``).
    O(n) memory; time O(n) hash joins plus the steps' own (``classify_music``, ``apply_classifier``,
    ``resolve_dead_links``), the only super-linear one being the near-copy search, O(r·A) for r
    unresolved DEAD rows and A catalogue artists. ``embed``: the classifier's text encoder
    (``apply_classifier``).
    """
    verdict = classify_music(tracks=tracks, audio_features=audio_features.filter(pl.col(S.AUDIO_ERROR).is_null()))
    if classifier is not None:
        verdict = apply_classifier(tracks=tracks, verdict=verdict, classifier=classifier, embed=embed)
    else:
        verdict = verdict.with_columns(pl.lit(None, dtype=pl.Float64).alias(S.MUSIC_PROBABILITY))
    status = link_status.select(S.TRACK_ID, S.URL_STATUS, S.HTTP_CODE, S.FINAL_URL)
    joined = tracks.join(verdict, on=S.TRACK_ID, how="left").join(status, on=S.TRACK_ID, how="left")
    joined = joined.with_columns(pl.col(S.PERMALINK_URL).alias(S.URL_ORIGINAL)).with_columns(
        pl.when((pl.col(S.URL_STATUS) == S.MOVED) & pl.col(S.FINAL_URL).is_not_null())
        .then(pl.col(S.FINAL_URL))
        .otherwise(pl.col(S.PERMALINK_URL))
        .alias(S.PERMALINK_URL)
    )
    resolutions = resolve_dead_links(tracks=joined, resolvers=[CatalogueResolver(catalogue=joined)])
    joined = apply_resolutions(tracks=joined, resolutions=resolutions)
    donor_status = joined.select(
        pl.col(S.TRACK_ID).alias(S.URL_RESOLVED_FROM), pl.col(S.URL_STATUS).alias("_donor_status")
    )
    joined = (
        joined.join(donor_status, on=S.URL_RESOLVED_FROM, how="left", maintain_order="left")
        .with_columns(pl.coalesce(pl.col("_donor_status"), pl.col(S.URL_STATUS)).alias(S.URL_STATUS))
        .drop("_donor_status")
    )
    return MusicCatalogue(
        music=joined.filter(pl.col(S.IS_MUSIC).fill_null(True)),
        rejected=joined.filter(~pl.col(S.IS_MUSIC).fill_null(True)),
        verdict=verdict,
        resolutions=resolutions,
    )


def heal_metadata(
    *, tracks: pl.DataFrame, text_table: pl.DataFrame, vectors: np.ndarray, data_dir: Path, now_year: int | None = None
) -> tuple[pl.DataFrame, dict]:
    """(music tracks with genre, tags and description healed plus metadata features, imputation metrics).

    ``text_table`` / ``vectors`` are the text embeddings aligned with ``tracks`` (track_id,
    text_doc, has_text). Genre: observed → the artist's most common genre → kNN votes of text
    neighbours → the track's k-means text cluster → null (``unknown``). Tags: kNN votes, else
    vocabulary n-grams of the track's own text. Confirmed DEAD tracks inherit missing genre / tags
    from the most similar live track. Every filled value is flagged in its ``*_source`` column.
    O(n·d) memory (no pairwise matrix; the vectors are not copied when text-less rows are zero);
    time dominated by the FAISS neighbour searches (see ``neighbours.nearest``), k-means on at
    most ``KMEANS_FIT_MAX`` rows, and TF-IDF tag matching, each linear or block-bounded in n.
    """
    if text_table.get_column(S.TRACK_ID).to_list() != tracks.get_column(S.TRACK_ID).to_list():
        raise ValueError("text_embeddings is not aligned with music_tracks: re-materialize text_embeddings")
    tracks = tracks.with_columns(text_table.get_column(S.TEXT_DOC))
    has_text = text_table.get_column("has_text").to_numpy()
    ids = tracks.get_column(S.TRACK_ID).to_list()
    observed = tracks.get_column(S.GENRE).to_list()
    # rows without text are zero in text_embeddings already: no masked copy of the vectors then
    no_text = np.flatnonzero(~has_text)
    features = np.where(has_text[:, None], vectors, 0.0) if vectors[no_text].any() else vectors
    chain = impute_genres(
        track_ids=ids,
        artists=tracks.get_column(S.ARTIST).to_list(),
        genres=observed,
        vectors=features,
        k=min(20, max(1, int(has_text.sum()))),
    )
    # The artist step first, then kNN votes, then clusters.
    cs, cg, cc = (pl.col("_chain_source"), pl.col("_chain_genre"), pl.col("_chain_confidence"))
    step1 = tracks.with_columns(chain.get_column(S.GENRE_SOURCE).alias("_chain_source"),
                                chain.get_column(S.GENRE).alias("_chain_genre")).select(
        pl.when(cs == "artist").then(cg).otherwise(pl.col(S.GENRE)).alias(S.GENRE)).to_series()
    out, metrics = impute_metadata(tracks=tracks.with_columns(step1), text_vectors=vectors, has_text=has_text)
    genre, source = pl.col(S.GENRE), pl.col(S.GENRE_SOURCE)
    from_cluster = genre.is_null() & (cs == "cluster")
    out = out.with_columns(
        chain.get_column(S.GENRE_SOURCE).alias("_chain_source"), chain.get_column(S.GENRE).alias("_chain_genre"),
        chain.get_column(GENRE_CONFIDENCE).alias("_chain_confidence"),
    ).with_columns(
        pl.when(from_cluster).then(cg).otherwise(genre).alias(S.GENRE),
        pl.when(cs == "artist").then(pl.lit("artist")).when(from_cluster).then(pl.lit("cluster"))
        .when(genre.is_null()).then(pl.lit("unknown")).when(source == "imputed").then(pl.lit("knn"))
        .otherwise(source).alias(S.GENRE_SOURCE),
        pl.when((cs == "artist") | from_cluster).then(cc).otherwise(pl.col(GENRE_CONFIDENCE)).alias(GENRE_CONFIDENCE),
    ).drop("_chain_source", "_chain_genre", "_chain_confidence")
    out = _inherit_for_dead(
        out=out,
        observed_genres=observed,
        observed_tags=tracks.get_column(S.TAGS).to_list(),
        vectors=vectors,
        has_text=has_text,
    )
    # Tags from the track's own words where neither the crawl nor the neighbours gave any.
    need = out.select(pl.arg_where(pl.col(S.TAGS).fill_null("") == "")).to_series()
    if len(need):
        own = [pl.when(pl.col(c) != "").then(pl.col(c)) for c in (S.TITLE, S.DESCRIPTION, S.VIBE_TEXT)]
        texts = out[need].select(pl.concat_str(own, separator=" ", ignore_nulls=True).fill_null("")).to_series()
        found = tags_from_text(texts=texts.to_list(), vocabulary=build_vocabulary(data_dir=data_dir))
        hit = [i for i, got in enumerate(found) if got]
        rows = need.gather(hit) if hit else pl.Series([], dtype=pl.UInt32)
        out = out.with_columns(
            out.get_column(S.TAGS).scatter(rows, pl.Series([", ".join(found[i]) for i in hit], dtype=pl.Utf8)),
            out.get_column(S.TAGS_SOURCE).scatter(rows, pl.Series(["text_match"] * len(hit), dtype=pl.Utf8)),
        )
    out = fill_descriptions(tracks=out)  # after text_doc: synthetic text is never embedded
    feats = metadata_features(tracks=out, now_year=now_year or datetime.now(timezone.utc).year)
    return out.join(feats, on=S.TRACK_ID, how="left"), metrics


def _inherit_for_dead(
    *, out: pl.DataFrame, observed_genres: list, observed_tags: list, vectors: np.ndarray, has_text: np.ndarray
) -> pl.DataFrame:
    """DEAD (unresolved) tracks take their missing genre / tags from the most similar live track by
    text embedding (``genre_source`` / ``tags_source`` = inherited, donors recorded).
    Time: ``inherit_from_similar`` plus an O(n) hash join; memory O(n·d) (see there)."""
    dead = (
        out.select((pl.col(S.URL_STATUS) == S.DEAD).fill_null(False)).to_series().to_numpy()
        if S.URL_STATUS in out.columns else np.zeros(out.height, dtype=bool)
    )
    inherited = inherit_from_similar(
        track_ids=out.get_column(S.TRACK_ID).to_list(),
        vectors=vectors,
        has_text=has_text,
        recipients=dead,
        donors=~dead,
        genres=observed_genres,
        tags=observed_tags,
    ).select(
        S.TRACK_ID, pl.col(S.GENRE).alias("_genre"), pl.col("genre_donor").alias(S.DONOR_TRACK_ID),
        pl.col(S.TAGS).alias("_tags"), pl.col("tags_donor").alias(S.TAGS_DONOR_TRACK_ID), "genre_similarity",
    )
    g, t = pl.col(S.DONOR_TRACK_ID).is_not_null(), pl.col(S.TAGS_DONOR_TRACK_ID).is_not_null()
    return (
        out.drop(S.DONOR_TRACK_ID, S.TAGS_DONOR_TRACK_ID, strict=False)
        .join(inherited, on=S.TRACK_ID, how="left", maintain_order="left")
        .with_columns(
            pl.when(g).then(pl.col("_genre")).otherwise(pl.col(S.GENRE)).alias(S.GENRE),
            pl.when(g).then(pl.lit("inherited")).otherwise(pl.col(S.GENRE_SOURCE)).alias(S.GENRE_SOURCE),
            pl.when(g).then(pl.col("genre_similarity")).otherwise(pl.col(GENRE_CONFIDENCE)).alias(GENRE_CONFIDENCE),
            pl.when(t).then(pl.col("_tags")).otherwise(pl.col(S.TAGS)).alias(S.TAGS),
            pl.when(t).then(pl.lit("inherited")).otherwise(pl.col(S.TAGS_SOURCE)).alias(S.TAGS_SOURCE),
        )
        .drop("_genre", "_tags", "genre_similarity")
        .select(*[c for c in out.columns if c not in (S.DONOR_TRACK_ID, S.TAGS_DONOR_TRACK_ID)],
                S.DONOR_TRACK_ID, S.TAGS_DONOR_TRACK_ID)
    )
