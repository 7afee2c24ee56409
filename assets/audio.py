"""Audio features: extracted from local or fetched audio, then completed by imputation."""

import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.fetch import fetch_table
from assets.metadata import counts_md, json_counts, value_counts
from assets.resources import StoreResource
from assets.settings import MoodscapeSettings
from pipelines import schema as S
from pipelines.audio.acquire import AUDIO_ORIGIN, FETCHED, acquire_audio, extract_audio_features, feature_cache_name
from pipelines.audio.complete import complete_audio_features
from pipelines.audio.extract import EXTRACT_S, EXTRACT_VERSION
from pipelines.audio.features import FEATURE_COLUMNS


@asset(
    group_name="audio", deps=["raw_tracks", "audio_fetch"], compute_kind="librosa", code_version=f"1-{EXTRACT_VERSION}"
)
def audio_features(
    context: AssetExecutionContext, settings: MoodscapeSettings, store: StoreResource
) -> MaterializeResult:
    """librosa features (one STFT shared by every spectral feature) and the musicnn backbone's tag
    probabilities and embeddings (``pipelines.audio.backbone``), from one decode of 30 s from
    ``audio_offset_s`` (``MOODSCAPE_AUDIO_OFFSET_S``), for every track with audio.

    Audio comes from ``audio_path`` or, for the other tracks, from the download the ``audio_fetch``
    shards recorded (this asset sends no request). A track with neither keeps its fetch reason in
    ``audio_fetch``. Cached by file content key (one cache per offset), so re-runs decode only new or
    changed files; a failing file gets an ``audio_error`` row and never fails the batch.
    """
    got = acquire_audio(raw=store.load("raw_tracks"), fetch_table=fetch_table(store))
    offset = settings.audio_offset_s
    feats, stats = extract_audio_features(
        acquisition=got,
        cache_path=store.layout().table(feature_cache_name(offset)),
        workers=settings.workers,
        progress=settings.progress,
        offset=offset,
    )
    store.write(feats, "audio_features")
    errors = feats.filter(pl.col(S.AUDIO_ERROR).is_not_null())
    fresh = feats.filter(pl.col(EXTRACT_S) > 0) if EXTRACT_S in feats.columns else feats
    missing = got.without_audio
    return MaterializeResult(
        metadata={
            "tracks_with_audio": len(got.items),
            "tracks_with_local_audio": got.local,
            "tracks_with_fetched_audio": got.fetched,
            "dims": len(FEATURE_COLUMNS),
            "errors": errors.height,
            "decode_errors_fetched": errors.filter(pl.col(AUDIO_ORIGIN) == FETCHED).height,
            "offset_s": offset,
            **stats,
            "mean_extract_s": round(float(fresh.get_column(EXTRACT_S).mean() or 0.0), 4) if fresh.height else 0.0,
            "without_audio_reasons": counts_md(value_counts(missing, S.REASON), key="reason")
            if missing.height
            else "none",
        }
    )


@asset(
    group_name="audio", deps=["imputed_metadata", "audio_features", "text_embeddings"], compute_kind="numpy",
    code_version="1",
)
def audio_features_imputed(context: AssetExecutionContext, store: StoreResource) -> MaterializeResult:
    """An audio feature vector for every music track: extracted where audio decoded, else imputed.

    Imputation = ensemble of text-kNN (neighbours with real audio only), an XGBoost regressor
    (text embedding + release year + log playback count → audio vector) and genre prototypes,
    weighted by held-out validation (MAE per feature group, cosine; in the metadata);
    ``audio_source`` and ``audio_confidence`` say which and how sure.
    """
    table, vectors = store.text_embeddings()
    out, validation = complete_audio_features(
        tracks=store.load("imputed_metadata"),
        features=store.load("audio_features").filter(pl.col(S.AUDIO_ERROR).is_null()),
        text_table=table,
        vectors=vectors,
    )
    store.write(out, "audio_features_imputed")
    return MaterializeResult(
        metadata={
            "tracks": out.height,
            "by_source": json_counts(out, S.AUDIO_SOURCE),
            "validation": MetadataValue.json(validation),
        }
    )
