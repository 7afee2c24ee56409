"""Embed track text, impute missing metadata, impute audio features where no audio exists."""

from datetime import datetime, timezone

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.common import load
from assets.heal import music_tracks, audio_features
from assets.settings import MoodscapeSettings
from pipelines import schema as S
from pipelines.audio.features import FEATURE_COLUMNS
from pipelines.embed.sentence import EMBEDDING_DIM, MODEL_NAME, embed_texts
from pipelines.heal.genres import GENRE_CONFIDENCE, impute_genres
from pipelines.heal.impute import fill_descriptions, impute_audio_features, impute_metadata
from pipelines.heal.metafeatures import metadata_features, null_rate_table
from pipelines.heal.resolver import inherit_from_similar
from pipelines.heal.tagvocab import build_vocabulary, tags_from_text
from pipelines.schema import GENRE_SOURCE
from pipelines.store import DATA_DIR, array_path, read_array, table_path, write_array, write_table
from pipelines.heal.textdoc import add_text_docs


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


@asset(group_name="heal", deps=[music_tracks, text_embeddings], compute_kind="scikit-learn")
def imputed_metadata(context: AssetExecutionContext) -> MaterializeResult:
    """Music tracks with genre, tags and metadata features healed, every filled value flagged.

    Genre: observed → the artist's most common genre → similarity-weighted kNN votes of text
    neighbours → the majority genre of the track's k-means text cluster → left null
    (``genre_source`` = unknown). Tags: kNN votes, else TF-IDF n-grams of the track's own text
    fuzzy-matched to a music-tag vocabulary built from MTG-Jamendo and MusicCaps. Description:
    the track's vibe text, else a synthetic line flagged ``synthetic`` (display only: never
    embedded, never counted as text evidence). Strategy C: a track whose link is confirmed DEAD (and
    was not resolved) takes its missing genre / tags from the most similar live track by text
    embedding instead (source ``inherited``, donor in ``donor_track_id`` / ``tags_donor_track_id``). Plus release year, era, recency, popularity tier, artist statistics,
    metadata richness and text length.
    """
    tracks = load("music_tracks")
    table, vectors = load_text_embeddings()
    if table.get_column(S.TRACK_ID).to_list() != tracks.get_column(S.TRACK_ID).to_list():
        raise ValueError("text_embeddings is not aligned with music_tracks: re-materialize text_embeddings")
    tracks = tracks.with_columns(table.get_column(S.TEXT_DOC))
    before = tracks
    has_text = table.get_column("has_text").to_numpy()
    ids = tracks.get_column(S.TRACK_ID).to_list()
    observed = tracks.get_column(S.GENRE).to_list()
    chain = impute_genres(track_ids=ids, artists=tracks.get_column(S.ARTIST).to_list(), genres=observed,
                          vectors=np.where(has_text[:, None], vectors, 0.0), k=min(20, max(1, int(has_text.sum()))))
    chain_src = chain.get_column(GENRE_SOURCE).to_list()
    chain_genre = chain.get_column(S.GENRE).to_list()
    chain_conf = chain.get_column(GENRE_CONFIDENCE).to_list()
    # 1. artist step first (the order), then kNN votes, then clusters.
    step1 = [g if src == "artist" else o for g, src, o in zip(chain_genre, chain_src, observed)]
    out, metrics = impute_metadata(tracks=tracks.with_columns(pl.Series(S.GENRE, step1, dtype=pl.Utf8)),
                                   text_vectors=vectors, has_text=has_text)
    genre, source, conf = out.get_column(S.GENRE).to_list(), out.get_column(S.GENRE_SOURCE).to_list(), out.get_column(GENRE_CONFIDENCE).to_list()
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
        pl.Series(S.GENRE, genre, dtype=pl.Utf8), pl.Series(S.GENRE_SOURCE, source, dtype=pl.Utf8),
        pl.Series(GENRE_CONFIDENCE, conf, dtype=pl.Float64),
    )
    out = _inherit_for_dead(out=out, observed_genres=observed, observed_tags=tracks.get_column(S.TAGS).to_list(),
                            vectors=vectors, has_text=has_text)
    # Tags from the track's own words where neither the crawl nor the neighbours gave any.
    need = [i for i, t in enumerate(out.get_column(S.TAGS).to_list()) if not t]
    texts = [" ".join(x for x in (r[S.TITLE], r[S.DESCRIPTION], r[S.VIBE_TEXT]) if x) for r in out.select(S.TITLE, S.DESCRIPTION, S.VIBE_TEXT).iter_rows(named=True)]
    found = tags_from_text(texts=[texts[i] for i in need], vocabulary=build_vocabulary(data_dir=DATA_DIR)) if need else []
    tags, tags_src = out.get_column(S.TAGS).to_list(), out.get_column(S.TAGS_SOURCE).to_list()
    for i, got in zip(need, found):
        if got:
            tags[i], tags_src[i] = ", ".join(got), "text_match"
    out = out.with_columns(pl.Series(S.TAGS, tags, dtype=pl.Utf8), pl.Series(S.TAGS_SOURCE, tags_src, dtype=pl.Utf8))
    out = fill_descriptions(tracks=out)  # after text_doc: synthetic text is never embedded
    feats = metadata_features(tracks=out, now_year=datetime.now(timezone.utc).year)
    out = out.join(feats, on=S.TRACK_ID, how="left")
    write_table(out, table_path("imputed_metadata"))
    nulls = null_rate_table(before=before, after=out, columns=[S.GENRE, S.TAGS, S.DESCRIPTION, S.YEAR, S.ARTIST, S.TITLE])
    return MaterializeResult(metadata={
        **metrics, "tracks": out.height,
        "genre_source": MetadataValue.json({str(k): int(v) for k, v in out.get_column(S.GENRE_SOURCE).fill_null("null").value_counts().iter_rows()}),
        "description_source": MetadataValue.json({str(k): int(v) for k, v in out.get_column(S.DESCRIPTION_SOURCE).fill_null("null").value_counts().iter_rows()}),
        "tags_source": MetadataValue.json({str(k): int(v) for k, v in out.get_column(S.TAGS_SOURCE).fill_null("null").value_counts().iter_rows()}),
        "null_rates": MetadataValue.md(_md_table(nulls)),
    })


def _inherit_for_dead(*, out: pl.DataFrame, observed_genres: list, observed_tags: list, vectors: np.ndarray,
                      has_text: np.ndarray) -> pl.DataFrame:
    """Strategy C: DEAD (unresolved) tracks take their missing genre / tags from the most similar
    live track by text embedding (``genre_source`` / ``tags_source`` = inherited, donors recorded)."""
    status = out.get_column(S.URL_STATUS).to_list() if S.URL_STATUS in out.columns else [None] * out.height
    dead = np.array([s == "DEAD" for s in status])
    ids = out.get_column(S.TRACK_ID).to_list()
    inherited = inherit_from_similar(track_ids=ids, vectors=vectors, has_text=has_text, recipients=dead, donors=~dead,
                                     genres=observed_genres, tags=observed_tags)
    genre, gsrc, conf = out.get_column(S.GENRE).to_list(), out.get_column(S.GENRE_SOURCE).to_list(), out.get_column(GENRE_CONFIDENCE).to_list()
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
        pl.Series(S.GENRE, genre, dtype=pl.Utf8), pl.Series(S.GENRE_SOURCE, gsrc, dtype=pl.Utf8),
        pl.Series(GENRE_CONFIDENCE, conf, dtype=pl.Float64), pl.Series(S.TAGS, tags, dtype=pl.Utf8),
        pl.Series(S.TAGS_SOURCE, tsrc, dtype=pl.Utf8), pl.Series(S.DONOR_TRACK_ID, gdonor, dtype=pl.Utf8),
        pl.Series(S.TAGS_DONOR_TRACK_ID, tdonor, dtype=pl.Utf8),
    )


def _md_table(df: pl.DataFrame) -> str:
    rows = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    for r in df.iter_rows():
        rows.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(rows)


@asset(group_name="audio", deps=[imputed_metadata, audio_features, text_embeddings], compute_kind="numpy")
def audio_features_imputed(context: AssetExecutionContext) -> MaterializeResult:
    """An audio feature vector for every music track: extracted where audio decoded, else imputed.

    Imputation = ensemble of text-kNN (neighbours with real audio only), an XGBoost regressor
    (text embedding + release year + log playback count → audio vector) and genre prototypes,
    weighted by held-out validation (MAE per feature group, cosine; in the metadata);
    ``audio_source`` and ``audio_confidence`` say which and how sure.
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
    year_of = dict(zip(tracks.get_column(S.TRACK_ID).to_list(), tracks.get_column(S.YEAR).cast(pl.Float64, strict=False).to_list()))
    plays_of = dict(zip(tracks.get_column(S.TRACK_ID).to_list(), tracks.get_column(S.PLAYBACK_COUNT).cast(pl.Float64, strict=False).to_list()))

    def meta_of(ids: list[str]) -> np.ndarray:
        """(len(ids), 2) release year and log1p playback count; NaN where the crawl has none."""
        year = [year_of.get(t) for t in ids]
        plays = [plays_of.get(t) for t in ids]
        return np.array([[np.nan if y is None else y, np.nan if p is None or p < 0 else np.log1p(p)]
                         for y, p in zip(year, plays)], dtype=np.float64).reshape(len(ids), 2)

    if target_ids and len(real_ids) >= 2:
        result = impute_audio_features(
            audio_ids=real_ids, audio_matrix=real_matrix, audio_text=vectors[real_rows],
            audio_has_text=has_text[real_rows], audio_genres=[genre_of.get(t) for t in real_ids],
            target_ids=target_ids, target_text=vectors[target_rows] if len(target_rows) else np.zeros((0, vectors.shape[1])),
            target_has_text=has_text[target_rows] if len(target_rows) else np.zeros(0, dtype=bool),
            target_genres=[genre_of.get(t) for t in target_ids],
            audio_meta=meta_of(real_ids), target_meta=meta_of(target_ids), feature_names=FEATURE_COLUMNS,
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
