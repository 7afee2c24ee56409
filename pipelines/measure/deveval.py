"""Development evaluation sets for ``moodscape evaluate`` (Deezer val, EmoBank dev, EMOPIA val),
built in a folder OUTSIDE the repo by ``scripts/build_dev_eval.py``; ``PARTS_DOC`` says what each
part holds (it is copied into the sets' README).
"""

from pathlib import Path

import polars as pl

from pipelines import schema as S
from pipelines.heal.democorpus import label_free_id
from pipelines.store import REPO_ROOT, atomic_path

DEFAULT_DEV_EVAL = REPO_ROOT.parent / "shared" / "data" / "dev-eval"
EMOBANK_CANDIDATES = (
    REPO_ROOT / "data" / "text" / "emobank_train_dev.csv",
    REPO_ROOT.parent / "shared" / "data" / "open" / "text" / "emobank_train_dev.csv",
)
EMOPIA_DIR = REPO_ROOT / "data" / "emopia"
DEEZER_Z_SCALE = 2.5
# Russell quadrant → (valence sign, arousal sign)
QUADRANT_SIGNS: dict[int, tuple[float, float]] = {1: (1.0, 1.0), 2: (-1.0, 1.0), 3: (-1.0, -1.0), 4: (1.0, -1.0)}
AUDIO_SUFFIXES = (".ogg", ".wav", ".flac", ".opus", ".mp3")
PARTS = ("deezer", "emobank", "emopia")

PARTS_DOC = """\
Parts (each skipped with a message when its source is absent; the script still exits 0):

- ``deezer_val/``  corpus.csv + labels.csv from the Deezer mood dataset's validation split
  (``../shared/data/dev-eval/deezer_mood/validation.csv``, evaluation-only data: never copied
  into the project). Corpus = ``track_id`` ``deezer:<dzr_sng_id>``, ``title`` = track_name,
  ``artist`` = artist_name, nothing else. The source valence/arousal are z-scores; labels are
  ``clip(z / 2.5, −1, 1)`` (monotone, signs preserved; |z| > 2.5 is rare and saturates at ±1).
- ``emobank_dev/`` queries.csv from EmoBank's dev split (open data, ``data/text/`` or
  ``../shared/data/open/text/``): ``query`` = text, valence/arousal = (V − 3)/2, (A − 3)/2
  (the 1–5 scale mapped linearly onto [−1, 1]).
- ``emopia_val/``  corpus.csv (``track_id`` ``emopia:<sha1(clip_id)[:12]>``, ``audio_path`` relative to the
  corpus file) + labels.csv from EMOPIA's official val split, rendered from ``data/emopia/midis``
  with ``pipelines.audio.render.render_many``. EMOPIA has quadrants, not magnitudes: labels are
  sign-only ±1 (Q1 = (+1, +1), Q2 = (−1, +1), Q3 = (−1, −1), Q4 = (+1, −1)), so Pearson r / CCC
  on this set measure agreement with the quadrant signs, not with a graded mood.
"""


def _write_csv(df: pl.DataFrame, path: Path) -> Path:
    with atomic_path(path, ".csv") as tmp:
        df.write_csv(tmp)
    return path


def inside_repo(path: Path) -> bool:
    try:
        path.resolve().relative_to(REPO_ROOT)
        return True
    except ValueError:
        return False


def z_to_unit(z: pl.Expr, *, scale: float = DEEZER_Z_SCALE) -> pl.Expr:
    """z-score → [−1, 1]: clip(z / scale, −1, 1) (monotone, sign-preserving)."""
    return (z / scale).clip(-1.0, 1.0)


def build_deezer(*, dev_eval: Path, out: Path) -> str:
    """Deezer validation split → ``out/deezer_val/{corpus,labels}.csv``; returns a status line."""
    src = dev_eval / "deezer_mood" / "validation.csv"
    if not src.exists():
        return f"skipped: deezer — {src} absent"
    raw = pl.read_csv(src, schema_overrides={"dzr_sng_id": pl.Utf8})
    rows = raw.with_columns(
        (pl.lit("deezer:") + pl.col("dzr_sng_id").str.strip_chars()).alias(S.TRACK_ID)
    )
    dupes = rows.filter(pl.col(S.TRACK_ID).is_duplicated())
    if dupes.height:
        raise ValueError(f"{src}: {dupes.height} rows share a dzr_sng_id (first {dupes[S.TRACK_ID][0]})")
    corpus = rows.select(
        S.TRACK_ID, pl.col("track_name").alias(S.TITLE), pl.col("artist_name").alias(S.ARTIST)
    )
    labels = rows.select(
        S.TRACK_ID,
        z_to_unit(pl.col("valence").cast(pl.Float64)).alias(S.VALENCE),
        z_to_unit(pl.col("arousal").cast(pl.Float64)).alias(S.AROUSAL),
    )
    folder = out / "deezer_val"
    _write_csv(corpus, folder / "corpus.csv")
    _write_csv(labels, folder / "labels.csv")
    clipped = rows.filter(
        (pl.col("valence").abs() > DEEZER_Z_SCALE) | (pl.col("arousal").abs() > DEEZER_Z_SCALE)
    ).height
    return (f"deezer: {corpus.height} tracks → {folder} "
            f"(labels clip(z/{DEEZER_Z_SCALE}, −1, 1); {clipped} rows saturated)")


def build_emobank(*, out: Path) -> str:
    """EmoBank dev split → ``out/emobank_dev/queries.csv``; returns a status line."""
    src = next((p for p in EMOBANK_CANDIDATES if p.exists()), None)
    if src is None:
        return f"skipped: emobank — none of {[str(p) for p in EMOBANK_CANDIDATES]} present"
    eb = pl.read_csv(src)
    dev = eb.filter(pl.col("split") == "dev")
    if dev.height == 0:
        raise ValueError(f"{src} has no split == 'dev' rows")
    dev = dev.filter(pl.col("text").is_not_null() & (pl.col("text").str.strip_chars().str.len_chars() > 0))
    queries = dev.select(
        pl.col("text").str.strip_chars().alias("query"),
        ((pl.col("V").cast(pl.Float64) - 3.0) / 2.0).clip(-1.0, 1.0).alias(S.VALENCE),
        ((pl.col("A").cast(pl.Float64) - 3.0) / 2.0).clip(-1.0, 1.0).alias(S.AROUSAL),
    )
    folder = out / "emobank_dev"
    _write_csv(queries, folder / "queries.csv")
    return f"emobank: {queries.height} dev queries → {folder} (from {src}; V, A ↦ (x − 3)/2)"


def _find_audio(out_dir: Path, clip_id: str) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        p = out_dir / f"{clip_id}{suffix}"
        if p.exists() and p.stat().st_size > 0:
            return p
    return None


def build_emopia(*, out: Path, workers: int, progress: bool) -> str:
    """EMOPIA val clips → ``out/emopia_val/{corpus,labels}.csv`` + rendered audio in ``audio/``."""
    labels_src = EMOPIA_DIR / "labels.csv"
    midis = EMOPIA_DIR / "midis"
    if not labels_src.exists() or not midis.is_dir():
        return f"skipped: emopia — {labels_src} or {midis} absent"
    from pipelines.audio.render import render_many
    lab = pl.read_csv(labels_src).filter(pl.col("split") == "val").sort("clip_id")
    items: list[tuple[str, Path]] = []
    for clip_id in lab["clip_id"].to_list():
        path = midis / f"{clip_id}.mid"
        if not path.exists():
            raise FileNotFoundError(f"EMOPIA MIDI missing for {clip_id}: {path}")
        items.append((clip_id, path))
    folder = out / "emopia_val"
    audio = folder / "audio"
    rendered = render_many(items=items, out_dir=audio, workers=workers, progress=progress)
    errors: dict[str, str] = {}
    if isinstance(rendered, pl.DataFrame) and "render_error" in rendered.columns:
        errors = {r["clip_id"]: r["render_error"] for r in rendered.iter_rows(named=True)
                  if r.get("render_error")}
    corpus_rows, label_rows = [], []
    for clip_id, quadrant in lab.select("clip_id", "quadrant").iter_rows():
        file = _find_audio(audio, clip_id)
        if file is None:
            errors.setdefault(clip_id, "no audio file after rendering")
            continue
        v, a = QUADRANT_SIGNS[int(quadrant)]
        # label-free id and row order: EMOPIA clip ids begin with their quadrant ("Q1_…"), which would
        # leak the label wherever ids or rows order anything (the baseline's ties among tracks without text)
        track_id = label_free_id(prefix="emopia", key=clip_id)
        corpus_rows.append({S.TRACK_ID: track_id, S.AUDIO_PATH: str(file.relative_to(folder))})
        label_rows.append({S.TRACK_ID: track_id, S.VALENCE: v, S.AROUSAL: a})
    if not corpus_rows:
        raise RuntimeError(f"no EMOPIA clip rendered (first error: {next(iter(errors.items()), None)})")
    _write_csv(pl.DataFrame(corpus_rows).sort(S.TRACK_ID), folder / "corpus.csv")
    _write_csv(pl.DataFrame(label_rows).sort(S.TRACK_ID), folder / "labels.csv")
    note = f"; {len(errors)} failed (first: {next(iter(errors.items()))})" if errors else ""
    return f"emopia: {len(corpus_rows)} of {len(items)} val clips → {folder} (sign-only ±1 labels){note}"
