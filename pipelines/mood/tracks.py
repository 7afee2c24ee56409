"""Every music track's (valence, arousal, confidence) from its audio, its text, its genre and tags,
and its artist's other tracks."""

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from pipelines import schema as S
from pipelines.heal.genres import GENRE_CONFIDENCE
from pipelines.mood.fusion import fuse_evidences, fuse_track_moods, pool_moods
from pipelines.mood.metadata_mood import artist_evidence, metadata_keys, prior_evidence
from pipelines.mood.metrics import pearson_r
from pipelines.mood.priors import TagPriors
from pipelines.mood.query import QueryMoodModel
from pipelines.mood.tags import TagMoodScorer, split_tags, track_tag_moods

# audio_source values that carry an audio feature vector (extracted or imputed)
AUDIO_VECTOR_SOURCES = ("extracted", "ensemble", "knn", "prototype", "regression")
_EXTRACTED = "extracted"
_OBSERVED = "observed"
# Columns whose text the query-mood model reads as words with affect (genre, music tags and artist
# names are read by the priors and the artist pooling instead).
FREE_TEXT_COLUMNS = (S.TITLE, S.DESCRIPTION, S.VIBE_TEXT)


@dataclass(frozen=True)
class TrackMoods:
    moods: pl.DataFrame  # track_id, valence, arousal, mood_source, mood_confidence
    evidence: dict[str, int]  # how many tracks had each kind of evidence
    agreement: dict[str, float]  # per axis: Pearson r of tag moods vs query-model moods where both exist


def _present(a: np.ndarray) -> np.ndarray:
    return np.isfinite(a[:, 0])


def has_free_text(metadata: pl.DataFrame) -> np.ndarray:
    """(n,) bool: rows with a title, an observed description or vibe text (``FREE_TEXT_COLUMNS``;
    a description whose ``description_source`` is not observed, e.g. synthetic, does not count)."""
    out = np.zeros(metadata.height, dtype=bool)
    for col in FREE_TEXT_COLUMNS:
        if col not in metadata.columns:
            continue
        ok = metadata.get_column(col).cast(pl.String).str.strip_chars().str.len_chars().fill_null(0) > 0
        if col == S.DESCRIPTION and S.DESCRIPTION_SOURCE in metadata.columns:
            ok = ok & (metadata.get_column(S.DESCRIPTION_SOURCE) == _OBSERVED).fill_null(False)
        out |= ok.to_numpy()
    return out


def _column(frame: pl.DataFrame, name: str) -> list:
    return frame.get_column(name).to_list() if name in frame.columns else [None] * frame.height


def metadata_prior_evidence(metadata: pl.DataFrame, priors: TagPriors, scorer: TagMoodScorer) -> np.ndarray:
    """(n, 3) genre/tag prior evidence of the rows of ``metadata`` (genre, genre_source,
    genre_confidence, tags, tags_source; absent columns count as null / observed)."""
    keys = [
        metadata_keys(genre=g, genre_source=gs, genre_confidence=gc, tags=t, tags_source=ts,
                      is_rated=lambda tag: scorer.tag_mood(tag) is not None)
        for g, gs, gc, t, ts in zip(*(_column(metadata, c) for c in (
            S.GENRE, S.GENRE_SOURCE, GENRE_CONFIDENCE, S.TAGS, S.TAGS_SOURCE)))
    ]
    return prior_evidence(keys, priors)


def track_moods(
    *,
    text_table: pl.DataFrame,
    vectors: np.ndarray,
    audio: pl.DataFrame,
    tags: pl.DataFrame,
    audio_model: Any,
    text_model: QueryMoodModel,
    scorer: TagMoodScorer,
    metadata: pl.DataFrame | None = None,
    priors: TagPriors | None = None,
) -> TrackMoods:
    """Moods of the tracks of ``text_table`` (track_id, text_doc, has_text; ``vectors`` row-aligned).

    Audio evidence: ``audio_model`` on the track's audio features (``audio``: track_id, features,
    audio_source, audio_confidence), discounted by the imputation confidence where imputed. Text
    evidence: ``text_model`` on the track's text pooled with the tag moods of its observed crawl tags
    (``tags``: track_id, tags).

    With ``metadata`` (the healed tracks: title, artist, description, vibe text, genre and tags with
    their ``*_source``) and ``priors``: the text model reads only tracks with free text
    (:func:`has_free_text`) or a mood word among their observed tags (a text made of a genre, music
    tags or an artist name alone carries no affect in its words); genre/tag priors and the artist's
    other tracks (:mod:`pipelines.mood.metadata_mood`) are two more evidences. Everything is fused by
    confidence (``fusion.fuse_evidences``); the source says which evidences a mood rests on (audio /
    imputed / text / genre / artist / fused).
    """
    ids = text_table.get_column(S.TRACK_ID).to_list()
    n = len(ids)
    audio = pl.DataFrame({S.TRACK_ID: ids}).join(audio, on=S.TRACK_ID, how="left")
    audio_pred = np.full((n, 3), np.nan)
    has_audio = audio.get_column(S.AUDIO_SOURCE).is_in(list(AUDIO_VECTOR_SOURCES)).fill_null(False).to_numpy()
    if has_audio.any():
        audio_pred[has_audio] = audio_model.predict(audio.filter(pl.Series(has_audio)))
        conf = audio.get_column(S.AUDIO_CONFIDENCE).fill_null(0.0).to_numpy()
        audio_pred[has_audio, 2] *= conf[has_audio]
    is_imputed = (audio.get_column(S.AUDIO_SOURCE) != _EXTRACTED).fill_null(True).to_numpy()
    meta = None
    if metadata is not None:
        meta = pl.DataFrame({S.TRACK_ID: ids}).join(metadata, on=S.TRACK_ID, how="left")
    tracks = pl.DataFrame({S.TRACK_ID: ids}).join(tags.select(S.TRACK_ID, S.TAGS), on=S.TRACK_ID, how="left")
    tag_lists = [split_tags(t) for t in tracks.get_column(S.TAGS).to_list()]
    tag_pred = track_tag_moods(tags=tag_lists, lexicon=scorer.lexicon, scorer=scorer)
    query_pred = np.full((n, 3), np.nan)
    has_text = text_table.get_column("has_text").to_numpy().astype(bool)
    if meta is not None:  # free text, or observed tags with a mood word among them
        has_text = has_text & (has_free_text(meta) | _present(tag_pred))
    if has_text.any():
        docs = text_table.get_column(S.TEXT_DOC).to_list()
        rows = np.where(has_text)[0]
        query_pred[rows] = text_model.predict([docs[i] for i in rows], embeddings=vectors[rows])
    text_pred = pool_moods(preds=[query_pred, tag_pred])
    evidence: dict[str, int] = {}
    if meta is None or priors is None:
        moods = fuse_track_moods(track_ids=ids, audio_pred=audio_pred, audio_is_imputed=is_imputed,
                                 text_pred=text_pred)
    else:
        own = fuse_track_moods(track_ids=ids, audio_pred=audio_pred, audio_is_imputed=is_imputed,
                               text_pred=text_pred)
        own_pred = own.select(S.VALENCE, S.AROUSAL, S.MOOD_CONFIDENCE).to_numpy().astype(np.float64)
        artist_pred = artist_evidence(own_pred, _column(meta, S.ARTIST), float(np.mean(priors.artist_icc)))
        genre_pred = metadata_prior_evidence(meta, priors, scorer)
        moods = fuse_evidences(track_ids=ids, evidences=[
            (audio_pred, np.where(is_imputed, "imputed", "audio")), (text_pred, np.full(n, "text")),
            (genre_pred, np.full(n, "genre")), (artist_pred, np.full(n, "artist")),
        ])
        evidence = {"genre_prior": int(_present(genre_pred).sum()), "artist_pool": int(_present(artist_pred).sum()),
                    "text_without_free_text": int((text_table.get_column("has_text").to_numpy() & ~has_text).sum())}

    has_q, has_tag, has_a = _present(query_pred), _present(tag_pred), _present(audio_pred)
    evidence = {
        "audio_extracted": int((has_a & ~is_imputed).sum()),
        "audio_imputed": int((has_a & is_imputed).sum()),
        "query_model_text": int(has_q.sum()),
        "tracks_with_tags": int(sum(1 for t in tag_lists if t)),
        "tag_mood": int(has_tag.sum()),
        "tag_and_query_text": int((has_tag & has_q).sum()),
        "tag_only_text": int((has_tag & ~has_q).sum()),
        **evidence,
        "no_mood": int(moods.get_column(S.VALENCE).is_null().sum()),
    }
    both = has_tag & has_q
    agreement = {}
    if both.sum() >= 3:
        for j, axis in enumerate((S.VALENCE, S.AROUSAL)):
            agreement[f"tag_vs_query_r_{axis}"] = round(pearson_r(tag_pred[both, j], query_pred[both, j]), 4)
    return TrackMoods(moods=moods, evidence=evidence, agreement=agreement)
