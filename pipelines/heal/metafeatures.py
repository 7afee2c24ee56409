"""Per-track metadata features (release year, era, recency, popularity, artist stats, richness).

Everything is derived from what the crawl observed; what it lacks stays null (an unknown year gives a
null era and recency, an unknown playback count a null popularity). Vectorised polars throughout.
"""

from collections.abc import Sequence

import polars as pl

from pipelines import schema as S
from pipelines.heal.crawlvalues import YEAR_MIN

# recency_score = 0.5 ** (age / half-life), age = now_year − release_year clipped at 0.
RECENCY_HALF_LIFE_YEARS = 10.0
# Percentile (average rank among *known* counts / n) boundaries of the tiers
# low ≤ 0.5 < mid ≤ 0.9 < high ≤ 0.99 < viral; tied counts share a tier.
POPULARITY_TIER_CUTS: tuple[float, float, float] = (0.5, 0.9, 0.99)
POPULARITY_TIERS: tuple[str, str, str, str] = ("low", "mid", "high", "viral")
PROLIFIC_MIN_TRACKS = 5  # an artist with at least this many tracks in the table is prolific
# Plausible release years are YEAR_MIN .. now_year + 1; anything else counts as unknown.
# engagement_rate = (sum of the known counters among these, when the table has them) /
# playback_count; null when no such column exists, all are null for the row, or plays are unknown or 0.
ENGAGEMENT_COLUMNS: tuple[str, ...] = ("likes_count", "favoritings_count", "comment_count", "reposts_count")

# Output columns (feature names of this module).
RELEASE_YEAR = "release_year"
ERA = "era"
RECENCY_SCORE = "recency_score"
LOG_POPULARITY = "log_popularity"
POPULARITY_TIER = "popularity_tier"
ENGAGEMENT_RATE = "engagement_rate"
ARTIST_TRACK_COUNT = "artist_track_count"
ARTIST_AVG_PLAYBACK = "artist_avg_playback"
ARTIST_IS_PROLIFIC = "artist_is_prolific"
METADATA_RICHNESS = "metadata_richness"
TEXT_LENGTH = "text_length"
FEATURE_COLUMNS: tuple[str, ...] = (
    RELEASE_YEAR, ERA, RECENCY_SCORE, LOG_POPULARITY, POPULARITY_TIER, ENGAGEMENT_RATE,
    ARTIST_TRACK_COUNT, ARTIST_AVG_PLAYBACK, ARTIST_IS_PROLIFIC, METADATA_RICHNESS, TEXT_LENGTH,
)
# The fields metadata_richness counts (release year stands for "year": observed year or created_at).
RICHNESS_FIELDS: tuple[str, ...] = (S.TITLE, S.ARTIST, RELEASE_YEAR, S.GENRE, S.TAGS, S.DESCRIPTION, S.VIBE_TEXT)
TEXT_LENGTH_FIELDS: tuple[str, ...] = (S.TITLE, S.TAGS, S.DESCRIPTION, S.VIBE_TEXT)


def _col_or_null(frame: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Expr:
    return pl.col(name).cast(dtype, strict=False) if name in frame.columns else pl.lit(None, dtype=dtype)


def _clean_text(frame: pl.DataFrame, name: str) -> pl.Expr:
    """Stripped text with empty strings as null."""
    e = _col_or_null(frame, name, pl.Utf8()).str.strip_chars()
    return pl.when(e.str.len_chars() > 0).then(e).otherwise(None)


def metadata_features(*, tracks: pl.DataFrame, now_year: int) -> pl.DataFrame:
    """Metadata features per track.

    tracks: (n, ≥1) crawl-schema frame (needs ``track_id``; other crawl columns optional, missing =
    null). Returns (n, 1 + len(FEATURE_COLUMNS)) in row order: ``track_id`` then FEATURE_COLUMNS.
    O(n log n) time (popularity rank; the rest vectorised polars), O(n) memory.
    """
    if S.TRACK_ID not in tracks.columns:
        raise ValueError("tracks needs a track_id column")
    year_max = now_year + 1
    year = _col_or_null(tracks, S.YEAR, pl.Int32())
    created_year = (_col_or_null(tracks, S.CREATED_AT, pl.Utf8()).str.extract(r"^\s*(\d{4})", 1)
                    .cast(pl.Int32, strict=False))
    plausible = lambda e: pl.when(e.is_between(YEAR_MIN, year_max)).then(e).otherwise(None)
    plays = _col_or_null(tracks, S.PLAYBACK_COUNT, pl.Float64())
    plays = pl.when(plays >= 0).then(plays).otherwise(None)

    artist_key = _clean_text(tracks, S.ARTIST).str.to_lowercase()
    engagement_cols = [c for c in ENGAGEMENT_COLUMNS if c in tracks.columns]

    base = tracks.select(
        pl.col(S.TRACK_ID),
        pl.coalesce(plausible(year), plausible(created_year)).alias(RELEASE_YEAR),
        plays.alias("_plays"),
        artist_key.alias("_artist"),
        *[_clean_text(tracks, c).alias(f"_t_{c}")
          for c in sorted(set(RICHNESS_FIELDS) | set(TEXT_LENGTH_FIELDS)) if c != RELEASE_YEAR],
        (
            pl.sum_horizontal([pl.col(c).cast(pl.Float64, strict=False) for c in engagement_cols])
            if engagement_cols else pl.lit(None, dtype=pl.Float64)
        ).alias("_engaged"),
        (
            pl.any_horizontal([pl.col(c).is_not_null() for c in engagement_cols])
            if engagement_cols else pl.lit(False)
        ).alias("_has_engagement"),
    )

    age = (pl.lit(now_year) - pl.col(RELEASE_YEAR)).clip(lower_bound=0).cast(pl.Float64)
    n_known = pl.col("_plays").is_not_null().sum()
    pct = pl.col("_plays").rank(method="average") / n_known
    lo, mid, hi = POPULARITY_TIER_CUTS
    max_log = pl.col("_plays").log1p().max()
    richness_terms = [
        (pl.col(RELEASE_YEAR) if f == RELEASE_YEAR else pl.col(f"_t_{f}")).is_not_null().cast(pl.Float64)
        for f in RICHNESS_FIELDS
    ]
    out = base.with_columns(
        ((pl.col(RELEASE_YEAR) // 10 * 10).cast(pl.Utf8) + pl.lit("s")).alias(ERA),
        (pl.lit(0.5) ** (age / RECENCY_HALF_LIFE_YEARS)).alias(RECENCY_SCORE),
        pl.when(max_log > 0).then(pl.col("_plays").log1p() / max_log)
        .when(pl.col("_plays").is_not_null()).then(0.0).otherwise(None).alias(LOG_POPULARITY),
        pl.when(pl.col("_plays").is_null()).then(None)
        .when(pct <= lo).then(pl.lit(POPULARITY_TIERS[0]))
        .when(pct <= mid).then(pl.lit(POPULARITY_TIERS[1]))
        .when(pct <= hi).then(pl.lit(POPULARITY_TIERS[2]))
        .otherwise(pl.lit(POPULARITY_TIERS[3])).alias(POPULARITY_TIER),
        pl.when(pl.col("_has_engagement") & (pl.col("_plays") > 0))
        .then(pl.col("_engaged") / pl.col("_plays")).otherwise(None).alias(ENGAGEMENT_RATE),
        pl.when(pl.col("_artist").is_not_null()).then(pl.len().over("_artist")).otherwise(None)
        .cast(pl.Int64).alias(ARTIST_TRACK_COUNT),
        pl.when(pl.col("_artist").is_not_null()).then(pl.col("_plays").mean().over("_artist"))
        .otherwise(None).alias(ARTIST_AVG_PLAYBACK),
        (pl.sum_horizontal(richness_terms) / len(RICHNESS_FIELDS)).alias(METADATA_RICHNESS),
        pl.sum_horizontal([pl.col(f"_t_{f}").str.len_chars().fill_null(0) for f in TEXT_LENGTH_FIELDS])
        .cast(pl.Int64).alias(TEXT_LENGTH),
    ).with_columns(
        pl.when(pl.col(ARTIST_TRACK_COUNT).is_not_null())
        .then(pl.col(ARTIST_TRACK_COUNT) >= PROLIFIC_MIN_TRACKS).otherwise(None).alias(ARTIST_IS_PROLIFIC),
    )
    return out.select(S.TRACK_ID, *FEATURE_COLUMNS)


def _null_rates(frame: pl.DataFrame, columns: Sequence[str]) -> list[float | None]:
    """Share of null (or blank-string) values per column; 1.0 for a column the frame lacks."""
    if frame.height == 0:
        return [None for _ in columns]
    exprs = []
    for c in columns:
        if c not in frame.columns:
            exprs.append(pl.lit(1.0).alias(c))
            continue
        missing = pl.col(c).is_null()
        if frame.schema[c] == pl.Utf8:
            missing = missing | (pl.col(c).str.strip_chars().str.len_chars() == 0)
        exprs.append(missing.cast(pl.Float64).mean().alias(c))
    row = frame.select(exprs).row(0)
    return [float(v) for v in row]


def null_rate_table(*, before: pl.DataFrame, after: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """Null rates of ``columns`` before/after healing → (len(columns), 4):
    column, null_rate_before, null_rate_after, delta (after − before). Blank strings count as null;
    a column a frame lacks counts as entirely null; rates are null for an empty frame."""
    cols = list(columns)
    b, a = _null_rates(before, cols), _null_rates(after, cols)
    return pl.DataFrame(
        {
            "column": cols,
            "null_rate_before": b,
            "null_rate_after": a,
            "delta": [None if x is None or y is None else y - x for x, y in zip(b, a)],
        },
        schema={"column": pl.Utf8, "null_rate_before": pl.Float64, "null_rate_after": pl.Float64, "delta": pl.Float64},
    )
