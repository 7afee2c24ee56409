"""Music vs non-music: a documented heuristic over text and, where present, audio features.

A crawl of music sites is mostly music, so a track is music unless there is explicit evidence:
a non-music cue (``NON_MUSIC_LEXICON``: spoken word, field recordings and sound effects, animal
sounds) in its text (`text_verdict`), or audio with weak rhythmic *and* weak tonal structure
(`PULSE_MAX`, `KEY_MAX`, `CHROMA_STD_MIN`, `ONSET_RATE_MIN`). A text non-music verdict wins; then
music evidence in the text (a genre or a ``MUSIC_LEXICON`` word) overrides a non-music audio
verdict (an ambient drone can lack pulse and key); then audio; then the default, music.

Captioned clips (MusicCaps) often pair music with other sounds; such a clip is non-music when a
non-music sound (``SOUND_EVENTS``) *leads* it (`leading_sounds`): it comes before any music word in
the caption's first sentence, it is the first tag (or the second after a tag without music words),
or three or more distinct ones are named; a lesson, tutorial or commentary where someone talks is
spoken word. A siren somewhere under a described song does not count.
"""

import re
from dataclasses import dataclass

import polars as pl

from pipelines.schema import (
    AUDIO_ERROR,
    DESCRIPTION,
    GENRE,
    IS_MUSIC,
    MUSIC_REASON,
    TAGS,
    TITLE,
    TRACK_ID,
    VIBE_TEXT,
)
from pipelines.store import StoreLayout

PULSE_CLARITY = "pulse_clarity"
KEY_STRENGTH = "key_strength"
ZCR_STD = "zcr_std"
RMS_LOW_ENERGY_RATIO = "rms_low_energy_ratio"
CHROMA_STD = "chroma_std"
ONSET_RATE = "onset_rate"
# Audio rule: weak pulse *and* weak key is non-music (speech, animal and nature recordings). On the
# bundled librosa clips the LibriSpeech readings, the humpback whale and the dog howl fall inside,
# every music clip outside (Brahms has a weak pulse but a strong key, Vibe Ace the reverse); the
# speech rule of thumb "high ZCR variance + many low-energy frames" did not separate these clips,
# so ``zcr_std`` and ``rms_low_energy_ratio`` are only reported in the reason. A starting point,
# not a calibrated model.
PULSE_MAX = 0.15
KEY_MAX = 0.5
# Third condition: sparse, rubato solo piano (EMOPIA) also has weak
# pulse and key (11 of 990 EMOPIA clips fell inside the first two thresholds), but its pitch
# content holds still (chroma_std ≤ 0.30 on all 990) and its onsets are few (≤ 3.7/s); speech and
# animal sounds smear across pitch classes (chroma_std 0.30–0.35) or, for speech, fire 3.9–4.9
# onsets/s. Non-music needs one of those two as well.
CHROMA_STD_MIN = 0.30
ONSET_RATE_MIN = 3.8


@dataclass(frozen=True)
class Cue:
    """One non-music cue: a name for the reason, a regex, and whether titles are searched."""

    name: str
    pattern: str
    in_title: bool = True


# Documented lexicon. Patterns are compiled case-insensitively with word boundaries around them.
NON_MUSIC_LEXICON: tuple[Cue, ...] = (
    # spoken word
    Cue("podcast", r"podcasts?"),
    Cue("episode", r"episodes?|ep\.\s?\d+"),
    Cue("interview", r"interview(?:s|ed|ing)?"),
    Cue("audiobook", r"audio\s?books?"),
    Cue("chapter", r"chapter\s+(?:\d+|[ivxlc]+|one|two|three|four|five|six|seven|eight|nine|ten)"),
    Cue("read by", r"read\s+by|narrated\s+by|narration"),
    Cue("lecture", r"lectures?"),
    Cue("sermon", r"sermons?|homily"),
    Cue("speech", r"speech(?:es)?"),
    Cue("talk show", r"talk\s+show|talk\s+radio"),
    Cue("stand-up", r"stand[\s-]?up\s+comedy|comedy\s+special"),
    Cue("guided meditation", r"guided\s+meditation"),
    Cue("spoken word", r"spoken\s+words?"),
    # recordings that are not music
    Cue("field recording", r"field\s+recordings?"),
    Cue("sound effect", r"sound\s+effects?|sfx|foley"),
    Cue("noise", r"(?:white|pink|brown)\s+noise"),
    Cue("ambience", r"(?:city|street|forest|rain|ocean|nature|room)\s+ambien(?:ce|t\s+sound)"),
    # animals
    Cue("howling", r"howl(?:s|ing|ed)", in_title=False),
    Cue("barking", r"bark(?:s|ing|ed)", in_title=False),
    Cue("bird call", r"birdsong|bird\s+(?:calls?|whistl\w*|chirp\w*|song)"
        r"|birds?\b.{0,40}?\b(?:chirp\w*|whistl\w*|calls?)|chirp(?:s|ing)",
        in_title=False),
    Cue("whale", r"humpback|whale\s+(?:song|calls?|sounds?)", in_title=False),
)

# Genres that are themselves non-music (SoundCloud's "Spoken Word", "Audiobooks", …).
NON_MUSIC_GENRES = re.compile(
    r"^\s*(?:spoken\s*word|audio\s?books?|podcasts?|comedy|news|sound\s*effects?|sports|"
    r"religion(?:\s*&\s*spirituality)?|education|storytelling|business|science)\s*$",
    re.IGNORECASE,
)

# Words that say the text describes music. A non-music cue in tags/description/vibe text counts only
# when none of these occurs (outside the cue itself and not negated): "bagpipes melody while a dog
# is howling" and "white noise behind an e-piano blues" are music; "humpback whale song" is not.
MUSIC_LEXICON = re.compile(
    r"\b(?:songs?|music(?:al)?|melod(?:y|ies|ic)|instrumentals?|tempo|bpm|beats?|rhythms?|grooves?|groovy|"
    r"chords?|harmon(?:y|ies|ic)|vocal(?:s|ist)?|singers?|sings?|singing|sung|rap(?:s|per|ping)?|"
    r"guitars?|piano|drums?|drumming|bass(?:line)?|synth(?:s|esizer|esiser)?|keyboards?|violins?|cello|"
    r"strings|orchestra(?:l)?|choir|percussion|trumpets?|sax(?:ophone)?|flute|organ|bagpipes?|accordion|"
    r"lullaby|remix(?:es)?|album|ep|genre|jazz|blues|rock|pop|hip[\s-]?hop|techno|edm|dubstep|reggae|"
    r"country|folk|classical|metal|punk|funk|disco|soul|ballad|waltz|ragtime|symphony|sonata|concerto)\b",
    re.IGNORECASE,
)

# Non-music sounds a caption may name (speech, sound effects, ambience, events, animals).
SOUND_EVENTS = re.compile(
    r"\b(?:sound\s+effects?|sound\s+fx|sfx|foley|sirens?|crying|cries|crumpl\w*|explosions?|gunshots?|"
    r"gun\s*(?:fire|shots?)|car\s+crash|crash(?:ing)?\s+sounds?|footsteps?|field\s+recordings?|"
    r"ambien(?:ce|t\s+(?:street\s+|room\s+|outdoor\s+)?(?:noises?|sounds?))|nature\s+(?:sounds?|atmosphere)|"
    r"sounds?\s+of\s+nature|animal\s+sounds?|birds?\s+(?:chirp\w*|singing|calls?)|chirping\s+birds|barking|"
    r"howling|speech|speaking|speaks|talking|talks|narrat(?:ion|ing|ors?|es|ed)|monologue|battle\s*cry|war\s+horn|alarms?|"
    r"engines?|thunder\w*|rain\s+sounds?|sounds?\s+of\s+rain|water\s+(?:sounds?|splash\w*|flowing|drop\w*)|"
    r"sounds?\s+of\s+water|wind\s+(?:noises?|sounds?|blowing|howling)|traffic|door\s+(?:closing|opening|slam\w*)|"
    r"glass\s+(?:shatter\w*|break\w*)|screams|groan\w*|(?:banging|knocking|clanging|scraping|squeaking|munching)"
    r"\s+(?:sounds?|noises?))\b",
    re.IGNORECASE,
)
# A lesson, tutorial or commentary in which someone talks is spoken word, whatever it demonstrates.
SPOKEN_FORMAT = re.compile(r"\b(?:tutorials?|lessons?|master\s?class(?:es)?|commentary|vlogs?|video\s+blogs?)\b",
                           re.IGNORECASE)
SPEAKING = re.compile(r"\b(?:talk(?:s|ing)|speak(?:s|ing)|narrat(?:ion|ing|ors?|es|ed)|monologue|speech)\b",
                      re.IGNORECASE)
LEADING_SOUNDS_MIN = 3  # this many distinct non-music sounds named make a clip non-music
_RECORDING_TAG = re.compile(r"quality|recording|noisy|\bmono\b|lo-?fi|fidelity|amateur", re.IGNORECASE)
_VOICE_WORD = re.compile(r"^vocal", re.IGNORECASE)  # "a flat male vocal talking" is the speech itself
_FIRST_SENTENCE = re.compile(r"(?<=[.!?])\s")

_NEGATION = re.compile(r"\b(?:no|without|not|non|nor|zero|free\s+of)\s+(?:\w+\s+){0,2}$", re.IGNORECASE)
# one alternation, one named group per cue: a single scan of each text
_COMBINED = re.compile(
    "|".join(rf"(?P<c{i}>\b(?:{cue.pattern})\b)" for i, cue in enumerate(NON_MUSIC_LEXICON)), re.IGNORECASE
)
_RUST_CUES = "(?i)" + "|".join(rf"\b(?:{cue.pattern})\b" for cue in NON_MUSIC_LEXICON)
_RUST_CUES += "|" + SOUND_EVENTS.pattern
_RUST_GENRES = "(?i)" + NON_MUSIC_GENRES.pattern
_TEXT_COLUMNS = (TITLE, GENRE, TAGS, DESCRIPTION, VIBE_TEXT)
_FORMAT_COLUMNS = (TITLE, GENRE)  # a cue here names what the upload is, whatever else is said


def _negated(text: str, start: int) -> bool:
    return bool(_NEGATION.search(text[max(0, start - 40):start]))


def text_cues(*, column: str, text: str | None) -> tuple[list[str], str]:
    """(non-music cue names found in ``text`` of ``column``, not negated; the text with every cue
    span blanked out, for the music-evidence search)."""
    if not text:
        return [], ""
    found: list[str] = []
    if column == GENRE and NON_MUSIC_GENRES.match(text):
        return [f"genre {text.strip()!r}"], ""
    masked = text
    for m in _COMBINED.finditer(text):
        cue = NON_MUSIC_LEXICON[int(m.lastgroup[1:])]
        if (column == TITLE and not cue.in_title) or _negated(text, m.start()):
            continue
        if cue.name not in found:
            found.append(cue.name)
        masked = masked[:m.start()] + " " * (m.end() - m.start()) + masked[m.end():]
    return found, masked


def music_evidence(*, text: str) -> str | None:
    """The first music word in ``text`` that is not negated, else None."""
    for m in MUSIC_LEXICON.finditer(text):
        if not _negated(text, m.start()):
            return m.group(0)
    return None


def _sound_key(text: str) -> str:
    return re.sub(r"s\b", "", " ".join(text.lower().split()))


def leading_sounds(*, row: dict[str, str | None]) -> str | None:
    """Why the row's caption is led by non-music sounds (see the module docstring), else None.

    Reads tags (comma-separated, recording-quality tags such as "low quality" skipped), description
    and vibe text; a sound preceded by a negation ("no speech") is ignored.
    """
    tags = [t.strip() for t in re.split(r"[,|]", row.get(TAGS) or "") if t.strip()]
    tags = [t for t in tags if not _RECORDING_TAG.search(t)]
    captions = [c.strip() for c in (row.get(DESCRIPTION), row.get(VIBE_TEXT)) if c and c.strip()]
    for caption in captions:
        first = _FIRST_SENTENCE.split(caption, maxsplit=1)[0]
        sound = next((m for m in SOUND_EVENTS.finditer(first) if not _negated(first, m.start())), None)
        if sound is None:
            continue
        before = [w for w in MUSIC_LEXICON.finditer(first[:sound.start()])
                  if not _VOICE_WORD.match(w.group(0)) and not _negated(first, w.start())]
        if not before:
            return f"{sound.group(0).lower()!r} leads the caption"
    for i, tag in enumerate(tags[:2]):
        sound = SOUND_EVENTS.search(tag)
        if sound is not None and not _negated(tag, sound.start()) and (i == 0 or not MUSIC_LEXICON.search(tags[0])):
            return f"{sound.group(0).lower()!r} leads the tags"
    text = " | ".join([*tags, *captions])
    fmt, said = SPOKEN_FORMAT.search(text), SPEAKING.search(text)
    if fmt is not None and said is not None and not _negated(text, said.start()):
        return f"spoken {fmt.group(0).lower()} ({said.group(0).lower()!r})"
    named = dict.fromkeys(_sound_key(m.group(0)) for m in SOUND_EVENTS.finditer(text) if not _negated(text, m.start()))
    if len(named) >= LEADING_SOUNDS_MIN:
        return f"{len(named)} non-music sounds named ({', '.join(list(named)[:4])})"
    return None


def text_verdict(*, row: dict[str, str | None]) -> tuple[bool | None, str | None]:
    """Text columns of one track → (False, reason) on non-music evidence, (True, reason) on music
    evidence, (None, reason-or-None) when the text says neither.

    Cues are word-boundary regexes, case-insensitive; a cue preceded by a negation ("no speech") is
    ignored. A cue in the **title** or **genre** names what the upload is ("Episode 12", genre
    "Spoken Word"): non-music (animal cues are not read from titles: "Howl", "Free Bird" are songs).
    A cue in **tags, description or vibe text** may only describe part of a piece ("a bagpipes
    melody while a dog is howling"): it makes the track non-music only when the row has no music
    evidence — no genre and no ``MUSIC_LEXICON`` word outside the cue spans and not negated
    ("humpback whale song" does not count as "song"). A caption led by non-music sounds
    (:func:`leading_sounds`) is non-music whatever else it says.
    """
    strong: tuple[str, str] | None = None
    weak: tuple[str, str] | None = None
    masked_parts: list[str] = []
    for col in _TEXT_COLUMNS:
        cues, masked = text_cues(column=col, text=row.get(col))
        masked_parts.append(masked)
        if cues and col in _FORMAT_COLUMNS and strong is None:
            strong = (cues[0], col)
        elif cues and weak is None:
            weak = (cues[0], col)
    if strong is not None:
        return False, f"text: {strong[0]} in {strong[1]}"
    lead = leading_sounds(row=row)
    if lead is not None:
        return False, f"text: {lead}"
    genre = row.get(GENRE)
    word = f"genre {genre.strip()!r}" if genre and genre.strip() else music_evidence(text=" | ".join(masked_parts))
    if weak is not None and word is None:
        return False, f"text: {weak[0]} in {weak[1]}, no music words"
    if word is not None:
        note = f" (despite {weak[0]} in {weak[1]})" if weak is not None else ""
        return True, f"text: {word!r}{note}"
    return None, None


def _audio_verdict(feat: dict[str, float | None] | None) -> tuple[bool | None, str | None]:
    """(is_music, reason) from audio features, or (None, None) when there is no audio evidence."""
    if not feat:
        return None, None
    pulse, key = feat.get(PULSE_CLARITY), feat.get(KEY_STRENGTH)
    if pulse is None or key is None:
        return None, None
    chroma_std, onsets = feat.get(CHROMA_STD), feat.get(ONSET_RATE)
    smeared = chroma_std is None or onsets is None or chroma_std > CHROMA_STD_MIN or onsets > ONSET_RATE_MIN
    if pulse < PULSE_MAX and key < KEY_MAX and smeared:
        zcr_std, low = feat.get(ZCR_STD), feat.get(RMS_LOW_ENERGY_RATIO)
        kind = ""
        if zcr_std is not None and low is not None:
            kind = f"; zcr_std {zcr_std:.3f}, low-energy frames {low:.2f}"
        return False, (f"audio: weak pulse (pulse_clarity {pulse:.2f} < {PULSE_MAX}) and weak tonality "
                       f"(key_strength {key:.2f} < {KEY_MAX}){kind}")
    return True, f"audio: pulse_clarity {pulse:.2f}, key_strength {key:.2f} look like music"


def classify_music(*, tracks: pl.DataFrame, audio_features: pl.DataFrame | None) -> pl.DataFrame:
    """Tracks (crawl schema; missing text columns are treated as null) + optional audio features
    (``track_id`` + ``pipelines.audio.features`` columns, one row per track, nulls allowed) → frame of shape
    (n_tracks, 3): ``track_id`` Utf8, ``is_music`` Boolean, ``music_reason`` Utf8, in input order.

    Time O(n) regex scans in polars (Rust) plus Python text rules only for the c rows with a
    possible cue or a non-music audio verdict; memory O(n) (one hashed audio row per track).
    """
    cols = [c for c in _TEXT_COLUMNS if c in tracks.columns]
    feats: dict[str, dict[str, float | None]] = {}
    if (audio_features is not None and audio_features.height
            and {PULSE_CLARITY, KEY_STRENGTH} <= set(audio_features.columns)):
        wanted = (TRACK_ID, PULSE_CLARITY, KEY_STRENGTH, ZCR_STD, RMS_LOW_ENERGY_RATIO, CHROMA_STD, ONSET_RATE)
        keep = [c for c in wanted if c in audio_features.columns]
        feats = {r[TRACK_ID]: r for r in audio_features.select(keep).iter_rows(named=True)}

    # Vectorised pre-filter (Rust regex): only rows with a possible cue get the Python scan.
    hit_exprs = [pl.col(c).str.contains(_RUST_CUES).fill_null(False) for c in cols]
    if GENRE in cols:
        hit_exprs.append(pl.col(GENRE).str.contains(_RUST_GENRES).fill_null(False))
    hits = (tracks.select(pl.any_horizontal(hit_exprs)).to_series().to_list() if hit_exprs
            else [False] * tracks.height)

    ids = tracks.get_column(TRACK_ID).to_list()
    audio = [_audio_verdict(feats.get(tid)) for tid in ids] if feats else [(None, None)] * len(ids)
    scan = [i for i, (maybe_cue, (audio_is_music, _)) in enumerate(zip(hits, audio))
            if maybe_cue or audio_is_music is False]
    # only rows with a possible cue or a non-music audio verdict are read row by row
    rows = tracks[scan].select(TRACK_ID, *cols).iter_rows(named=True) if scan else []
    text = {i: text_verdict(row=row) for i, row in zip(scan, rows)}
    verdicts, reasons = [], []
    for i, (audio_is_music, audio_reason) in enumerate(audio):
        text_is_music, text_reason = text.get(i, (None, None))  # no cue: the text says "music" or nothing
        if text_is_music is False:
            verdict, reason = False, text_reason
        elif audio_is_music is False and text_is_music:
            verdict, reason = True, f"{text_reason} overrides {audio_reason}"
        elif audio_is_music is not None:
            verdict, reason = audio_is_music, audio_reason
        elif text_is_music:
            verdict, reason = True, text_reason
        else:
            verdict, reason = True, "default: no non-music evidence (a crawl of music sites)"
        verdicts.append(verdict)
        reasons.append(reason)
    return pl.DataFrame(
        {TRACK_ID: ids, IS_MUSIC: verdicts, MUSIC_REASON: reasons},
        schema={TRACK_ID: pl.Utf8(), IS_MUSIC: pl.Boolean(), MUSIC_REASON: pl.Utf8()},
    )


__all__ = ["classify_music", "text_verdict", "text_cues", "music_evidence", "leading_sounds", "NON_MUSIC_LEXICON",
           "NON_MUSIC_GENRES", "MUSIC_LEXICON", "SOUND_EVENTS", "Cue"]


def classify_store_crawl(layout: StoreLayout) -> pl.DataFrame:
    """:func:`classify_music` over a built store's ``raw_tracks`` and its extracted audio features
    (rows without an ``audio_error``): the crawl's rows with ``is_music`` and ``music_reason``, in order."""
    raw = pl.read_parquet(layout.table("raw_tracks"))
    feats_path = layout.table("audio_features")
    feats = pl.read_parquet(feats_path) if feats_path.exists() else None
    if feats is not None and AUDIO_ERROR in feats.columns:
        feats = feats.filter(pl.col(AUDIO_ERROR).is_null())
    out = classify_music(tracks=raw, audio_features=feats)
    return raw.join(out, on=TRACK_ID, how="left", maintain_order="left")
