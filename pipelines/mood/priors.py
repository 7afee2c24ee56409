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
"""

import ast
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipelines import store
from pipelines.mood.lexicon import MoodLexicon, resolve_open_file
from pipelines.mood.tags import MOODTHEME_FILE, MOODTHEME_PREFIX, scorer_for

MTG_FILE = "corpus/mtg_jamendo_tags.csv"
MUSICCAPS_FILE = "corpus/musiccaps.csv"
SUPPORT_HALF = 25.0  # items at which a prior's confidence reaches one half
MIN_SUPPORT = 5  # fewer items: no prior
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


def _mtg_items(path: Path, word_mood: WordMood, acc: _Accumulator) -> int:
    df = pl.read_csv(path, columns=["genres", "instruments", "moods"]).filter(pl.col("moods").is_not_null())
    used = 0
    for genres, instruments, moods in df.iter_rows():
        mood = _pooled([m for m in (word_mood(t) for t in moods.split("|")) if m is not None])
        if mood is None:
            continue
        tags = [t for col in (genres, instruments) if col for t in col.split("|")]
        acc.add({k for t in tags for k in _keys_of(t, words=False)}, mood)
        used += 1
    return used


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


def _musiccaps_items(clips: Sequence[Sequence[str]], word_mood: WordMood, acc: _Accumulator) -> int:
    used = 0
    for aspects in clips:
        scored = [(a, word_mood(a)) for a in aspects]
        moody = [(a, m) for a, m in scored if m is not None]
        if not moody:
            continue
        used += 1
        for aspect in aspects:
            mood = _pooled([m for a, m in moody if a != aspect])  # never explained by itself
            if mood is not None:
                acc.add(_keys_of(aspect, words=True), mood)
    return used


@dataclass(frozen=True)
class TagPriors:
    """Priors by key, plus the corpus-wide mean mood they deviate from."""

    priors: dict[str, TagPrior]
    mean: tuple[float, float]
    items: dict[str, int]  # items used per corpus

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
    items = {
        "mtg_jamendo": _mtg_items(resolve_open_file(data_dir=data_dir, relative=MTG_FILE), word_mood, acc),
        "musiccaps": _musiccaps_items(clips, word_mood, acc),
    }
    priors: dict[str, TagPrior] = {}
    total = np.zeros(3)
    for key, (sv, sa, sw) in acc.sums.items():
        n = acc.counts[key]
        total += (sv, sa, sw)
        if n < MIN_SUPPORT or sw <= 0:
            continue
        priors[key] = TagPrior(valence=sv / sw, arousal=sa / sw, confidence=n / (n + SUPPORT_HALF), support=n)
    mean = (float(total[0] / total[2]), float(total[1] / total[2])) if total[2] > 0 else (0.0, 0.0)
    return TagPriors(priors=priors, mean=mean, items=items)


def _mood_vocabulary(data_dir: Path) -> set[str]:
    """The MTG-Jamendo mood/theme tag names (every one of them names a mood or a theme)."""
    path = resolve_open_file(data_dir=data_dir, relative=MOODTHEME_FILE)
    lines = [line.strip() for line in path.read_text().splitlines()]
    return {line.removeprefix(MOODTHEME_PREFIX).lower() for line in lines if line}


def tag_priors(*, lexicon: MoodLexicon, data_dir: Path = store.DATA_DIR, text_model: Any | None = None) -> TagPriors:
    """Priors over the shipped corpora. A tag is a mood word when the word norms give it a mood
    (``TagMoodScorer.tag_mood``) or it is an MTG-Jamendo mood/theme tag; its mood is the norms' or,
    with ``text_model`` (a ``QueryMoodModel``: EmoBank + Glasgow words), the model's reading of it,
    which also covers mood words the norms rate without arousal ("energetic") or not at all ("mellow")."""
    scorer = scorer_for(lexicon=lexicon, data_dir=data_dir)
    moods = _mood_vocabulary(data_dir)
    norm_moods: dict[str, tuple[float, float, float] | None] = {}

    def from_norms(tag: str) -> tuple[float, float, float] | None:
        key = tag.strip().lower()
        if key not in norm_moods:
            m = scorer.tag_mood(key)
            norm_moods[key] = None if m is None or m.confidence <= 0 else (m.valence, m.arousal, m.confidence)
        return norm_moods[key]

    clips = musiccaps_aspects(data_dir)
    model_moods: dict[str, tuple[float, float, float]] = {}
    if text_model is not None:
        aspects = {a.strip().lower() for clip in clips for a in clip}
        words = sorted(moods | {w for w in aspects if from_norms(w) is not None})
        pred = text_model.predict(words)
        model_moods = {w: (float(v), float(a), float(c)) for w, (v, a, c) in zip(words, pred)}

    def word_mood(tag: str) -> tuple[float, float, float] | None:
        key = tag.strip().lower()
        if key not in moods and from_norms(key) is None:
            return None
        return model_moods.get(key) or from_norms(key)

    return learn_tag_priors(word_mood=word_mood, data_dir=data_dir, clips=clips)
