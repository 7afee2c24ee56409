"""Co-occurrence priors: the mood a music word (genre, instrument, tempo or loudness descriptor) implies.

Word norms give genre and instrument words no affect ("rock" is a stone), yet listeners know that
metal is tense and new age calm. The shipped tagged corpora say so too: MTG-Jamendo tracks carry
genres and instruments *and* mood/theme tags; MusicCaps clips carry aspects that pair music words
("slow tempo", "techno", "female vocal") with mood words ("sad", "relaxing"). A key's prior is the
mean mood of the items that carry it, each item's mood taken from its *other* mood tags (scored by
a word-mood function, e.g. :meth:`pipelines.mood.tags.TagMoodScorer.tag_mood`), so a mood word's
own norm never explains itself.

Keys are normalised words (lower case, letters and digits only: "Hip-Hop" → "hiphop", "heavy
metal" → "heavymetal"); MusicCaps aspects also count for each of their words ("slow tempo" → "slow",
"tempo"). Confidence grows with support: ``n / (n + SUPPORT_HALF)``. Cost: one pass over the
corpora, O(items × tags).

Besides the means, the items give what a prior is worth for one track (used by
:mod:`pipelines.mood.metadata_mood`): the MTG-Jamendo items' mood spread; the correlation of the
priors of an item's keys with its mood, artist-disjoint cross-validated within MTG-Jamendo and
across corpora (priors of one corpus alone against the other's items); and the share of mood
variance between MTG-Jamendo artists (one-way ANOVA intra-class correlation).
"""

import ast
import re
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipelines import store
from pipelines.errors import InvalidInputError
from pipelines.mood.lexicon import MoodLexicon, resolve_open_file
from pipelines.mood.metrics import pearson_r
from pipelines.mood.tags import MOODTHEME_FILE, MOODTHEME_PREFIX, scorer_for

MTG_FILE = "corpus/mtg_jamendo_tags.csv"
MUSICCAPS_FILE = "corpus/musiccaps.csv"
SUPPORT_HALF = 25.0  # items at which a prior's confidence reaches one half
MIN_SUPPORT = 5  # fewer items: no prior
CV_FOLDS = 5  # artist-disjoint folds of the reliability estimate
# A prior used as mood evidence is its deviation in units of a spread: this many SDs reach ±1
# (the audio model's backbone prior and tag arousal, the metadata priors).
SPREAD_SDS = 2.0
_NON_ALNUM = re.compile(r"[^a-z0-9]+")

# (valence, arousal, confidence) of one mood word, or None when it has no mood.
WordMood = Callable[[str], tuple[float, float, float] | None]


@dataclass(frozen=True)
class TagPrior:
    valence: float
    arousal: float
    confidence: float
    support: int  # items behind the mean


def normalise(tag: str) -> str:
    """A tag's key: lower case, letters and digits only."""
    return _NON_ALNUM.sub("", tag.lower())


def _keys_of(tag: str, *, words: bool) -> set[str]:
    keys = {normalise(tag)}
    if words:
        keys |= {normalise(w) for w in tag.split()}
    return {k for k in keys if k}


class _Accumulator:
    def __init__(self) -> None:
        self.sums: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(3))  # Σw·v, Σw·a, Σw
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, keys: Iterable[str], mood: tuple[float, float, float]) -> None:
        v, a, w = mood
        if w <= 0:
            return
        for k in keys:
            self.sums[k] += (w * v, w * a, w)
            self.counts[k] += 1


def _pooled(moods: Sequence[tuple[float, float, float]]) -> tuple[float, float, float] | None:
    """Confidence-weighted mean mood of several mood words; weight = mean confidence."""
    if not moods:
        return None
    m = np.asarray(moods, dtype=np.float64)
    w = m[:, 2]
    if w.sum() <= 0:
        return None
    return float(np.average(m[:, 0], weights=w)), float(np.average(m[:, 1], weights=w)), float(w.mean())


@dataclass(frozen=True)
class Item:
    """One MTG-Jamendo track with a mood: its artist, its genre/instrument keys and its pooled mood."""

    artist: str | None
    keys: frozenset[str]
    mood: tuple[float, float, float]


def _mtg_items(path: Path, word_mood: WordMood, acc: _Accumulator) -> list[Item]:
    has_artist = "artist_id" in pl.read_csv(path, n_rows=0).columns
    cols = ["genres", "instruments", "moods"] + (["artist_id"] if has_artist else [])
    df = pl.read_csv(path, columns=cols).filter(pl.col("moods").is_not_null())
    items: list[Item] = []
    for row in df.iter_rows(named=True):
        mood = _pooled([m for m in (word_mood(t) for t in row["moods"].split("|")) if m is not None])
        if mood is None:
            continue
        tags = [t for col in (row["genres"], row["instruments"]) if col for t in col.split("|")]
        keys = frozenset(k for t in tags for k in _keys_of(t, words=False))
        acc.add(keys, mood)
        items.append(Item(artist=row.get("artist_id"), keys=keys, mood=mood))
    return items


def musiccaps_aspects(data_dir: Path) -> list[list[str]]:
    """Every MusicCaps clip's aspect list (clips whose list does not parse are left out)."""
    df = pl.read_csv(resolve_open_file(data_dir=data_dir, relative=MUSICCAPS_FILE), columns=["aspect_list"])
    out: list[list[str]] = []
    for (raw,) in df.iter_rows():
        try:
            out.append([str(a) for a in ast.literal_eval(raw)])
        except (ValueError, SyntaxError):
            continue
    return out


def _musiccaps_items(clips: Sequence[Sequence[str]], word_mood: WordMood, acc: _Accumulator) -> list[Item]:
    """Adds every aspect's keys with the clip's *other* mood aspects; returns one item per clip with
    a mood: the keys of its aspects that are not mood words, the pooled mood of those that are."""
    items: list[Item] = []
    for aspects in clips:
        scored = [(a, word_mood(a)) for a in aspects]
        moody = [(a, m) for a, m in scored if m is not None]
        if not moody:
            continue
        for aspect in aspects:
            mood = _pooled([m for a, m in moody if a != aspect])  # never explained by itself
            if mood is not None:
                acc.add(_keys_of(aspect, words=True), mood)
        whole = _pooled([m for _, m in moody])
        keys = frozenset(k for a, m in scored if m is None for k in _keys_of(a, words=True))
        if whole is not None:
            items.append(Item(artist=None, keys=keys, mood=whole))
    return items


@dataclass(frozen=True)
class TagPriors:
    """Priors by key, plus the corpus-wide mean mood they deviate from."""

    priors: dict[str, TagPrior]
    mean: tuple[float, float]
    items: dict[str, int]  # items used per corpus
    spread: tuple[float, float] = (1.0, 1.0)  # SD of the MTG-Jamendo items' moods per axis
    reliability: tuple[float, float] = (0.0, 0.0)  # CV r of genre/instrument priors vs item moods per axis
    transfer: tuple[float, float] = (0.0, 0.0)  # the same r across corpora (MTG-Jamendo ↔ MusicCaps)
    artist_icc: tuple[float, float] = (0.0, 0.0)  # share of item mood variance between artists per axis
    selection: dict[str, Any] = field(default_factory=dict)  # how the word-mood reader was chosen, if it was

    def lookup(self, tag: str) -> TagPrior | None:
        """The prior of ``tag``: its own key, else its singular ("vocalists" → "vocalist"), else None."""
        key = normalise(tag)
        for k in (key, key[:-1] if key.endswith("s") and len(key) > 4 else None):
            if k and k in self.priors:
                return self.priors[k]
        return None


def learn_tag_priors(
    *, word_mood: WordMood, data_dir: Path = store.DATA_DIR, clips: Sequence[Sequence[str]] | None = None
) -> TagPriors:
    """Priors from MTG-Jamendo (genres/instruments × mood/theme tags) and MusicCaps (aspects;
    ``clips``: the aspect lists when the caller has read them already)."""
    acc = _Accumulator()
    clips = musiccaps_aspects(data_dir) if clips is None else clips
    mtg = _mtg_items(resolve_open_file(data_dir=data_dir, relative=MTG_FILE), word_mood, acc)
    caps = _musiccaps_items(clips, word_mood, acc)
    items = {"mtg_jamendo": len(mtg), "musiccaps": len(caps)}
    priors, mean = _means(acc)
    moods = np.array([it.mood for it in mtg]).reshape(-1, 3)
    caps_only = _musiccaps_only(acc, mtg)
    return TagPriors(priors=priors, mean=mean, items=items, spread=_weighted_sd(moods),
                     reliability=_cv_reliability(mtg, caps_only), transfer=_transfer(mtg, caps, caps_only),
                     artist_icc=_artist_icc(mtg))


def _means(acc: _Accumulator) -> tuple[dict[str, TagPrior], tuple[float, float]]:
    """Priors with enough support, and the weighted mean over every (item, key) pair."""
    priors: dict[str, TagPrior] = {}
    total = np.zeros(3)
    for key, (sv, sa, sw) in acc.sums.items():
        n = acc.counts[key]
        total += (sv, sa, sw)
        if n < MIN_SUPPORT or sw <= 0:
            continue
        priors[key] = TagPrior(valence=sv / sw, arousal=sa / sw, confidence=n / (n + SUPPORT_HALF), support=n)
    mean = (float(total[0] / total[2]), float(total[1] / total[2])) if total[2] > 0 else (0.0, 0.0)
    return priors, mean


def _weighted_sd(moods: np.ndarray) -> tuple[float, float]:
    """Confidence-weighted SD per axis of (n, 3) moods; (1, 1) with fewer than two items."""
    if len(moods) < 2 or moods[:, 2].sum() <= 0:
        return (1.0, 1.0)
    w = moods[:, 2]
    mu = np.average(moods[:, :2], axis=0, weights=w)
    sd = np.sqrt(np.average((moods[:, :2] - mu) ** 2, axis=0, weights=w))
    return float(max(sd[0], 1e-6)), float(max(sd[1], 1e-6))


def _musiccaps_only(acc: _Accumulator, mtg: Sequence[Item]) -> _Accumulator:
    """``acc`` minus the MTG-Jamendo items: what every CV fold learns from besides its MTG train items."""
    out = _Accumulator()
    out.sums.update({k: v.copy() for k, v in acc.sums.items()})
    out.counts.update(acc.counts)
    for it in mtg:
        v, a, w = it.mood
        for k in it.keys:
            out.sums[k] -= (w * v, w * a, w)
            out.counts[k] -= 1
    return out


def _cv_reliability(mtg: Sequence[Item], base: _Accumulator, folds: int = CV_FOLDS) -> tuple[float, float]:
    """Pearson r per axis between an MTG-Jamendo item's mood and the support-weighted mean of its keys'
    priors, the priors learned without the item's artist (artist-disjoint folds; MusicCaps in every
    fold). Items none of whose keys has a prior predict the fold's mean. (0, 0) with too few items."""
    if len(mtg) < 2 * folds:
        return (0.0, 0.0)
    fold_of = [hash_fold(it.artist if it.artist is not None else f"item{i}", folds) for i, it in enumerate(mtg)]
    pred = np.zeros((len(mtg), 2))
    for f in range(folds):
        acc = _Accumulator()
        acc.sums.update({k: v.copy() for k, v in base.sums.items()})
        acc.counts.update(base.counts)
        for it, fo in zip(mtg, fold_of):
            if fo != f:
                acc.add(it.keys, it.mood)
        priors, mean = _means(acc)
        for i, (it, fo) in enumerate(zip(mtg, fold_of)):
            if fo == f:
                pred[i] = prior_mean([priors[k] for k in it.keys if k in priors], default=mean)
    y = np.array([it.mood[:2] for it in mtg])
    return tuple(float(np.clip(np.nan_to_num(pearson_r(pred[:, j], y[:, j])), 0.0, 1.0)) for j in range(2))  # type: ignore[return-value]


def _predict_r(items: Sequence[Item], acc: _Accumulator) -> np.ndarray:
    """Pearson r per axis of the items' moods vs the priors of ``acc`` over their keys (0 if undefined)."""
    if len(items) < 3:
        return np.zeros(2)
    priors, mean = _means(acc)
    pred = np.array([prior_mean([priors[k] for k in it.keys if k in priors], default=mean) for it in items])
    y = np.array([it.mood[:2] for it in items])
    return np.array([np.nan_to_num(pearson_r(pred[:, j], y[:, j])) for j in range(2)])


def _transfer(mtg: Sequence[Item], caps: Sequence[Item], caps_only: _Accumulator) -> tuple[float, float]:
    """How priors carry over to another catalogue: the mean, over the two directions, of the r per
    axis of priors learned on one corpus alone (MTG-Jamendo, MusicCaps) against the other's item
    moods, clipped to [0, 1]."""
    mtg_only = _Accumulator()
    for it in mtg:
        mtg_only.add(it.keys, it.mood)
    r = (_predict_r(caps, mtg_only) + _predict_r(mtg, caps_only)) / 2.0
    return float(np.clip(r[0], 0.0, 1.0)), float(np.clip(r[1], 0.0, 1.0))


def prior_mean(found: Sequence[TagPrior], *, default: tuple[float, float]) -> tuple[float, float]:
    """Support-confidence-weighted mean (valence, arousal) of several priors; ``default`` when none."""
    if not found:
        return default
    w = np.array([p.confidence for p in found])
    va = np.array([[p.valence, p.arousal] for p in found])
    return tuple(float(x) for x in (w[:, None] * va).sum(0) / w.sum())  # type: ignore[return-value]


def hash_fold(key: str, folds: int) -> int:
    """A stable fold number of ``key`` (same key, same fold, in every run)."""
    return zlib.crc32(key.encode()) % folds


def _artist_icc(mtg: Sequence[Item]) -> tuple[float, float]:
    """One-way ANOVA intra-class correlation of item moods by artist, per axis, clipped to [0, 1];
    (0, 0) without at least two artists with two items."""
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for it in mtg:
        if it.artist is not None:
            groups[it.artist].append(it.mood[:2])
    groups = {a: g for a, g in groups.items() if len(g) >= 2}
    if len(groups) < 2:
        return (0.0, 0.0)
    arrays = [np.asarray(g) for g in groups.values()]
    sizes = np.array([len(g) for g in arrays], dtype=np.float64)
    n, k = sizes.sum(), len(arrays)
    grand = np.concatenate(arrays).mean(axis=0)
    ss_between = sum(len(g) * (g.mean(axis=0) - grand) ** 2 for g in arrays)
    ss_within = sum(((g - g.mean(axis=0)) ** 2).sum(axis=0) for g in arrays)
    ms_b, ms_w = ss_between / (k - 1), ss_within / (n - k)
    n0 = (n - (sizes**2).sum() / n) / (k - 1)  # effective group size for unequal groups
    icc = (ms_b - ms_w) / (ms_b + (n0 - 1) * ms_w)
    return tuple(float(np.clip(x, 0.0, 1.0)) for x in icc)  # type: ignore[return-value]


def _mood_vocabulary(data_dir: Path) -> set[str]:
    """The MTG-Jamendo mood/theme tag names (every one of them names a mood or a theme)."""
    path = resolve_open_file(data_dir=data_dir, relative=MOODTHEME_FILE)
    lines = [line.strip() for line in path.read_text().splitlines()]
    return {line.removeprefix(MOODTHEME_PREFIX).lower() for line in lines if line}


# Which mood words a word reader (``tag_priors(reader=...)``) reads: none; the mood words the norms do
# not rate; those and the arousal of words the norms rate for valence only; every mood word.
READER_SCOPES: tuple[str, ...] = ("none", "unrated", "gaps", "all")

# (n, 3) valence, arousal, confidence of each word: e.g. ``WordMoodRegressor.read``.
WordReader = Callable[[Sequence[str]], np.ndarray]


def tag_priors(
    *, lexicon: MoodLexicon, data_dir: Path = store.DATA_DIR, reader: WordReader | None = None, scope: str = "unrated"
) -> TagPriors:
    """Priors over the shipped corpora. A tag is a mood word when the word norms give it a mood
    (``TagMoodScorer.tag_mood``) or it is an MTG-Jamendo mood/theme tag. Its mood is the norms';
    with a ``reader``, ``scope`` (``READER_SCOPES``) says which moods the reader supplies instead:
    "unrated" the mood/theme tags the norms do not rate ("mellow"), "gaps" also the arousal of
    words the norms rate for valence only ("energetic"), "all" every mood word's."""
    if scope not in READER_SCOPES:
        raise InvalidInputError(f"scope must be one of {READER_SCOPES}", field="scope")
    scorer = scorer_for(lexicon=lexicon, data_dir=data_dir)
    moods = _mood_vocabulary(data_dir)
    norm_moods: dict[str, tuple[float, float, float, bool] | None] = {}  # (v, a, confidence, has arousal)

    def from_norms(key: str) -> tuple[float, float, float, bool] | None:
        if key not in norm_moods:
            m = scorer.tag_mood(key)
            rated = m is not None and m.confidence > 0
            norm_moods[key] = (m.valence, m.arousal, m.confidence, any(w in lexicon.arousal for w in m.words)) \
                if rated else None
        return norm_moods[key]

    clips = musiccaps_aspects(data_dir)
    read: dict[str, tuple[float, float, float]] = {}
    if reader is not None and scope != "none":
        aspects = {a.strip().lower() for clip in clips for a in clip}
        candidates = moods | {w for w in aspects if from_norms(w) is not None}
        wanted = sorted(w for w in candidates if _reads(from_norms(w), scope))
        read = {w: (float(v), float(a), float(c)) for w, (v, a, c) in zip(wanted, reader(wanted))}

    def word_mood(tag: str) -> tuple[float, float, float] | None:
        key = tag.strip().lower()
        norm = from_norms(key)
        if key in read:
            if scope == "gaps" and norm is not None:  # the norms' valence and confidence, the reader's arousal
                return norm[0], read[key][1], norm[2]
            return read[key]
        return None if norm is None else norm[:3]

    return learn_tag_priors(word_mood=word_mood, data_dir=data_dir, clips=clips)


def _reads(norm: tuple[float, float, float, bool] | None, scope: str) -> bool:
    """Whether the reader supplies (part of) a mood word's mood under ``scope``."""
    return scope == "all" or norm is None or (scope == "gaps" and not norm[3])
