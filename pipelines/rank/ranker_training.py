"""Training examples of the learned ranker, from the shipped data of a built store.

Labelled tracks (weak relevance, human labels only): MTG-Jamendo tracks through their mood/theme
tags (label mood = the tags' word-norm mood, ``TagMoodScorer``), EMOPIA **train** clips through
their Russell quadrant (label mood = the quadrant's corner at ±EMOPIA_CORNER) and the immich
tracks through their mood folder word (Glasgow norms). EMOPIA val clips are never used; the train
clips' stored moods come from the audio model fitted on those clips (in-sample, so optimistic).

Queries: EmoBank **train** sentences (target = their rated valence/arousal) and the MTG-Jamendo
mood/theme words (target = the word's norm mood). Relevance of a candidate with label mood l to a
query with target t, g = max(0, 1 − ‖l − t‖/√2) (the evaluation's graded gain):
``grade = 2·[same sign on both axes] + [g ≥ 0.75] + [g ≥ 0.9]`` (0–4).

No quantity is both label and feature: a Jamendo track's mood/theme tags define its label, so its
features come from a held-out view without them — its text doc and text vector are rebuilt from
the other tags, its mood re-derived from that text and its audio (``HeldOut``), its tag overlap
from the other tags. The candidates of a query emulate retrieval over the labelled tracks (the
top RETRIEVE_EACH by text, mood and audio similarity plus RANDOM_EACH at random) and are scored by
the same :func:`pipelines.rank.score.score` and :func:`pipelines.rank.features.feature_matrix` the
service uses. Model selection and the CV report are in :mod:`pipelines.rank.ranker_fit`.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines import schema as S
from pipelines.heal.democorpus import emopia_youtube_id, label_free_id
from pipelines.mood.tags import TagMoodScorer, combine_tag_moods
from pipelines.rank.features import TermIndex, feature_matrix, norm_term
from pipelines.rank.retrieve import AUDIO_SEED_K, Candidates
from pipelines.rank.score import TrackPriors, score
from pipelines.rank.understand import QueryReader

EMOPIA_CORNER = 0.5  # |valence| = |arousal| of an EMOPIA quadrant's label mood
MAX_PER_ARTIST = 4  # labelled Jamendo tracks per artist
MAX_JAMENDO = 1200
N_SENTENCES = 240
MIN_SENTENCE_AFFECT = 0.1  # EmoBank sentences with max(|v|, |a|) below this are near-neutral: skipped
RETRIEVE_EACH = 40
RANDOM_EACH = 20
KIND_JAMENDO, KIND_EMOPIA, KIND_IMMICH = "jamendo", "emopia", "immich"


@dataclass(frozen=True)
class LabelledPool:
    """The labelled tracks: rows into the store's tracks, label moods (m, 2), artist-like groups
    (folds never split one), their kind and the mood/theme tags held out of their features."""

    rows: np.ndarray
    label_va: np.ndarray
    groups: np.ndarray  # (m,) object: artist id / EMOPIA song / "immich"
    kinds: np.ndarray  # (m,) object
    held_tags: dict[int, list[str]]  # row → its tags without the mood/theme tags (Jamendo rows)


def grades(label_va: np.ndarray, target: Sequence[float]) -> np.ndarray:
    """(m,) int relevance grades 0–4 of label moods (m, 2) for one target (module docstring)."""
    t = np.asarray(target, np.float64)
    gain = np.maximum(0.0, 1.0 - np.linalg.norm(label_va - t[None, :], axis=1) / np.sqrt(2.0))
    same = ((label_va >= 0) == (t >= 0)[None, :]).all(axis=1)
    return (2 * same + (gain >= 0.75) + (gain >= 0.9)).astype(np.int32)


def labelled_pool(
    *, tracks: pl.DataFrame, mood_terms: Sequence[str], scorer: TagMoodScorer, emopia: pl.DataFrame,
    immich: pl.DataFrame, seed: int = 0,
) -> LabelledPool:
    """The labelled rows of ``tracks`` (module docstring). ``emopia``: clip_id, split, valence_sign,
    arousal_sign (``pipelines.mood.labels.emopia_labels``); ``immich``: path, valence, arousal
    (``immich_labels``; its track ids are file stems)."""
    row_of = {t: i for i, t in enumerate(tracks[S.TRACK_ID].to_list())}
    moods = {norm_term(m) for m in mood_terms}
    rows, va, groups, kinds, held = [], [], [], [], {}
    jam = tracks.with_row_index("_row").filter(pl.col(S.TRACK_ID).str.starts_with(f"{KIND_JAMENDO}:"))
    jam = jam.sample(fraction=1.0, shuffle=True, seed=seed)
    per_artist: dict[str, int] = {}
    for row, artist, tags in jam.select("_row", S.ARTIST, S.TAGS).iter_rows():
        tags = list(tags or [])
        mood_tags = [t for t in tags if norm_term(t) in moods]
        if not mood_tags or len(rows) >= MAX_JAMENDO or per_artist.get(artist, 0) >= MAX_PER_ARTIST:
            continue
        v, a, c = combine_tag_moods([m for m in (scorer.tag_mood(t) for t in mood_tags) if m is not None])
        if not np.isfinite(v) or c <= 0:
            continue
        per_artist[artist] = per_artist.get(artist, 0) + 1
        rows.append(row)
        va.append((v, a))
        groups.append(f"artist:{artist}")
        kinds.append(KIND_JAMENDO)
        held[int(row)] = [t for t in tags if norm_term(t) not in moods]
    for clip, vs, as_ in emopia.filter(pl.col("split") == "train").select(
        "clip_id", "valence_sign", "arousal_sign"
    ).iter_rows():
        row = row_of.get(label_free_id(prefix="emopia", key=clip))
        if row is not None:
            rows.append(row)
            va.append((EMOPIA_CORNER * vs, EMOPIA_CORNER * as_))
            groups.append(f"emopia:{emopia_youtube_id(clip_id=clip)}")
            kinds.append(KIND_EMOPIA)
    for path, v, a in immich.select("path", S.VALENCE, S.AROUSAL).iter_rows():
        stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        row = row_of.get(label_free_id(prefix="immich", key=stem))
        if row is not None and v is not None and a is not None:
            rows.append(row)
            va.append((v, a))
            groups.append("immich")
            kinds.append(KIND_IMMICH)
    return LabelledPool(
        rows=np.asarray(rows, np.int64), label_va=np.asarray(va, np.float64).reshape(-1, 2),
        groups=np.asarray(groups, dtype=object), kinds=np.asarray(kinds, dtype=object), held_tags=held,
    )


def training_queries(
    *, emobank: pl.DataFrame, mood_terms: Sequence[str], scorer: TagMoodScorer, seed: int = 0
) -> pl.DataFrame:
    """Columns query, valence, arousal (targets): N_SENTENCES EmoBank train sentences (``emobank``:
    split, text, V, A on 1–5) that are not near-neutral, and the mood/theme words the norms rate."""
    eb = emobank.filter(pl.col("split") == "train").select(
        pl.col("text").alias("query"),
        ((pl.col("V") - 3.0) / 2.0).alias(S.VALENCE), ((pl.col("A") - 3.0) / 2.0).alias(S.AROUSAL),
    ).filter(
        (pl.max_horizontal(pl.col(S.VALENCE).abs(), pl.col(S.AROUSAL).abs()) >= MIN_SENTENCE_AFFECT)
        & (pl.col("query").str.strip_chars().str.len_chars() >= 12)
    ).unique("query", keep="first", maintain_order=True)
    eb = eb.sample(n=min(N_SENTENCES, eb.height), seed=seed, shuffle=True)
    words = []
    for term in dict.fromkeys(mood_terms):
        m = scorer.tag_mood(term)
        if m is not None and m.confidence > 0:
            words.append((term, float(m.valence), float(m.arousal)))
    tags = pl.DataFrame(words, schema=["query", S.VALENCE, S.AROUSAL], orient="row")
    return pl.concat([eb.cast({S.VALENCE: pl.Float64, S.AROUSAL: pl.Float64}), tags])


@dataclass(frozen=True)
class HeldOut:
    """The store's tracks and vectors with the labelled Jamendo rows' mood/theme tags held out."""

    tracks: pl.DataFrame  # valence, arousal, mood_confidence, mood_source and tags replaced on those rows
    text_vectors: np.ndarray  # (n, 384) with those rows re-embedded


def held_out_view(
    *, tracks: pl.DataFrame, text_vectors: np.ndarray, pool: LabelledPool,
    docs_of: Callable[[list[int], list[list[str]]], list[str]],
    encoder: Callable[[Sequence[str]], np.ndarray],
    moods_of: Callable[[list[int], list[str], np.ndarray, list[list[str]]], pl.DataFrame],
) -> HeldOut:
    """``docs_of(rows, tags)`` → the text docs of those rows with those tags; ``moods_of(rows,
    docs, vectors, tags)`` → their valence, arousal, mood_confidence, mood_source (row order)."""
    rows = sorted(pool.held_tags)
    tags = [pool.held_tags[r] for r in rows]
    docs = docs_of(rows, tags)
    vectors = np.array(text_vectors, dtype=np.float32, copy=True)
    if rows:
        vectors[rows] = np.asarray(encoder(docs), np.float32)
    moods = moods_of(rows, docs, vectors[rows], tags)
    idx = np.asarray(rows, np.int64)
    cols = {}
    for name, dtype in ((S.VALENCE, pl.Float32), (S.AROUSAL, pl.Float32), (S.MOOD_CONFIDENCE, pl.Float32),
                        (S.MOOD_SOURCE, pl.String)):
        values = tracks[name].cast(dtype).to_list()
        for i, v in zip(idx.tolist(), moods[name].cast(dtype).to_list()):
            values[i] = v
        cols[name] = pl.Series(name, values, dtype=dtype)
    all_tags = tracks[S.TAGS].to_list()
    for r, t in zip(rows, tags):
        all_tags[r] = t
    cols[S.TAGS] = pl.Series(S.TAGS, all_tags, dtype=pl.List(pl.String))
    return HeldOut(tracks=tracks.with_columns(**cols), text_vectors=vectors)


@dataclass(frozen=True)
class Examples:
    """Feature rows of every (query, candidate) pair, grouped by query (contiguous)."""

    x: np.ndarray  # (N, F) float32
    y: np.ndarray  # (N,) int32 grades
    qid: np.ndarray  # (N,) int64 query index
    group: np.ndarray  # (N,) object: the candidate's artist-like group
    hand: np.ndarray  # (N,) float32 hand scores (the baseline the ranker must beat)
    kind: np.ndarray  # (N,) object: the candidate's label source


def _audio_query(
    *, target: np.ndarray, va: np.ndarray, eligible: np.ndarray, weight: np.ndarray, audio: np.ndarray
) -> np.ndarray | None:
    """The service's mood-derived audio query: weighted mean audio vector of the AUDIO_SEED_K
    ``eligible`` rows nearest ``target`` (unit length), or None."""
    idx = np.flatnonzero(eligible)
    if len(idx) == 0:
        return None
    near = idx[np.argsort(np.linalg.norm(va[idx] - target[None, :], axis=1), kind="stable")[:AUDIO_SEED_K]]
    w = weight[near].astype(np.float64)
    w = w if w.sum() > 0 else np.ones_like(w)
    vec = (w[:, None] * audio[near]).sum(0) / w.sum()
    norm = np.linalg.norm(vec)
    return (vec / norm).astype(np.float32) if norm > 0 else None


def build_examples(
    *, held: HeldOut, audio_vectors: np.ndarray, pool: LabelledPool, queries: pl.DataFrame, reader: QueryReader,
    has_audio: np.ndarray, has_mood: np.ndarray, seed: int = 0,
) -> Examples:
    """Features, grades and hand scores of every training query over its emulated candidates."""
    rng = np.random.default_rng(seed)
    priors = TrackPriors.from_tracks(held.tracks, has_audio=has_audio, has_mood=has_mood)
    terms = TermIndex.from_tracks(held.tracks)
    in_pool = np.zeros(held.tracks.height, bool)
    in_pool[pool.rows] = True
    seed_ok = has_audio & has_mood & ~in_pool  # the labelled rows never shape their own audio query
    seed_weight = priors.mood_conf * priors.audio_conf
    va_all = np.nan_to_num(priors.va, nan=0.0)
    text_pool = held.text_vectors[pool.rows]
    audio_pool = audio_vectors[pool.rows]
    m = len(pool.rows)
    xs, ys, qids, gs, hands, kinds = [], [], [], [], [], []
    targets = queries.select(S.VALENCE, S.AROUSAL).to_numpy()
    for q, (text, target) in enumerate(zip(queries["query"].to_list(), targets)):
        qu = reader.understand(text)
        qva = np.array([qu.valence, qu.arousal], np.float32)
        tsim = text_pool @ qu.embedding
        aq = _audio_query(target=qva, va=va_all, eligible=seed_ok, weight=seed_weight, audio=audio_vectors)
        asim = np.full(m, np.nan, np.float32)
        if aq is not None:
            ok = has_audio[pool.rows]
            asim[ok] = audio_pool[ok] @ aq
        mdist = np.where(has_mood[pool.rows], np.linalg.norm(va_all[pool.rows] - qva, axis=1), np.inf)
        pick = np.unique(np.concatenate([
            np.argsort(-tsim)[:RETRIEVE_EACH], np.argsort(mdist)[:RETRIEVE_EACH],
            np.argsort(-np.nan_to_num(asim, nan=-np.inf))[:RETRIEVE_EACH] if aq is not None else [],
            rng.choice(m, size=min(RANDOM_EACH, m), replace=False),
        ]).astype(np.int64))
        order = np.argsort(pool.rows[pick])
        pick = pick[order]
        cands = Candidates(
            rows=pool.rows[pick], text_sim=tsim[pick].astype(np.float32), audio_sim=asim[pick], audio_query=aq,
            audio_query_source="none" if aq is None else "target_mood", merged=len(pick), text=None,
            _text_vectors=text_pool[pick], _decoded=np.ones(len(pick), bool),
        )
        sb = score(cands, qu, priors)
        xs.append(feature_matrix(cands, qu, priors, sb, terms=terms))
        ys.append(grades(pool.label_va[pick], target))
        qids.append(np.full(len(pick), q, np.int64))
        gs.append(pool.groups[pick])
        hands.append(np.asarray(sb.total, np.float32))
        kinds.append(pool.kinds[pick])
    return Examples(
        x=np.concatenate(xs), y=np.concatenate(ys), qid=np.concatenate(qids), group=np.concatenate(gs),
        hand=np.concatenate(hands), kind=np.concatenate(kinds),
    )
