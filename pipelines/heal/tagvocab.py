"""A curated music-tag vocabulary from real data (``build_vocabulary``), and tag extraction from
free text (``tags_from_text``)."""

import ast
import re
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from pathlib import Path

import polars as pl

MAX_WORDS = 3
MAX_CHARS = 30
MIN_ASPECT_COUNT = 3
MIN_SEGMENT_WORD_COUNT = 5  # a segment of a compound must be a caption word seen ≥ this often
DEFAULT_MIN_SCORE = 90.0
GRAM_BLOCK = 4_096  # n-grams scored against the vocabulary per rapidfuzz cdist call

_PUNCT_EDGES = "\"'`.,;:!?()[]{}"
_WORD = re.compile(r"[a-z0-9]+")


def normalise_tag(text: str) -> str:
    """Lowercase, collapse whitespace, strip outer punctuation/quotes."""
    return " ".join(text.lower().split()).strip(_PUNCT_EDGES).strip()


def _compact(tag: str) -> str:
    """Spacing/hyphen-insensitive key: "hip-hop", "hip hop", "hiphop" → "hiphop"."""
    return "".join(_WORD.findall(tag))


def _segment(word: str, *, lexicon: Counter) -> str:
    """Split a compound into the fewest lexicon words (each ≥ 2 chars); unchanged when impossible
    or when the compound itself is a lexicon word."""
    if lexicon.get(word, 0) >= MIN_SEGMENT_WORD_COUNT:
        return word
    n = len(word)
    best: list[list[str] | None] = [None] * (n + 1)
    best[0] = []
    for end in range(2, n + 1):
        for start in range(0, end - 1):
            piece = word[start:end]
            prev = best[start]
            if prev is None or lexicon.get(piece, 0) < MIN_SEGMENT_WORD_COUNT:
                continue
            cand = prev + [piece]
            if best[end] is None or len(cand) < len(best[end]):
                best[end] = cand
    return " ".join(best[n]) if best[n] and len(best[n]) > 1 else word


def _keep(tag: str) -> bool:
    return bool(tag) and len(tag) <= MAX_CHARS and len(tag.split()) <= MAX_WORDS and bool(_WORD.search(tag))


def build_vocabulary(
    *, data_dir: Path, size: int = 800, exclude_musiccaps_ids: Collection[str] = (),
) -> list[str]:
    """Curated vocabulary of at most ``size`` normalised tags, best first.

    Every MTG-Jamendo genre / instrument / mood tag plus the most frequent MusicCaps aspects,
    normalised (`normalise_tag`). MTG-Jamendo compounds ("easylistening") are segmented into words
    seen in the MusicCaps captions ("easy listening") so they can match running text; spellings that
    differ only in spacing/hyphens ("hip-hop", "hip hop", "hiphop") are one entry (the most frequent
    spelling with spaces). Aspects longer than ``MAX_WORDS`` words or ``MAX_CHARS`` characters, or
    seen in fewer than ``MIN_ASPECT_COUNT`` clips, are dropped. Order: MTG-Jamendo tags by track
    frequency, then MusicCaps aspects by clip frequency.

    ``exclude_musiccaps_ids``: MusicCaps ``ytid`` values whose aspects and captions must not be used
    (to evaluate extraction on clips held out of the vocabulary).
    """
    jam = pl.read_csv(
        Path(data_dir) / "corpus" / "mtg_jamendo_tags.csv",
        schema_overrides={"genres": pl.Utf8, "instruments": pl.Utf8, "moods": pl.Utf8},
    )
    caps = pl.read_csv(Path(data_dir) / "corpus" / "musiccaps.csv")
    if exclude_musiccaps_ids:
        caps = caps.filter(~pl.col("ytid").is_in(list(exclude_musiccaps_ids)))

    lexicon: Counter = Counter()
    for caption in caps.get_column("caption").drop_nulls():
        lexicon.update(_WORD.findall(caption.lower()))

    jam_counts: Counter = Counter()
    for col in ("genres", "instruments", "moods"):
        for value in jam.get_column(col).drop_nulls():
            jam_counts.update({normalise_tag(t) for t in value.split("|") if t.strip()})
    aspect_counts: Counter = Counter()
    for value in caps.get_column("aspect_list").drop_nulls():
        aspects = ast.literal_eval(value)
        aspect_counts.update({normalise_tag(str(a)) for a in aspects if str(a).strip()})

    # Merge spelling variants under a compact key; remember every surface form's frequency.
    forms: defaultdict[str, Counter] = defaultdict(Counter)
    jam_rank: dict[str, int] = {}
    for tag, count in jam_counts.most_common():
        key = _compact(tag)
        jam_rank.setdefault(key, len(jam_rank))
        forms[key][_segment(tag, lexicon=lexicon) if " " not in tag else tag] += count
    aspect_score: Counter = Counter()
    for tag, count in aspect_counts.items():
        if not _keep(tag):
            continue
        key = _compact(tag)
        forms[key][tag] += count
        aspect_score[key] += count

    def surface(key: str) -> str:
        ranked = sorted(forms[key].items(), key=lambda kv: (" " not in kv[0], -kv[1], kv[0]))
        return ranked[0][0]

    ordered = sorted(jam_rank, key=jam_rank.__getitem__)
    ordered += [
        key for key, count in sorted(aspect_score.items(), key=lambda kv: (-kv[1], kv[0]))
        if key not in jam_rank and count >= MIN_ASPECT_COUNT
    ]
    vocab: list[str] = []
    seen: set[str] = set()
    for key in ordered:
        tag = surface(key)
        if _keep(tag) and tag not in seen:
            seen.add(tag)
            vocab.append(tag)
        if len(vocab) >= size:
            break
    return vocab


def _match_grams(grams: Sequence[str], *, vocab: list[str], min_score: float) -> list[str | None]:
    """Each n-gram → its vocabulary tag: exact after normalisation (or spacing-insensitive), else
    the first best rapidfuzz ``ratio`` ≥ ``min_score`` (``process.extractOne``'s answer), scored with
    ``cdist`` ``GRAM_BLOCK`` grams at a time and the best candidates rescored exactly.
    Time O(g·V) string comparisons for g grams and V tags; memory O(g + GRAM_BLOCK·V)."""
    import numpy as np
    from rapidfuzz import fuzz, process

    exact = {v: v for v in vocab}
    exact.update({_compact(v): v for v in vocab if _compact(v) not in exact})
    keys = [normalise_tag(g.replace("-", " ")) for g in grams]
    out: list[str | None] = [exact.get(k) or exact.get(_compact(k)) for k in keys]
    fuzzy = [i for i, hit in enumerate(out) if hit is None]
    for start in range(0, len(fuzzy), GRAM_BLOCK):
        part = fuzzy[start:start + GRAM_BLOCK]
        rough = process.cdist([keys[i] for i in part], vocab, scorer=fuzz.ratio, score_cutoff=max(0.0, min_score - 1),
                              dtype=np.float32, workers=-1)
        for i, row in zip(part, rough):
            top = float(row.max())
            if top <= 0:
                continue
            scored = [(fuzz.ratio(keys[i], vocab[j]), j) for j in np.flatnonzero(row >= top - 0.01)]
            best = max(score for score, _ in scored)
            if best >= min_score:
                out[i] = vocab[min(j for score, j in scored if score == best)]
    return out


def tags_from_text(
    *, texts: Sequence[str], vocabulary: Sequence[str], top_n: int = 5, min_score: float = DEFAULT_MIN_SCORE,
) -> list[list[str]]:
    """Vocabulary tags found in each text → list (len(texts)) of ≤ ``top_n`` tags, best first.

    TF-IDF (1,2)-grams fitted on ``texts``; each text's n-grams, by descending weight, are mapped to
    the vocabulary (exact after normalisation, else rapidfuzz ratio ≥ ``min_score``: plural/spelling
    variants such as "guitars"→"guitar"; for short words an exact match, "rap" never becomes "trap"). A tag whose words
    are all inside an already chosen tag is skipped ("vocal" after "female vocal"). Empty/blank texts
    and texts without music words give [].

    Time O(N) tokens for TF-IDF, O(g·V) fuzzy comparisons for its g distinct n-grams (V tags), and
    O(N log) per-text ranking; memory O(N + g) (the sparse TF-IDF matrix).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    out: list[list[str]] = [[] for _ in texts]
    vocab = [normalise_tag(v) for v in vocabulary]
    live = [i for i, t in enumerate(texts) if t and _WORD.search(t.lower())]
    if not live or not vocab:
        return out
    vec = TfidfVectorizer(ngram_range=(1, 2), stop_words="english", lowercase=True, token_pattern=r"(?u)\b\w[\w-]*\b")
    try:
        matrix = vec.fit_transform([texts[i] for i in live]).tocsr()
    except ValueError:  # empty vocabulary: only stop words
        return out
    names = vec.get_feature_names_out()
    tag_of = _match_grams([str(g) for g in names], vocab=vocab, min_score=min_score)

    for row, i in enumerate(live):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        cols, weights = matrix.indices[start:end], matrix.data[start:end]
        order = sorted(range(len(cols)), key=lambda k: (-weights[k], names[cols[k]]))
        chosen: list[str] = []
        for k in order:
            tag = tag_of[cols[k]]
            if tag is None or tag in chosen:
                continue
            words = set(tag.split())
            if any(words <= set(c.split()) for c in chosen):
                continue
            chosen = [c for c in chosen if not set(c.split()) <= words or c == tag]
            chosen.append(tag)
            if len(chosen) >= top_n:
                break
        out[i] = chosen
    return out
