"""Every music track's (valence, arousal, confidence) from its audio and its text evidence."""

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from pipelines import schema as S
from pipelines.mood.fusion import fuse_track_moods, pool_moods
from pipelines.mood.metrics import pearson_r
from pipelines.mood.query import QueryMoodModel
from pipelines.mood.tags import TagMoodScorer, split_tags, track_tag_moods

# audio_source values that carry an audio feature vector (extracted or imputed)
AUDIO_VECTOR_SOURCES = ("extracted", "ensemble", "knn", "prototype", "regression")
_EXTRACTED = "extracted"


@dataclass(frozen=True)
class TrackMoods:
    moods: pl.DataFrame  # track_id, valence, arousal, mood_confidence, mood_source
    evidence: dict[str, int]  # how many tracks had each kind of evidence
    agreement: dict[str, float]  # per axis: Pearson r of tag moods vs query-model moods where both exist


def track_moods(
    *,
    text_table: pl.DataFrame,
    vectors: np.ndarray,
    audio: pl.DataFrame,
    tags: pl.DataFrame,
    audio_model: Any,
    text_model: QueryMoodModel,
    scorer: TagMoodScorer,
) -> TrackMoods:
    """Moods of the tracks of ``text_table`` (track_id, text_doc, has_text; ``vectors`` row-aligned).

    Audio evidence: ``audio_model`` on the track's audio features (``audio``: track_id, features,
    audio_source, audio_confidence), discounted by the imputation confidence where imputed. Text
    evidence: ``text_model`` on the track's text pooled with the tag moods of its observed crawl tags
    (``tags``: track_id, tags). Audio and text are fused by confidence where both exist.
    """
    ids = text_table.get_column(S.TRACK_ID).to_list()
    audio = pl.DataFrame({S.TRACK_ID: ids}).join(audio, on=S.TRACK_ID, how="left")
    n = len(ids)
    audio_pred = np.full((n, 3), np.nan)
    has_audio = audio.get_column(S.AUDIO_SOURCE).is_in(list(AUDIO_VECTOR_SOURCES)).fill_null(False).to_numpy()
    if has_audio.any():
        audio_pred[has_audio] = audio_model.predict(audio.filter(pl.Series(has_audio)))
        conf = audio.get_column(S.AUDIO_CONFIDENCE).fill_null(0.0).to_numpy()
        audio_pred[has_audio, 2] *= conf[has_audio]
    is_imputed = (audio.get_column(S.AUDIO_SOURCE) != _EXTRACTED).fill_null(True).to_numpy()
    query_pred = np.full((n, 3), np.nan)
    has_text = text_table.get_column("has_text").to_numpy()
    if has_text.any():
        docs = text_table.get_column(S.TEXT_DOC).to_list()
        rows = np.where(has_text)[0]
        query_pred[rows] = text_model.predict([docs[i] for i in rows], embeddings=vectors[rows])
    tracks = pl.DataFrame({S.TRACK_ID: ids}).join(tags.select(S.TRACK_ID, S.TAGS), on=S.TRACK_ID, how="left")
    tag_lists = [split_tags(t) for t in tracks.get_column(S.TAGS).to_list()]
    tag_pred = track_tag_moods(tags=tag_lists, lexicon=scorer.lexicon, scorer=scorer)
    text_pred = pool_moods(preds=[query_pred, tag_pred])
    moods = fuse_track_moods(track_ids=ids, audio_pred=audio_pred, audio_is_imputed=is_imputed, text_pred=text_pred)

    def present(a: np.ndarray) -> np.ndarray:
        return np.isfinite(a[:, 0])

    has_q, has_tag, has_a = present(query_pred), present(tag_pred), present(audio_pred)
    evidence = {
        "audio_extracted": int((has_a & ~is_imputed).sum()),
        "audio_imputed": int((has_a & is_imputed).sum()),
        "query_model_text": int(has_q.sum()),
        "tracks_with_tags": int(sum(1 for t in tag_lists if t)),
        "tag_mood": int(has_tag.sum()),
        "tag_and_query_text": int((has_tag & has_q).sum()),
        "tag_only_text": int((has_tag & ~has_q).sum()),
    }
    both = has_tag & has_q
    agreement = {}
    if both.sum() >= 3:
        for j, axis in enumerate((S.VALENCE, S.AROUSAL)):
            agreement[f"tag_vs_query_r_{axis}"] = round(pearson_r(tag_pred[both, j], query_pred[both, j]), 4)
    return TrackMoods(moods=moods, evidence=evidence, agreement=agreement)
