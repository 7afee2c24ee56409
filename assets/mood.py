"""Mood models and every track's place in valence–arousal space."""

import joblib
import numpy as np
import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.common import load, png_md, value_counts, counts_md
from assets.enrich import audio_features_imputed, load_text_embeddings, text_embeddings
from assets.heal import _extract, emopia_audio
from assets.settings import MoodscapeSettings
from pipelines import schema as S
from pipelines.audio import FEATURE_COLUMNS
from pipelines.audiocache import extract_with_cache
from pipelines.lexicon import MoodLexicon
from pipelines.querymood import QueryMoodModel, train_query_mood_model
from pipelines.store import DATA_DIR, model_path, table_path, write_table, atomic_path
from pipelines import mood as moodlib


@asset(group_name="mood", compute_kind="scikit-learn")
def query_mood_model(context: AssetExecutionContext, settings: MoodscapeSettings) -> MaterializeResult:
    """Text → (valence, arousal, confidence): MiniLM embedding + lexicon features → regressor.

    Trained on EmoBank (train split) and Glasgow-norm words (open data); chosen and reported on the
    EmoBank dev split against a lexicon-only baseline.
    """
    quick = settings.query_mood_train_limit is not None
    model, metrics = train_query_mood_model(
        data_dir=DATA_DIR, progress=settings.progress, limit=settings.query_mood_train_limit,
        **({"candidates": [("ridge", 1.0)], "n_ensemble": 2} if quick else {}),
    )
    if quick:
        context.log.warning(f"quick mode: trained on {settings.query_mood_train_limit} rows with one ridge candidate")
    model.save(model_path("query_mood"))
    flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}
    return MaterializeResult(metadata={**flat, "metrics": MetadataValue.json(metrics)})


@asset(group_name="mood", deps=[emopia_audio], compute_kind="scikit-learn")
def audio_mood_model(context: AssetExecutionContext, settings: MoodscapeSettings) -> MaterializeResult:
    """Audio features → (valence, arousal, confidence), trained on real labelled audio.

    EMOPIA train clips (quadrant → valence/arousal signs) and the immich mood folders (targets from
    the Glasgow norms of the folder's mood word); evaluated on the song-disjoint EMOPIA val split
    against the plan's hand-weighted formula.
    """
    rendered = load("emopia_audio").filter(pl.col("render_error").is_null())
    emopia_items = list(zip(rendered.get_column("clip_id").to_list(), rendered.get_column("audio_path").to_list()))
    immich = moodlib.immich_labels(data_dir=DATA_DIR, lexicon=MoodLexicon.from_files(data_dir=DATA_DIR))
    immich_items = list(zip(immich.get_column(S.TRACK_ID).to_list(), immich.get_column("path").to_list()))
    # Same content-keyed cache as `audio_features`: the demo corpus's clips are decoded once.
    feats, stats = extract_with_cache(items=emopia_items + immich_items, cache_path=table_path("audio_feature_cache"), extract=_extract(settings))
    feats = feats.filter(pl.col(S.AUDIO_ERROR).is_null())
    emopia = moodlib.emopia_labels(data_dir=DATA_DIR).rename({moodlib.CLIP_ID: S.TRACK_ID})
    labels = pl.concat([
        emopia.select(S.TRACK_ID, moodlib.SPLIT, moodlib.VALENCE_SIGN, moodlib.AROUSAL_SIGN),
        immich.filter(pl.col(S.VALENCE).is_not_null()).select(S.TRACK_ID, S.VALENCE, S.AROUSAL).with_columns(pl.lit("train").alias(moodlib.SPLIT)),
    ], how="diagonal_relaxed")
    # Fit on the train split only: EMOPIA val stays unseen, so `moodscape evaluate` on the val
    # clips measures generalisation (val is still used to pick among the candidate models).
    model, metrics = moodlib.fit_audio_mood_model(
        features=feats, labels=labels, feature_columns=list(FEATURE_COLUMNS), refit_on_all=False,
    )
    path = model_path("audio_mood")
    with atomic_path(path, ".joblib") as tmp:
        joblib.dump(model, tmp)
    flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}
    return MaterializeResult(metadata={**flat, **stats, "metrics": MetadataValue.json(metrics)})


def _scatter(df: pl.DataFrame):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    for source in sorted(df.get_column(S.MOOD_SOURCE).unique().to_list()):
        part = df.filter(pl.col(S.MOOD_SOURCE) == source)
        ax.scatter(part.get_column(S.VALENCE), part.get_column(S.AROUSAL), s=4, alpha=0.4, label=f"{source} ({part.height})")
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set(xlim=(-1, 1), ylim=(-1, 1), xlabel="valence", ylabel="arousal", title="track moods")
    ax.legend(loc="lower left", fontsize=7, markerscale=3)
    plt.close(fig)
    return fig


@asset(group_name="mood", deps=[audio_features_imputed, text_embeddings, query_mood_model, audio_mood_model], compute_kind="numpy")
def track_moods(context: AssetExecutionContext) -> MaterializeResult:
    """(valence, arousal) in [-1, 1] for every music track, with ``mood_source`` and confidence.

    Audio model on extracted features (source audio) or on imputed features (source imputed,
    discounted by the imputation confidence); the query-mood model on the track's text (source
    text); fused by confidence where both exist.
    """
    audio = load("audio_features_imputed")
    table, vectors = load_text_embeddings()
    ids = table.get_column(S.TRACK_ID).to_list()
    audio = pl.DataFrame({S.TRACK_ID: ids}).join(audio, on=S.TRACK_ID, how="left")
    audio_model = joblib.load(model_path("audio_mood"))
    text_model = QueryMoodModel.load(model_path("query_mood"))
    n = len(ids)
    audio_pred = np.full((n, 3), np.nan)
    has_audio = audio.get_column(S.AUDIO_SOURCE).is_in(["extracted", "ensemble", "knn", "prototype", "regression"]).fill_null(False).to_numpy()
    if has_audio.any():
        audio_pred[has_audio] = audio_model.predict(audio.filter(pl.Series(has_audio)))
        conf = audio.get_column(S.AUDIO_CONFIDENCE).fill_null(0.0).to_numpy()
        audio_pred[has_audio, 2] *= conf[has_audio]
    is_imputed = (audio.get_column(S.AUDIO_SOURCE) != "extracted").fill_null(True).to_numpy()
    text_pred = np.full((n, 3), np.nan)
    has_text = table.get_column("has_text").to_numpy()
    if has_text.any():
        docs = table.get_column(S.TEXT_DOC).to_list()
        rows = np.where(has_text)[0]
        text_pred[rows] = text_model.predict([docs[i] for i in rows], embeddings=vectors[rows])
    moods = moodlib.fuse_track_moods(track_ids=ids, audio_pred=audio_pred, audio_is_imputed=is_imputed, text_pred=text_pred)
    write_table(moods, table_path("track_moods"))
    return MaterializeResult(metadata={
        "tracks": moods.height,
        "by_source": counts_md(value_counts(moods, S.MOOD_SOURCE), key="mood_source"),
        "mean_confidence": round(float(moods.get_column(S.MOOD_CONFIDENCE).mean() or 0.0), 4),
        "scatter": png_md(_scatter(moods)),
    })
