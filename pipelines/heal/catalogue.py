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
from pipelines.heal.musicclassifier import MusicClassifier, apply_classifier
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
    *, tracks: pl.DataFrame, audio_features: pl.DataFrame, link_status: pl.DataFrame, classifier: MusicClassifier | None
) -> MusicCatalogue:
    """Split the catalogue into music and non-music and give each track its served link.

    Text evidence and, where audio decoded, a speech/music rule decide; the learned classifier (when
    given) scores only the rows they left undecided. MOVED links take their new address (the crawled
    one stays in ``permalink_url_original``); a confirmed DEAD link takes the URL and status of a live
    copy of the same track elsewhere in the catalogue (provenance in ``url_resolution_*``).
    """
    verdict = classify_music(tracks=tracks, audio_features=audio_features.filter(pl.col(S.AUDIO_ERROR).is_null()))
    if classifier is not None:
        verdict = apply_classifier(tracks=tracks, verdict=verdict, classifier=classifier)
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
    """
    if text_table.get_column(S.TRACK_ID).to_list() != tracks.get_column(S.TRACK_ID).to_list():
        raise ValueError("text_embeddings is not aligned with music_tracks: re-materialize text_embeddings")
    tracks = tracks.with_columns(text_table.get_column(S.TEXT_DOC))
    has_text = text_table.get_column("has_text").to_numpy()
    ids = tracks.get_column(S.TRACK_ID).to_list()
    observed = tracks.get_column(S.GENRE).to_list()
    chain = impute_genres(
        track_ids=ids,
        artists=tracks.get_column(S.ARTIST).to_list(),
        genres=observed,
        vectors=np.where(has_text[:, None], vectors, 0.0),
        k=min(20, max(1, int(has_text.sum()))),
    )
    chain_src = chain.get_column(S.GENRE_SOURCE).to_list()
    chain_genre = chain.get_column(S.GENRE).to_list()
    chain_conf = chain.get_column(GENRE_CONFIDENCE).to_list()
    # The artist step first, then kNN votes, then clusters.
    step1 = [g if src == "artist" else o for g, src, o in zip(chain_genre, chain_src, observed)]
    out, metrics = impute_metadata(
        tracks=tracks.with_columns(pl.Series(S.GENRE, step1, dtype=pl.Utf8)), text_vectors=vectors, has_text=has_text
    )
    genre, source, conf = (
        out.get_column(S.GENRE).to_list(),
        out.get_column(S.GENRE_SOURCE).to_list(),
        out.get_column(GENRE_CONFIDENCE).to_list(),
    )
    for i, src in enumerate(chain_src):
        if src == "artist":
            source[i], conf[i] = "artist", chain_conf[i]
        elif genre[i] is None and src == "cluster":
            genre[i], source[i], conf[i] = chain_genre[i], "cluster", chain_conf[i]
        elif genre[i] is None:
            source[i] = "unknown"
        elif source[i] == "imputed":
            source[i] = "knn"
    out = out.with_columns(
        pl.Series(S.GENRE, genre, dtype=pl.Utf8),
        pl.Series(S.GENRE_SOURCE, source, dtype=pl.Utf8),
        pl.Series(GENRE_CONFIDENCE, conf, dtype=pl.Float64),
    )
    out = _inherit_for_dead(
        out=out,
        observed_genres=observed,
        observed_tags=tracks.get_column(S.TAGS).to_list(),
        vectors=vectors,
        has_text=has_text,
    )
    # Tags from the track's own words where neither the crawl nor the neighbours gave any.
    need = [i for i, t in enumerate(out.get_column(S.TAGS).to_list()) if not t]
    texts = [
        " ".join(x for x in (r[S.TITLE], r[S.DESCRIPTION], r[S.VIBE_TEXT]) if x)
        for r in out.select(S.TITLE, S.DESCRIPTION, S.VIBE_TEXT).iter_rows(named=True)
    ]
    found = (
        tags_from_text(texts=[texts[i] for i in need], vocabulary=build_vocabulary(data_dir=data_dir)) if need else []
    )
    tags, tags_src = out.get_column(S.TAGS).to_list(), out.get_column(S.TAGS_SOURCE).to_list()
    for i, got in zip(need, found):
        if got:
            tags[i], tags_src[i] = ", ".join(got), "text_match"
    out = out.with_columns(pl.Series(S.TAGS, tags, dtype=pl.Utf8), pl.Series(S.TAGS_SOURCE, tags_src, dtype=pl.Utf8))
    out = fill_descriptions(tracks=out)  # after text_doc: synthetic text is never embedded
    feats = metadata_features(tracks=out, now_year=now_year or datetime.now(timezone.utc).year)
    return out.join(feats, on=S.TRACK_ID, how="left"), metrics


def _inherit_for_dead(
    *, out: pl.DataFrame, observed_genres: list, observed_tags: list, vectors: np.ndarray, has_text: np.ndarray
) -> pl.DataFrame:
    """DEAD (unresolved) tracks take their missing genre / tags from the most similar live track by
    text embedding (``genre_source`` / ``tags_source`` = inherited, donors recorded)."""
    status = out.get_column(S.URL_STATUS).to_list() if S.URL_STATUS in out.columns else [None] * out.height
    dead = np.array([s == S.DEAD for s in status])
    ids = out.get_column(S.TRACK_ID).to_list()
    inherited = inherit_from_similar(
        track_ids=ids,
        vectors=vectors,
        has_text=has_text,
        recipients=dead,
        donors=~dead,
        genres=observed_genres,
        tags=observed_tags,
    )
    genre, gsrc, conf = (
        out.get_column(S.GENRE).to_list(),
        out.get_column(S.GENRE_SOURCE).to_list(),
        out.get_column(GENRE_CONFIDENCE).to_list(),
    )
    tags, tsrc = out.get_column(S.TAGS).to_list(), out.get_column(S.TAGS_SOURCE).to_list()
    gdonor: list[str | None] = [None] * out.height
    tdonor: list[str | None] = [None] * out.height
    row = {t: i for i, t in enumerate(ids)}
    for r in inherited.iter_rows(named=True):
        i = row[r[S.TRACK_ID]]
        if r["genre_donor"] is not None:
            genre[i], gsrc[i], conf[i], gdonor[i] = r[S.GENRE], "inherited", r["genre_similarity"], r["genre_donor"]
        if r["tags_donor"] is not None:
            tags[i], tsrc[i], tdonor[i] = r[S.TAGS], "inherited", r["tags_donor"]
    return out.with_columns(
        pl.Series(S.GENRE, genre, dtype=pl.Utf8),
        pl.Series(S.GENRE_SOURCE, gsrc, dtype=pl.Utf8),
        pl.Series(GENRE_CONFIDENCE, conf, dtype=pl.Float64),
        pl.Series(S.TAGS, tags, dtype=pl.Utf8),
        pl.Series(S.TAGS_SOURCE, tsrc, dtype=pl.Utf8),
        pl.Series(S.DONOR_TRACK_ID, gdonor, dtype=pl.Utf8),
        pl.Series(S.TAGS_DONOR_TRACK_ID, tdonor, dtype=pl.Utf8),
    )
