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

Context cues (the plan's "morning", "workout", "sleep", "party", "study", "night" …) are reported
by :meth:`MoodLexicon.context_cues` only for cue words that the norms actually rate, so their
mood contribution is the norm value, never an invented number.
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
# Cue words the plan (PLAN.md §7.1) names as context modifiers; kept only where the norms rate them.
PLAN_CONTEXT_CUES: tuple[str, ...] = (
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
        """The plan's context cue words present in ``text`` that the Glasgow norms rate."""
        tokens = tokenize(text)
        joined = tokens + [a + b for a, b in zip(tokens, tokens[1:])]
        found: list[str] = []
        for tok in joined:
            entry = self.lookup(tok)
            if entry in PLAN_CONTEXT_CUES and entry in self.arousal and entry not in found:
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
