"""Mood models and every track's place in valence–arousal space."""

import joblib
import numpy as np
import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.metadata import counts_md, png_md, value_counts
from assets.modelcache import reuses_model
from assets.resources import StoreResource
from assets.settings import MoodscapeSettings
from pipelines import schema as S
from pipelines.audio.acquire import extractor, feature_cache_name
from pipelines.audio.cache import extract_with_cache
from pipelines.audio.extract import EXTRACT_VERSION
from pipelines.audio.features import FEATURE_COLUMNS
from pipelines.errors import UnavailableError
from pipelines.mood import labels as moodlabels
from pipelines.mood import priors as moodpriors
from pipelines.mood.audio_model import fit_audio_mood_model
from pipelines.mood.audio_mood import fit_store_audio_mood_model, reference_clips
from pipelines.mood.backbone_features import TagPriorTable
from pipelines.mood.lexicon import GLASGOW_FILE, VADER_FILE, MoodLexicon
from pipelines.mood.priors import MTG_FILE, MUSICCAPS_FILE, TagPriors
from pipelines.mood.query import QueryMoodModel
from pipelines.mood.query_training import train_query_mood_model
from pipelines.mood.tags import MOODTHEME_FILE, scorer_for
from pipelines.mood.tracks import track_moods as mood_of_tracks
from pipelines.mood.word_mood import choose_tag_priors, selection_markdown
from pipelines.store import DATA_DIR, StoreLayout, atomic_path, read_model

TAG_PRIORS_MODEL = "tag_priors"
# Every shipped file the priors are learned from: the word norms (lexicon and tag scorer), the
# MTG-Jamendo tags and mood/theme vocabulary, the MusicCaps aspects.
TAG_PRIOR_DATA = (f"text/{GLASGOW_FILE}", f"text/{VADER_FILE}", MTG_FILE, MOODTHEME_FILE, MUSICCAPS_FILE)


@asset(group_name="mood", compute_kind="scikit-learn", code_version="1")
@reuses_model(
    artifact=lambda layout: layout.model("query_mood"), data=("text",),
    settings=lambda s: {"train_limit": s.query_mood_train_limit},
)
def query_mood_model(
    context: AssetExecutionContext, settings: MoodscapeSettings, store: StoreResource
) -> MaterializeResult:
    """Text → (valence, arousal, confidence): ridge heads over MiniLM embedding, encoder layer and
    lexicon features, trained on EmoBank (train split) and Glasgow-norm words (open data); every
    choice (Glasgow weight, penalty, per axis) by leave-one-out CV on EmoBank train. The encoder
    features of the fixed training texts are cached in the store by content, and the model is
    reused while its code, training data and settings are unchanged (``assets.modelcache``).
    """
    quick = settings.query_mood_train_limit is not None
    layout = store.layout()
    model, metrics = train_query_mood_model(
        data_dir=DATA_DIR,
        progress=settings.progress,
        limit=settings.query_mood_train_limit,
        cache=layout.array,
        **({"alphas": (1000.0,), "glasgow_weights": (0.1,)} if quick else {}),
    )
    if quick:
        context.log.warning(f"quick mode: trained on {settings.query_mood_train_limit} rows, one configuration")
    model.save(layout.model("query_mood"))
    flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}
    flat.update({f"cv_{k}": float(v) for k, v in metrics["cv_full"].items()})
    return MaterializeResult(metadata={**flat, "metrics": MetadataValue.json(metrics)})


# The code version: raise it when the priors' code (pipelines.mood.priors, lexicon, tags) changes them.
@asset(group_name="mood", compute_kind="numpy", code_version="1")
@reuses_model(artifact=lambda layout: layout.model(TAG_PRIORS_MODEL), data=TAG_PRIOR_DATA)
def tag_priors(context: AssetExecutionContext, store: StoreResource) -> MaterializeResult:
    """Genre, instrument and tempo word → mood: co-occurrence priors learned from the shipped tagged
    corpora (MTG-Jamendo genres/instruments × mood/theme tags, MusicCaps aspects; mood words read
    through the word norms, ``pipelines.mood.priors``), with their artist-disjoint CV reliability,
    cross-corpus transfer and artist intra-class correlation. Independent of the crawl: learned once
    and reused while its code and shipped data are unchanged (``assets.modelcache``); ``track_moods``
    and ``learned_ranker`` read the stored priors.
    """
    # Word-norm moods of the mood tags (not the query-mood model): as reliable by the priors'
    # artist-disjoint CV (r 0.31 / 0.29 vs 0.30 / 0.31), and seconds instead of minutes.
    priors = moodpriors.tag_priors(lexicon=MoodLexicon.from_files(data_dir=DATA_DIR), data_dir=DATA_DIR)
    path = store.layout().model(TAG_PRIORS_MODEL)
    with atomic_path(path, ".joblib") as tmp:
        joblib.dump(priors, tmp)
    return MaterializeResult(metadata={
        "priors": len(priors.priors),
        "prior_items": MetadataValue.json(priors.items),
        "prior_cv_r": MetadataValue.json([round(x, 4) for x in priors.reliability]),
        "prior_transfer_r": MetadataValue.json([round(x, 4) for x in priors.transfer]),
        "artist_icc": MetadataValue.json([round(x, 4) for x in priors.artist_icc]),
        "spread": MetadataValue.json([round(x, 4) for x in priors.spread]),
        "path": MetadataValue.path(str(path)),
    })


def stored_tag_priors(layout: StoreLayout) -> TagPriors:
    """The priors the ``tag_priors`` asset stored; UnavailableError, naming that asset, when they are
    missing or unreadable."""
    path = layout.model(TAG_PRIORS_MODEL)
    try:
        priors = read_model(path)
    except Exception as e:  # missing, truncated, or pickled by an incompatible release
        raise UnavailableError(
            f"no readable tag priors at {path} ({type(e).__name__}: {e}): materialize the tag_priors asset first"
        ) from e
    if not isinstance(priors, TagPriors):
        raise UnavailableError(
            f"{path} holds a {type(priors).__name__}, not tag priors: materialize the tag_priors asset again"
        )
    return priors


@asset(
    group_name="mood", deps=["emopia_audio"], compute_kind="scikit-learn",
    code_version=f"2-{EXTRACT_VERSION}",
)
@reuses_model(
    artifact=lambda layout: layout.model("audio_mood"), data=("audio", "corpus", "emopia/labels.csv", "text"),
    upstream=("emopia_audio",),
)
def audio_mood_model(
    context: AssetExecutionContext, settings: MoodscapeSettings, store: StoreResource
) -> MaterializeResult:
    """Audio → (valence, arousal, confidence): a classifier trained on labelled audio, mixed with the
    audio backbone's music knowledge by a domain gate (``pipelines.mood.audio_mood``).

    The classifier: librosa vector → per-axis sign, trained on EMOPIA train clips (quadrant →
    valence/arousal signs) and the immich mood folders (targets from the Glasgow norms of the
    folder's mood word); the candidate per axis is chosen by song-grouped cross-validation on the
    train rows, its probabilities calibrated (sigmoid or isotonic, by CV log-loss). The backbone part:
    tag probabilities × co-occurrence tag priors (MTG-Jamendo, MusicCaps; mood words read through
    the word norms, optionally widened by a word regressor — ``pipelines.mood.word_mood``, the
    variant chosen on shipped labelled audio only; never the query-mood model, so retraining that
    model leaves this one unchanged), scaled on the diverse reference clips (immich, librosa examples), and a tag-logit
    arousal classifier fitted on the EMOPIA train clips; the gate tells EMOPIA train clips from those
    reference clips. The song-disjoint EMOPIA val split is scored once
    afterwards and influences nothing.
    """
    rendered = store.load("emopia_audio").filter(pl.col("render_error").is_null())
    emopia_items = list(zip(rendered.get_column("clip_id").to_list(), rendered.get_column("audio_path").to_list()))
    immich = moodlabels.immich_labels(data_dir=DATA_DIR, lexicon=MoodLexicon.from_files(data_dir=DATA_DIR))
    immich_items = list(zip(immich.get_column(S.TRACK_ID).to_list(), immich.get_column("path").to_list()))
    reference_items = reference_clips(data_dir=DATA_DIR)
    # Same content-keyed cache as `audio_features`: the demo corpus's clips are decoded once.
    feats, stats = extract_with_cache(
        items=emopia_items + immich_items + reference_items,
        cache_path=store.layout().table(feature_cache_name(0.0)),
        extract=extractor(workers=settings.workers, progress=settings.progress),
    )
    feats = feats.filter(pl.col(S.AUDIO_ERROR).is_null())
    emopia = moodlabels.emopia_labels(data_dir=DATA_DIR).rename({moodlabels.CLIP_ID: S.TRACK_ID})
    labels = pl.concat(
        [
            emopia.select(S.TRACK_ID, moodlabels.SPLIT, moodlabels.VALENCE_SIGN, moodlabels.AROUSAL_SIGN),
            immich.filter(pl.col(S.VALENCE).is_not_null())
            .select(S.TRACK_ID, S.VALENCE, S.AROUSAL)
            .with_columns(pl.lit("train").alias(moodlabels.SPLIT)),
        ],
        how="diagonal_relaxed",
    )
    # Fit on the train split only: EMOPIA val stays unseen by selection, calibration and fitting,
    # so the val numbers here and `moodscape evaluate` on the val clips measure generalisation.
    trained, metrics = fit_audio_mood_model(
        features=feats, labels=labels, feature_columns=list(FEATURE_COLUMNS), refit_on_all=False
    )
    priors = choose_tag_priors(
        lexicon=MoodLexicon.from_files(data_dir=DATA_DIR),
        data_dir=DATA_DIR,
        audio=feats,
        emopia=emopia.filter(pl.col(moodlabels.SPLIT) == "train"),
    )
    train_ids = labels.filter(pl.col(moodlabels.SPLIT) == "train").get_column(S.TRACK_ID).to_list()
    model, gate_metrics = fit_store_audio_mood_model(
        trained=trained,
        training_audio=feats.filter(pl.col(S.TRACK_ID).is_in([t for t, _ in emopia_items]))
        .filter(pl.col(S.TRACK_ID).is_in(train_ids)),
        reference_audio=feats.filter(pl.col(S.TRACK_ID).is_in([t for t, _ in immich_items + reference_items])),
        priors=TagPriorTable.from_priors(priors),
        arousal_signs=emopia.filter(pl.col(moodlabels.SPLIT) == "train").select(S.TRACK_ID, moodlabels.AROUSAL_SIGN),
    )
    with atomic_path(store.layout().model("audio_mood"), ".joblib") as tmp:
        joblib.dump(model, tmp)
    flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}
    meta: dict = {**flat, **stats, **{k: v for k, v in gate_metrics.items() if isinstance(v, (int, float))}}
    meta["prior_scale"] = MetadataValue.json(gate_metrics["prior_scale"])
    meta["tag_prior_items"] = MetadataValue.json(priors.items)
    meta["tag_prior_reader"] = priors.selection["chosen"]
    meta["tag_prior_selection"] = MetadataValue.md(selection_markdown(priors.selection))
    meta |= _val_of_model(model, feats, labels)
    for axis, c in metrics["chosen"].items():
        meta[f"chosen_{axis}"] = f"{c['kind']} {c['param']:g} (CV acc {c['cv_acc']:.3f})"
        meta[f"calibration_{axis}"] = metrics["calibration"][axis]["method"]
    for name in ("val", "val_uncalibrated", "val_plan_baseline"):
        for k, v in metrics.get(name, {}).items():
            if isinstance(v, float):
                meta[f"{name}_{k}"] = round(v, 4)
    meta["cv_table"] = MetadataValue.md(_cv_table_md(metrics))
    if "val" in metrics:
        meta["val_reliability"] = png_md(_reliability_plot(metrics["val"]["reliability"]))
    meta["metrics"] = MetadataValue.json(metrics)
    return MaterializeResult(metadata=meta)


def _val_of_model(model, feats: pl.DataFrame, labels: pl.DataFrame) -> dict:
    """EMOPIA val sign and quadrant accuracy of the whole model (gate included)."""
    val = feats.join(labels.filter(pl.col(moodlabels.SPLIT) == "val"), on=S.TRACK_ID, how="inner")
    if val.height == 0:
        return {}
    pred = model.predict(val)
    yv, ya = val.get_column(moodlabels.VALENCE_SIGN).to_numpy(), val.get_column(moodlabels.AROUSAL_SIGN).to_numpy()
    ok_v, ok_a = np.sign(pred[:, 0]) == yv, np.sign(pred[:, 1]) == ya
    return {
        "val_model_valence_sign_acc": round(float(ok_v.mean()), 4),
        "val_model_arousal_sign_acc": round(float(ok_a.mean()), 4),
        "val_model_quadrant_acc": round(float((ok_v & ok_a).mean()), 4),
    }


def _cv_table_md(metrics: dict) -> str:
    """Markdown: one row per candidate, grouped-CV (train only) scores per axis and OOF quadrant acc."""
    head = (
        "| candidate | valence acc | valence AUC | valence log-loss "
        "| arousal acc | arousal AUC | arousal log-loss | quadrant acc |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for name, axes in metrics["cv"].items():
        v, a = axes.get("valence", {}), axes.get("arousal", {})
        cells = [f"{d.get(k, float('nan')):.3f}" for d in (v, a) for k in ("acc", "auc", "log_loss")]
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {metrics['cv_quadrant_acc'].get(name, float('nan')):.3f} |"
        )
    return "\n".join(lines)


def _reliability_plot(bins: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    for axis, rows in bins.items():
        ax.plot([r["p_mean"] for r in rows], [r["rate"] for r in rows], marker="o", label=axis)
    ax.set(
        xlim=(0, 1), ylim=(0, 1), xlabel="predicted P(axis > 0)", ylabel="observed rate", title="EMOPIA val reliability"
    )
    ax.legend(loc="upper left", fontsize=8)
    plt.close(fig)
    return fig


def _scatter(df: pl.DataFrame):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    for source in sorted(df.get_column(S.MOOD_SOURCE).unique().to_list()):
        part = df.filter(pl.col(S.MOOD_SOURCE) == source)
        ax.scatter(
            part.get_column(S.VALENCE), part.get_column(S.AROUSAL), s=4, alpha=0.4, label=f"{source} ({part.height})"
        )
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set(xlim=(-1, 1), ylim=(-1, 1), xlabel="valence", ylabel="arousal", title="track moods")
    ax.legend(loc="lower left", fontsize=7, markerscale=3)
    plt.close(fig)
    return fig


@asset(
    group_name="mood",
    deps=["audio_features_imputed", "text_embeddings", "music_tracks", "imputed_metadata", "query_mood_model",
          "audio_mood_model", "tag_priors"],
    compute_kind="numpy",
    code_version="1",
)
def track_moods(context: AssetExecutionContext, store: StoreResource) -> MaterializeResult:
    """(valence, arousal) in [-1, 1] for every music track, with ``mood_source`` and confidence.

    Evidence (``pipelines.mood.tracks``), fused by confidence (``mood.fuse_evidences``):
    - audio: the audio model on extracted features (audio) or on imputed features (imputed,
      discounted by the imputation confidence);
    - text: the query-mood model on the track's text where it has free text (title, observed
      description, vibe text), pooled with the word-norm moods of its observed crawl tags;
    - genre: co-occurrence priors of its genres and of its tags the norms cannot rate (the stored
      ``tag_priors``, MTG-Jamendo and MusicCaps; imputed genres count by their
      imputation confidence, imputed tags less), weighted by how well they carry across corpora;
    - artist: the mean mood of the artist's other tracks, with empirical-Bayes shrinkage confidence
      from the MTG-Jamendo intra-artist correlation.
    ``mood_source`` names the evidence (audio / imputed / text / genre / artist, or fused when the
    track's own audio or text is combined with more); a track with no evidence keeps a null mood.
    """
    layout = store.layout()
    table, vectors = store.text_embeddings()
    lexicon = MoodLexicon.from_files(data_dir=DATA_DIR)
    priors = stored_tag_priors(layout)
    result = mood_of_tracks(
        text_table=table,
        vectors=vectors,
        audio=store.load("audio_features_imputed"),
        tags=store.load("music_tracks"),
        audio_model=read_model(layout.model("audio_mood")),
        text_model=QueryMoodModel.load(layout.model("query_mood")),
        scorer=scorer_for(lexicon=lexicon, data_dir=DATA_DIR),
        metadata=store.load("imputed_metadata"),
        priors=priors,
    )
    moods = result.moods
    store.write(moods, "track_moods")
    return MaterializeResult(
        metadata={
            "tracks": moods.height,
            "by_source": counts_md(value_counts(moods, S.MOOD_SOURCE), key="mood_source"),
            "evidence": counts_md(result.evidence, key="evidence", value="tracks"),
            **{f"evidence_{k}": v for k, v in result.evidence.items()},
            **result.agreement,
            "tag_priors": len(priors.priors),  # their reliability figures: the tag_priors asset
            "mean_confidence": round(float(moods.get_column(S.MOOD_CONFIDENCE).mean() or 0.0), 4),
            "scatter": png_md(_scatter(moods.filter(pl.col(S.MOOD_SOURCE).is_not_null()))),
        }
    )
