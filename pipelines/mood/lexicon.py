"""Word-level mood lexicon: Glasgow Norms (valence + arousal) and VADER (valence only).

Every number comes from the two lexicon files; nothing is hand-set:

- Glasgow Norms (Scott et al. 2019), ``glasgow_norms.csv``: ``valence_mean`` / ``arousal_mean`` on
  1–9, rescaled to [-1, 1] with ``(x - 5) / 4``. Words with several senses ("arm (limb)",
  "arm (weapon)") are averaged into the bare word.
- VADER (Hutto & Gilbert 2014), ``vader_lexicon.txt`` (tab-separated token, mean, std, ratings):
  mean valence on -4..4, rescaled with ``x / 4``. VADER has no arousal.

Where both lexicons rate a word, its valence is the mean of the two rescaled values.

Text scoring (:meth:`MoodLexicon.score`): lowercase word tokens; a token not in the lexicon is
retried with common English suffixes stripped ("missing" → "miss", "parties" → "party");
adjacent tokens are also joined ("work out" → "workout") when the joined form is a lexicon word.
A negator ("not", "never", "n't", …) in the three tokens before a word flips the sign of that
word's valence and scales it by VADER's published negation constant ``N_SCALAR = -0.74`` (the
constant of the VADER reference implementation, vaderSentiment 3.3.2); arousal is left alone
("not calm" is not evidence of excitement). Valence and arousal are means over the matched
words; ``coverage`` is the fraction of content tokens (non-stopword, non-negator) matched.

Context cues ("morning", "workout", "sleep" …) are reported by :meth:`MoodLexicon.context_cues`
only for cue words that the norms rate. The one hand-set table is ``CONTEXT_SHIFTS``
(:func:`context_shift`): listening-context and music words with the (Δvalence, Δarousal) each adds
*after* the query-mood model; the norms rate words' general affect, not what music for that context
sounds like ("upbeat", "workout" are not rated at all).
"""

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines import store

SHARED_OPEN_DIR = Path("/work/shared/data/open")

GLASGOW_FILE = "glasgow_norms.csv"
VADER_FILE = "vader_lexicon.txt"
EMOBANK_FILE = "emobank_train_dev.csv"

# VADER reference implementation constant (vaderSentiment.py: N_SCALAR = -0.74).
VADER_NEGATION_SCALAR = -0.74
NEGATION_WINDOW = 3
NEGATORS: frozenset[str] = frozenset(
    {
        "not", "no", "never", "nothing", "nobody", "none", "neither", "nor", "without", "cannot",
        "cant", "dont", "doesnt", "didnt", "isnt", "arent", "wasnt", "werent", "wont", "wouldnt",
        "shouldnt", "couldnt", "aint", "hardly", "n't",
    }
)
# Function words: excluded from coverage's denominator (the lexicons rarely rate them).
STOPWORDS: frozenset[str] = frozenset(
    {
        "a", "an", "the", "and", "or", "but", "of", "to", "in", "on", "at", "for", "with", "by",
        "from", "as", "is", "am", "are", "was", "were", "be", "been", "being", "i", "me", "my",
        "mine", "you", "your", "he", "him", "his", "she", "her", "it", "its", "we", "us", "our",
        "they", "them", "their", "this", "that", "these", "those", "so", "some", "any", "s", "do",
        "does", "did", "have", "has", "had", "will", "would", "can", "could", "should", "just",
        "like", "about", "into", "up", "out", "there", "here", "what", "which", "who", "when",
        "where", "how", "if", "then", "than", "too", "very", "all", "also", "im", "ive", "id",
    }
)
# Listening-context words reported as cues; kept only where the norms rate them.
CONTEXT_CUE_WORDS: tuple[str, ...] = (
    "morning", "night", "evening", "workout", "gym", "run", "study", "focus", "party", "sleep",
    "relax", "work", "drive", "dinner", "dance", "rain", "summer", "winter",
)

_TOKEN_RE = re.compile(r"[a-z]+(?:'[a-z]+)?|[^\sa-z0-9]{2,}")
_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("ies", "y"), ("ing", ""), ("ing", "e"), ("ed", ""), ("ed", "e"), ("es", ""), ("s", ""),
    ("ly", ""), ("ness", ""), ("er", ""), ("est", ""),
)


def resolve_open_file(*, data_dir: Path, relative: str) -> Path:
    """The open-data file ``relative`` (e.g. ``"text/glasgow_norms.csv"``) under ``data_dir``,
    falling back to the shared open-data folder while the project copy does not exist yet."""
    for base in (Path(data_dir), SHARED_OPEN_DIR):
        candidate = base / relative
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{relative} not found under {data_dir} or {SHARED_OPEN_DIR}")


def rescale_glasgow(x: np.ndarray | float) -> np.ndarray | float:
    """Glasgow 1–9 → [-1, 1]."""
    return (x - 5.0) / 4.0


def rescale_emobank(x: np.ndarray | float) -> np.ndarray | float:
    """EmoBank 1–5 → [-1, 1]."""
    return (x - 3.0) / 2.0


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens; "don't" → ["do", "n't"]; emoticon runs kept for VADER."""
    tokens: list[str] = []
    for tok in _TOKEN_RE.findall(text.lower().replace("’", "'")):
        if tok.endswith("n't") and len(tok) > 3:
            tokens.extend([tok[:-3], "n't"])
        else:
            tokens.append(tok.replace("'", "") if tok.isascii() and "'" in tok else tok)
    return tokens


def load_glasgow(*, data_dir: Path) -> dict[str, tuple[float, float]]:
    """Word → (valence, arousal) in [-1, 1], senses averaged."""
    path = resolve_open_file(data_dir=data_dir, relative=f"text/{GLASGOW_FILE}")
    sums: dict[str, list[float]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            word = row["word"].split(" (")[0].strip().lower()
            acc = sums.setdefault(word, [0.0, 0.0, 0.0])
            acc[0] += float(row["valence_mean"])
            acc[1] += float(row["arousal_mean"])
            acc[2] += 1.0
    return {
        w: (float(rescale_glasgow(v / n)), float(rescale_glasgow(a / n))) for w, (v, a, n) in sums.items()
    }


def load_vader(*, data_dir: Path) -> dict[str, float]:
    """Token → valence in [-1, 1] (VADER mean / 4)."""
    path = resolve_open_file(data_dir=data_dir, relative=f"text/{VADER_FILE}")
    out: dict[str, float] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2 and parts[0]:
                out[parts[0].lower()] = float(parts[1]) / 4.0
    return out


@dataclass(frozen=True)
class LexiconScore:
    valence: float
    arousal: float
    coverage: float
    matched: tuple[str, ...] = field(default=())


@dataclass
class MoodLexicon:
    """Word → (valence or NaN, arousal or NaN), both in [-1, 1]."""

    valence: dict[str, float]
    arousal: dict[str, float]
    glasgow: dict[str, tuple[float, float]] = field(default_factory=dict)

    N_FEATURES = 5  # valence, arousal, coverage, has_valence, has_arousal

    @classmethod
    def from_files(cls, *, data_dir: Path = store.DATA_DIR) -> "MoodLexicon":
        glasgow = load_glasgow(data_dir=data_dir)
        vader = load_vader(data_dir=data_dir)
        valence: dict[str, float] = {}
        arousal: dict[str, float] = {}
        for word, (v, a) in glasgow.items():
            valence[word] = v
            arousal[word] = a
        for token, v in vader.items():
            valence[token] = (valence[token] + v) / 2.0 if token in glasgow else v
        return cls(valence=valence, arousal=arousal, glasgow=glasgow)

    def __contains__(self, word: str) -> bool:
        return word in self.valence or word in self.arousal

    def lookup(self, token: str) -> str | None:
        """The lexicon entry for ``token`` (itself, or a suffix-stripped form), or None."""
        if token in self:
            return token
        for suffix, repl in _SUFFIXES:
            if token.endswith(suffix) and len(token) - len(suffix) >= 3:
                stem = token[: -len(suffix)] + repl
                if stem in self:
                    return stem
                if suffix in ("ing", "ed", "er", "est") and len(stem) >= 4 and stem[-1] == stem[-2]:
                    if stem[:-1] in self:  # "stopped" → "stop"
                        return stem[:-1]
        return None

    def _matches(self, tokens: list[str]) -> tuple[list[tuple[str, bool]], int]:
        """Matched (entry, negated) pairs and the number of content tokens."""
        matches: list[tuple[str, bool]] = []
        content = 0
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            negated = any(t in NEGATORS for t in tokens[max(0, i - NEGATION_WINDOW) : i])
            if i + 1 < len(tokens) and (tokens[i] + tokens[i + 1]) in self:
                matches.append((tokens[i] + tokens[i + 1], negated))
                content += 1
                i += 2
                continue
            if tok in NEGATORS or tok in STOPWORDS:
                i += 1
                continue
            content += 1
            entry = self.lookup(tok)
            if entry is not None:
                matches.append((entry, negated))
            i += 1
        return matches, content

    def score(self, text: str) -> LexiconScore:
        """(valence, arousal, coverage) of ``text``; valence/arousal are 0.0 when nothing matched."""
        matches, content = self._matches(tokenize(text))
        vals = [
            self.valence[w] * (VADER_NEGATION_SCALAR if neg else 1.0)
            for w, neg in matches
            if w in self.valence
        ]
        aros = [self.arousal[w] for w, _ in matches if w in self.arousal]
        return LexiconScore(
            valence=float(np.mean(vals)) if vals else 0.0,
            arousal=float(np.mean(aros)) if aros else 0.0,
            coverage=len(matches) / content if content else 0.0,
            matched=tuple(w for w, _ in matches),
        )

    def features(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (n, 5): valence, arousal, coverage, has_valence, has_arousal per text."""
        out = np.zeros((len(texts), self.N_FEATURES), dtype=np.float32)
        for i, text in enumerate(texts):
            s = self.score(text)
            out[i] = (
                s.valence,
                s.arousal,
                s.coverage,
                float(any(w in self.valence for w in s.matched)),
                float(any(w in self.arousal for w in s.matched)),
            )
        return out

    def context_cues(self, text: str) -> list[str]:
        """The context cue words (``CONTEXT_CUE_WORDS``) present in ``text`` that the Glasgow norms rate."""
        tokens = tokenize(text)
        joined = tokens + [a + b for a, b in zip(tokens, tokens[1:])]
        found: list[str] = []
        for tok in joined:
            entry = self.lookup(tok)
            if entry in CONTEXT_CUE_WORDS and entry in self.arousal and entry not in found:
                found.append(entry)
        return found

    def word_mood(self, word: str) -> tuple[float, float] | None:
        """Glasgow-norm (valence, arousal) of ``word`` (or its suffix-stripped form), else None.

        Uses the Glasgow values alone (not the VADER-averaged valence), so a word's mood is exactly
        the normed rating."""
        entry = self.lookup(word.lower())
        if entry is None or entry not in self.glasgow:
            return None
        return self.glasgow[entry]


# --- context cues: a curated (Δvalence, Δarousal) table applied after the query-mood model -------
# Each entry: cue → (Δvalence, Δarousal, what the shift encodes). Shifts are on the [-1, 1] output
# scale; they describe the music people ask for in that context (workout playlists are fast and
# loud; sleep playlists quiet and slow; breakup songs sad), not the word's general affect.
# Magnitudes: 0.45 ≈ one Glasgow-norm std of arousal for a strong activity cue, 0.1–0.2 for mild
# time-of-day / weather cues. Keys are single tokens or two tokens joined ("roadtrip", "breakup").
CONTEXT_SHIFTS: dict[str, tuple[float, float, str]] = {
    "workout": (0.10, 0.45, "exercise music is driving and high-energy"),
    "gym": (0.10, 0.45, "exercise music is driving and high-energy"),
    "exercise": (0.10, 0.45, "exercise music is driving and high-energy"),
    "run": (0.05, 0.40, "running music keeps a fast pulse"),
    "running": (0.05, 0.40, "running music keeps a fast pulse"),
    "cardio": (0.10, 0.45, "exercise music is driving and high-energy"),
    "party": (0.30, 0.40, "party music is bright and danceable"),
    "dance": (0.25, 0.35, "dance music is bright and rhythmic"),
    "club": (0.15, 0.40, "club music is loud and rhythmic"),
    "upbeat": (0.30, 0.40, "music word: lively, positive"),
    "energetic": (0.15, 0.45, "music word: high energy"),
    "hype": (0.15, 0.45, "music word: high energy"),
    "pumped": (0.15, 0.45, "music word: high energy"),
    "morning": (0.15, 0.10, "morning playlists are fresh and gently rising, not sleepy"),
    "night": (-0.05, -0.15, "night listening is slower and darker"),
    "latenight": (-0.10, -0.25, "late-night listening is slow and dark"),
    "evening": (0.0, -0.10, "evening listening winds down"),
    "study": (0.0, -0.30, "study music is calm and unobtrusive"),
    "studying": (0.0, -0.30, "study music is calm and unobtrusive"),
    "focus": (0.0, -0.25, "focus music is calm and steady"),
    "work": (0.0, -0.10, "background music for work is restrained"),
    "sleep": (0.05, -0.55, "sleep music is very quiet and slow"),
    "bedtime": (0.05, -0.50, "sleep music is very quiet and slow"),
    "lullaby": (0.10, -0.50, "sleep music is very quiet and slow"),
    "chill": (0.15, -0.35, "music word: relaxed, pleasant"),
    "chillout": (0.15, -0.35, "music word: relaxed, pleasant"),
    "relax": (0.15, -0.40, "relaxing music is calm and pleasant"),
    "relaxing": (0.15, -0.40, "relaxing music is calm and pleasant"),
    "mellow": (0.10, -0.35, "music word: soft, calm"),
    "rain": (-0.15, -0.20, "rainy-day music is wistful and slow"),
    "rainy": (-0.15, -0.20, "rainy-day music is wistful and slow"),
    "drive": (0.10, 0.15, "driving music keeps a steady, moderate pulse"),
    "driving": (0.10, 0.15, "driving music keeps a steady, moderate pulse"),
    "roadtrip": (0.20, 0.20, "road-trip music is bright and moving"),
    "breakup": (-0.50, -0.05, "breakup songs are sad"),
    "heartbreak": (-0.50, -0.05, "breakup songs are sad"),
    "summer": (0.20, 0.10, "summer music is bright"),
    "winter": (-0.05, -0.10, "winter music is quieter"),
}
# VADER reference implementation constant (vaderSentiment.py: B_INCR = 0.293): an intensifier
# before a cue scales its shift by (1 + B_INCR); a dampener by (1 - B_INCR).
VADER_BOOST = 0.293
INTENSIFIERS: frozenset[str] = frozenset(
    {"very", "really", "super", "extremely", "so", "totally", "absolutely", "incredibly", "hella", "most"}
)
DAMPENERS: frozenset[str] = frozenset({"slightly", "somewhat", "bit", "little", "kinda", "kindof", "sort", "barely"})
MAX_CONTEXT_SHIFT = 0.6  # per axis, after summing the cues of one text
# The shifts describe music requests, so they apply only to query-like texts: at most
# QUERY_MAX_TOKENS tokens, or any length when a listening word is present. In general prose these
# words carry no such shift (EmoBank sentences with "work", "run", "night", "club" … rate close to
# the corpus mean arousal), and applying them there lowers the dev arousal correlation.
QUERY_MAX_TOKENS = 8
LISTENING_WORDS: frozenset[str] = frozenset(
    {"music", "song", "songs", "playlist", "playlists", "track", "tracks", "tunes", "mix", "beats",
     "vibes", "listen", "listening", "album", "soundtrack"}
)


@dataclass(frozen=True)
class ContextShift:
    valence: float
    arousal: float
    cues: tuple[str, ...]  # cue entries found (negated ones prefixed "not ")


def _cue_entry(token: str, table: dict) -> str | None:
    if token in table:
        return token
    for suffix, repl in _SUFFIXES:
        if token.endswith(suffix) and len(token) - len(suffix) >= 3:
            stem = token[: -len(suffix)] + repl
            if stem in table:
                return stem
    return None


@dataclass
class ContextCues:
    """The cue table a query-mood model applies after its estimate (default ``CONTEXT_SHIFTS``)."""

    table: dict[str, tuple[float, float, str]] = field(default_factory=lambda: dict(CONTEXT_SHIFTS))

    def shifts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 2) (Δvalence, Δarousal) of each text (:func:`context_shift`)."""
        out = [context_shift(t, table=self.table) for t in texts]
        return np.array([[c.valence, c.arousal] for c in out], dtype=np.float64).reshape(len(texts), 2)


def context_shift(text: str, *, table: dict[str, tuple[float, float, str]] | None = None) -> ContextShift:
    """Summed (Δvalence, Δarousal) of the cues of ``table`` (default ``CONTEXT_SHIFTS``) in ``text``,
    each axis clipped to ±``MAX_CONTEXT_SHIFT``.

    A negator in the ``NEGATION_WINDOW`` tokens before a cue cancels it ("not for a party" is not a
    party request; it is not evidence of the opposite either). An intensifier right before a cue
    scales its shift by ``1 + VADER_BOOST``, a dampener by ``1 - VADER_BOOST``. Each cue counts once.
    Texts longer than ``QUERY_MAX_TOKENS`` tokens without a ``LISTENING_WORDS`` token are prose,
    not music requests: no shift.
    """
    table = CONTEXT_SHIFTS if table is None else table
    tokens = tokenize(text)
    if len(tokens) > QUERY_MAX_TOKENS and not any(t in LISTENING_WORDS for t in tokens):
        return ContextShift(0.0, 0.0, ())
    dv = da = 0.0
    found: list[str] = []
    seen: set[str] = set()
    i = 0
    while i < len(tokens):
        width, entry = 1, None
        if i + 1 < len(tokens):
            entry = _cue_entry(tokens[i] + tokens[i + 1], table)
            width = 2 if entry else 1
        if entry is None:
            entry = _cue_entry(tokens[i], table)
        if entry is not None and entry not in seen:
            seen.add(entry)
            before = tokens[max(0, i - NEGATION_WINDOW) : i]
            if any(t in NEGATORS for t in before):
                found.append(f"not {entry}")
            else:
                scale = 1.0
                if before and before[-1] in INTENSIFIERS:
                    scale = 1.0 + VADER_BOOST
                elif before and before[-1] in DAMPENERS:
                    scale = 1.0 - VADER_BOOST
                v, a, _ = table[entry]
                dv += scale * v
                da += scale * a
                found.append(entry)
        i += width
    clip = MAX_CONTEXT_SHIFT
    return ContextShift(float(np.clip(dv, -clip, clip)), float(np.clip(da, -clip, clip)), tuple(found))
