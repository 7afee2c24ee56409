"""Tag → mood knowledge: (valence, arousal, confidence) of a music tag from word norms.

A tag ("melancholic", "mellow piano melody", "fast tempo", "no voices") is scored through the
word norms of :class:`pipelines.mood.lexicon.MoodLexicon` (Glasgow valence/arousal, VADER valence):

- tokens: the tag lower-cased and split on spaces, ``-``, ``_``, ``/``, ``|``; the MTG-Jamendo
  prefix ``mood/theme---`` is dropped; stopwords and negators are not content words;
- music words carry no mood and are skipped: the MTG-Jamendo instrument and genre tag names
  (``mtg_jamendo_tags.csv``; "piano", "rock", "ambient", …) plus ``MUSIC_DESCRIPTION_WORDS`` (the
  nouns MusicCaps aspects use for parts of music: melody, tempo, vocal, bass line, …);
- a tag that names the recording rather than the music (``RECORDING_WORDS``: "low quality",
  "amateur recording", "noisy", "mono") has no mood at all — "low" there is not sad;
- every other content word with a norm contributes its valence (Glasgow/VADER mean, as
  ``MoodLexicon`` holds it) and its Glasgow arousal (VADER has none); a negator in the three
  tokens before a word flips and shrinks its valence by VADER's ``N_SCALAR`` (as the lexicon does);
- word affect = ``max(|valence|, |arousal|) × abstractness`` with abstractness
  ``(7 − concreteness) / 6`` from the Glasgow concreteness norm (1–7; 1 where the word is not
  rated, e.g. VADER-only sentiment words): "sad" (concreteness 2.4) keeps its affect, object words
  the vocabulary above misses ("guitar" 6.7, "drum" 6.7) are discounted to ≈ 0;
- tag valence/arousal = affect-weighted mean over its scored words (arousal over the words that
  have an arousal norm; 0 when none does); tag confidence = the mean affect over its non-music
  content words (an unrated content word counts 0), times ½ when no word rates arousal (half the
  evidence). A tag with no scored word has no mood (None).

Track level (:func:`track_tag_moods`): the confidence-weighted mean of its tags' moods; the
confidence is the noisy-or ``1 − Π(1 − c_i)`` of the tag confidences (several affective tags are
stronger evidence than one) times an agreement factor ``1 − s / √2`` where ``s`` is the
confidence-weighted mean distance of the tag moods from the track mood (``√2``: half the
diagonal of [−1, 1]²), so contradictory tags ("happy", "sad") leave little confidence.
"""

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from pipelines import store
from pipelines.heal import textdoc
from pipelines.mood.lexicon import (
    GLASGOW_FILE,
    NEGATION_WINDOW,
    NEGATORS,
    STOPWORDS,
    VADER_NEGATION_SCALAR,
    MoodLexicon,
    resolve_open_file,
)

MTG_TAGS_FILE = "corpus/mtg_jamendo_tags.csv"
MOODTHEME_FILE = "corpus/moodtheme_tags.txt"
MUSICCAPS_FILE = "corpus/musiccaps.csv"
MOODTHEME_PREFIX = "mood/theme---"

# Nouns MusicCaps aspects use for parts and properties of the music itself (not its mood).
MUSIC_DESCRIPTION_WORDS: frozenset[str] = frozenset(
    {
        "music", "song", "songs", "track", "tune", "melody", "melodies", "melodic", "tempo", "beat",
        "beats", "rhythm", "rhythmic", "vocal", "vocals", "voice", "voices", "singer", "singing",
        "sung", "vocalist", "choir", "harmony", "harmonies", "chord", "chords", "bassline", "line",
        "riff", "riffs", "solo", "instrument", "instruments", "instrumental", "instrumentation",
        "percussion", "percussive", "kick", "snare", "hat", "hats", "hi", "cymbal", "cymbals",
        "drum", "drums", "synth", "synths", "guitar", "guitars", "bass", "keys", "pad", "pads",
        "sample", "samples", "loop", "loops", "backing", "lead", "arrangement", "male", "female",
        "timbre", "tone", "note", "notes", "key", "major", "minor", "bpm", "acoustic", "electric",
        "electronic", "digital", "analog", "e",
        # level qualifiers of tempo / loudness ("medium tempo"): the norms rate "medium" as a noun
        "medium", "moderate", "mid", "midtempo",
    }
)
# Words that make a tag describe the recording, not the music: such a tag has no mood.
RECORDING_WORDS: frozenset[str] = frozenset(
    {"quality", "recording", "recorded", "audio", "mono", "stereo", "noisy", "noise", "fidelity",
     "amateur", "mic", "microphone", "lofi", "hiss", "mastering", "mixed", "mix"}
)
# Derivational endings tried (after the lexicon's own inflection stripping fails) to reach a word
# the Glasgow norms rate: "melancholic" → "melancholy", "energetic" → "energy", "ambiental" →
# "ambient", "meditative" → "meditate", "groovy" → "groove".
DERIVATIONS: tuple[tuple[str, str], ...] = (
    ("etic", "y"), ("ic", "y"), ("ical", "y"), ("al", ""), ("ative", "e"), ("ive", "e"), ("y", "e"),
    ("y", ""), ("ful", ""),
)
_SPLIT_RE = re.compile(r"[\s\-_/|,]+")
_WORD_RE = re.compile(r"^[a-z]+$")


@dataclass(frozen=True)
class TagMood:
    valence: float
    arousal: float
    confidence: float
    words: tuple[str, ...] = field(default=())  # scored words


def tag_tokens(tag: str) -> list[str]:
    """Lower-case word tokens of a tag, MTG-Jamendo ``mood/theme---`` prefix removed."""
    t = tag.strip().lower()
    if t.startswith(MOODTHEME_PREFIX):
        t = t[len(MOODTHEME_PREFIX):]
    return [w.replace("'", "") for w in _SPLIT_RE.split(t) if w]


def load_music_words(*, data_dir: Path = store.DATA_DIR) -> frozenset[str]:
    """MTG-Jamendo instrument and genre tag names ∪ ``MUSIC_DESCRIPTION_WORDS``."""
    words = set(MUSIC_DESCRIPTION_WORDS)
    try:
        path = resolve_open_file(data_dir=data_dir, relative=MTG_TAGS_FILE)
    except FileNotFoundError:
        return frozenset(words)
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            for col in ("genres", "instruments"):
                if row.get(col):
                    words.update(row[col].lower().split("|"))
    return frozenset(words)


def load_abstractness(*, data_dir: Path = store.DATA_DIR) -> dict[str, float]:
    """Word → (7 − Glasgow concreteness) / 6 in [0, 1], senses averaged."""
    path = resolve_open_file(data_dir=data_dir, relative=f"text/{GLASGOW_FILE}")
    sums: dict[str, list[float]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            acc = sums.setdefault(row["word"].split(" (")[0].strip().lower(), [0.0, 0.0])
            acc[0] += float(row["concreteness_mean"])
            acc[1] += 1.0
    return {w: float(np.clip((7.0 - s / n) / 6.0, 0.0, 1.0)) for w, (s, n) in sums.items()}


@dataclass
class TagMoodScorer:
    """Scores tags with a lexicon, a music vocabulary and Glasgow abstractness (see module doc)."""

    lexicon: MoodLexicon
    music_words: frozenset[str]
    abstractness: dict[str, float]
    _cache: dict[str, TagMood | None] = field(default_factory=dict, repr=False)

    @classmethod
    def from_files(cls, *, lexicon: MoodLexicon, data_dir: Path = store.DATA_DIR) -> "TagMoodScorer":
        return cls(lexicon=lexicon, music_words=load_music_words(data_dir=data_dir),
                   abstractness=load_abstractness(data_dir=data_dir))

    def tag_mood(self, tag: str) -> TagMood | None:
        """The mood of one tag, or None when no word of it carries mood."""
        key = tag.strip().lower()
        if key not in self._cache:
            self._cache[key] = self._score(tag_tokens(key))
        return self._cache[key]

    def _lookup(self, tok: str) -> str | None:
        """Lexicon entry for ``tok``; when the lexicon's entry lacks arousal (VADER-only) or there
        is none, a ``DERIVATIONS`` form the Glasgow norms rate is preferred."""
        entry = self.lexicon.lookup(tok)
        if entry is not None and entry in self.lexicon.glasgow:
            return entry
        for suffix, repl in DERIVATIONS:
            if tok.endswith(suffix) and len(tok) - len(suffix) >= 3:
                stem = tok[: -len(suffix)] + repl
                if stem in self.lexicon.glasgow:
                    return stem
        return entry

    def _score(self, tokens: list[str]) -> TagMood | None:
        if not tokens or any(t in RECORDING_WORDS for t in tokens):
            return None
        lex = self.lexicon
        vals: list[tuple[float, float]] = []  # (valence, weight)
        aros: list[tuple[float, float]] = []
        affects: list[float] = []
        words: list[str] = []
        for i, tok in enumerate(tokens):
            if tok in NEGATORS or tok in STOPWORDS or not _WORD_RE.match(tok):
                continue
            if tok in self.music_words:
                continue
            entry = self._lookup(tok)
            if entry is None or entry in self.music_words:
                affects.append(0.0)
                continue
            v = lex.valence.get(entry, float("nan"))
            a = lex.arousal.get(entry, float("nan"))
            if any(t in NEGATORS for t in tokens[max(0, i - NEGATION_WINDOW): i]) and np.isfinite(v):
                v *= VADER_NEGATION_SCALAR
            aff = float(np.nanmax([abs(v), abs(a)])) * self.abstractness.get(entry, 1.0)
            affects.append(aff)
            if aff <= 0:
                continue
            words.append(entry)
            if np.isfinite(v):
                vals.append((v, aff))
            if np.isfinite(a):
                aros.append((a, aff))
        if not words:
            return None
        valence = float(np.average([v for v, _ in vals], weights=[w for _, w in vals])) if vals else 0.0
        arousal = float(np.average([a for a, _ in aros], weights=[w for _, w in aros])) if aros else 0.0
        conf = float(np.mean(affects)) * (1.0 if aros else 0.5)
        return TagMood(valence=valence, arousal=arousal, confidence=float(np.clip(conf, 0.0, 1.0)), words=tuple(words))


_SCORERS: dict[tuple[int, str], TagMoodScorer] = {}


def scorer_for(*, lexicon: MoodLexicon, data_dir: Path = store.DATA_DIR) -> TagMoodScorer:
    """A :class:`TagMoodScorer` for ``lexicon`` with the project's music vocabulary, built once per
    (lexicon object, data dir)."""
    key = (id(lexicon), str(data_dir))
    cached = _SCORERS.get(key)
    if cached is None or cached.lexicon is not lexicon:
        cached = _SCORERS[key] = TagMoodScorer.from_files(lexicon=lexicon, data_dir=data_dir)
    return cached


def split_tags(value: str | None) -> list[str] | None:
    """A crawl ``tags`` cell → its tags as written (`textdoc.split_tags`, ``clean=False``), None if empty."""
    return textdoc.split_tags(value, clean=False) or None


def combine_tag_moods(moods: Sequence[TagMood]) -> tuple[float, float, float]:
    """(valence, arousal, confidence) of a track from its tag moods (module doc: weighted mean,
    noisy-or confidence × agreement); NaNs when ``moods`` is empty or all confidences are 0."""
    moods = [m for m in moods if m.confidence > 0]
    if not moods:
        return (float("nan"),) * 3
    c = np.array([m.confidence for m in moods])
    va = np.array([[m.valence, m.arousal] for m in moods])
    mean = (c[:, None] * va).sum(0) / c.sum()
    spread = float(np.average(np.linalg.norm(va - mean, axis=1), weights=c))
    conf = (1.0 - np.prod(1.0 - c)) * max(0.0, 1.0 - spread / np.sqrt(2.0))
    return float(mean[0]), float(mean[1]), float(np.clip(conf, 0.0, 1.0))


def track_tag_moods(
    *, tags: Sequence[list[str] | None], lexicon: MoodLexicon, scorer: TagMoodScorer | None = None
) -> np.ndarray:
    """(n, 3) float64: valence, arousal in [-1, 1] and confidence in [0, 1] per track from its tags
    (``tags[i]``: list of tag strings or None); NaN rows where no tag carries mood."""
    scorer = scorer or scorer_for(lexicon=lexicon)
    out = np.full((len(tags), 3), np.nan)
    for i, tag_list in enumerate(tags):
        if not tag_list:
            continue
        moods = [m for m in (scorer.tag_mood(t) for t in tag_list) if m is not None]
        out[i] = combine_tag_moods(moods)
    return out


def tag_mood_table(*, scorer: TagMoodScorer, data_dir: Path = store.DATA_DIR) -> pl.DataFrame:
    """The knowledge table: every MTG-Jamendo mood/theme tag and every MusicCaps aspect string →
    tag, source, valence, arousal, confidence, words (scored words, space-joined); tags with no
    mood keep null valence/arousal and confidence 0."""
    import ast

    rows: list[tuple[str, str]] = []
    try:
        path = resolve_open_file(data_dir=data_dir, relative=MOODTHEME_FILE)
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        rows += [(line.removeprefix(MOODTHEME_PREFIX), "mtg_moodtheme") for line in lines]
    except FileNotFoundError:
        pass
    try:
        caps = pl.read_csv(resolve_open_file(data_dir=data_dir, relative=MUSICCAPS_FILE), columns=["aspect_list"])
        aspects = sorted({a.strip().lower() for s in caps["aspect_list"].to_list() if s for a in ast.literal_eval(s)})
        rows += [(a, "musiccaps_aspect") for a in aspects]
    except FileNotFoundError:
        pass
    out = []
    for tag, source in rows:
        m = scorer.tag_mood(tag)
        out.append({
            "tag": tag, "source": source,
            "valence": m.valence if m else None, "arousal": m.arousal if m else None,
            "confidence": m.confidence if m else 0.0, "words": " ".join(m.words) if m else "",
        })
    return pl.DataFrame(out, schema={"tag": pl.String, "source": pl.String, "valence": pl.Float64,
                                     "arousal": pl.Float64, "confidence": pl.Float64, "words": pl.String})
