"""A synthetic crawl of any size, shaped like a real one: real demo rows resampled (their own null
pattern kept), titles and tags perturbed, artists drawn from a Zipf law, duplicate and malformed rows,
and links rewritten to loopback hosts (live ones and a share of dead ones). Pure and seeded.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.schema import (
    ARTIST,
    AUDIO_PATH,
    CRAWL_COLUMNS,
    CREATED_AT,
    PERMALINK_URL,
    PLAYBACK_COUNT,
    SOURCE,
    TAGS,
    TITLE,
    TRACK_ID,
    YEAR,
)

TITLE_VARIANTS = ("(live)", "(remix)", "(demo)", "II", "- edit", "(acoustic)", "reprise", "(radio edit)")
# How a malformed row is broken; every kind is quarantined by the ingest.
MALFORMED_KINDS = ("year_not_a_number", "plays_not_an_integer", "ambiguous_created_at", "no_identity")


@dataclass(frozen=True)
class CrawlShape:
    """Shares of the generated rows (of ``rows``) and the artist law."""

    duplicate_share: float = 0.02  # rows repeating an earlier row's track_id (half with a changed field)
    malformed_share: float = 0.005  # rows the ingest quarantines (``MALFORMED_KINDS`` in turn)
    dead_share: float = 0.05  # of the rows with a link: the link points at a dead host
    zipf_s: float = 0.8  # artist popularity exponent (rank k drawn ∝ k^-s)
    tracks_per_artist: int = 25  # artist pool size = max(real artists, rows / this)


def demo_prototypes(*, data_dir: Path, jamendo_limit: int | None, emopia_audio: dict[str, str]) -> pl.DataFrame:
    """The rows ``make run`` ingests: the demo crawl, EMOPIA clips only where their audio was rendered."""
    from pipelines.heal.democorpus import SOURCE_EMOPIA, build_demo_crawl

    demo = build_demo_crawl(data_dir=data_dir, jamendo_limit=jamendo_limit, emopia_audio=emopia_audio)
    return demo.filter((pl.col(SOURCE) != SOURCE_EMOPIA) | pl.col(AUDIO_PATH).is_not_null())


def _tag_vocabulary(tags: Sequence[str | None]) -> list[str]:
    return sorted({t.strip() for s in tags if s for t in s.split(",") if t.strip()})


def _perturb_tags(value: str | None, *, rng: np.random.Generator, vocab: list[str]) -> str | None:
    """Shuffle the tags, drop one (30 %), add one from the vocabulary (50 %)."""
    if value is None:
        return None
    tags = [t.strip() for t in value.split(",") if t.strip()]
    if len(tags) > 1 and rng.random() < 0.3:
        tags.pop(int(rng.integers(len(tags))))
    if vocab and rng.random() < 0.5:
        tags.append(vocab[int(rng.integers(len(vocab)))])
    order = rng.permutation(len(tags))
    return ", ".join(tags[i] for i in order) if tags else None


def _perturb_title(value: str | None, *, rng: np.random.Generator) -> str | None:
    if value is None or rng.random() < 0.5:
        return value
    return f"{value} {TITLE_VARIANTS[int(rng.integers(len(TITLE_VARIANTS)))]}"


def zipf_artists(real: Sequence[str], *, n: int, pool: int, s: float, rng: np.random.Generator) -> list[str]:
    """``n`` artist names drawn from a pool of ``pool`` names (the real ones, then numbered variants)
    with P(rank k) ∝ k^-s; the pool order is shuffled so the most popular artist is any of them."""
    names = list(dict.fromkeys(real)) or ["artist"]
    base = len(names)
    names += [f"{names[i % base]}-{i // base}" for i in range(base, max(pool, base))]
    rng.shuffle(names)
    weights = np.arange(1, len(names) + 1, dtype=np.float64) ** -s
    picks = rng.choice(len(names), size=n, p=weights / weights.sum())
    return [names[i] for i in picks]


def _link(url: str | None, i: int, *, dead: bool, live_bases: Sequence[str], dead_bases: Sequence[str]) -> str | None:
    """The original link carried as the path of a loopback host: ``<base>/g<i>/<host><path>``."""
    if url is None or not live_bases:
        return url
    rest = url.split("://", 1)[-1]
    bases = dead_bases if dead and dead_bases else live_bases
    return f"{bases[i % len(bases)]}/g{i}/{rest}"


def _malform(row: dict, kind: str) -> dict:
    row = dict(row)
    if kind == "year_not_a_number":
        row[YEAR] = "abc"
    elif kind == "plays_not_an_integer":
        row[PLAYBACK_COUNT] = "1.234"
    elif kind == "ambiguous_created_at":
        row[YEAR] = None
        row[CREATED_AT] = "05/01/2020"
    else:
        row.update({TRACK_ID: None, PERMALINK_URL: None, TITLE: None})
    return row


def generate_crawl(
    prototypes: pl.DataFrame,
    *,
    rows: int,
    seed: int = 0,
    start: int = 0,
    shape: CrawlShape = CrawlShape(),
    live_bases: Sequence[str] = (),
    dead_bases: Sequence[str] = (),
) -> pl.DataFrame:
    """``rows`` crawl rows (every column Utf8, ``CRAWL_COLUMNS`` order) resampled from ``prototypes``.

    Track ids are ``<source>:g<seed>-<start + i>`` (``start`` lets a later batch add new ids). Of the
    rows, ``shape.duplicate_share`` repeat a generated id and ``shape.malformed_share`` are malformed;
    with ``live_bases`` every link becomes a loopback URL, ``shape.dead_share`` of them on ``dead_bases``.
    """
    if prototypes.height == 0 or rows < 0:
        raise ValueError("generate_crawl needs prototypes and rows >= 0")
    rng = np.random.default_rng([seed, start])
    n_dup = round(rows * shape.duplicate_share)
    n_bad = round(rows * shape.malformed_share)
    n_base = rows - n_dup - n_bad
    if n_base <= 0 and rows:
        raise ValueError(f"{rows} rows leave no room for tracks besides duplicates and malformed rows")
    proto = prototypes.select(CRAWL_COLUMNS).cast({YEAR: pl.Utf8, PLAYBACK_COUNT: pl.Utf8})
    picked = proto[rng.integers(0, proto.height, n_base).tolist()] if n_base > 0 else proto.clear()
    vocab = _tag_vocabulary(proto.get_column(TAGS).to_list())
    real_artists = sorted(a for a in proto.get_column(ARTIST).unique().to_list() if a)
    has_artist = picked.get_column(ARTIST).is_not_null().to_numpy()
    artists = zipf_artists(real_artists, n=int(has_artist.sum()), rng=rng, s=shape.zipf_s,
                           pool=max(len(real_artists), rows // shape.tracks_per_artist))
    artist_iter = iter(artists)
    dead = rng.random(n_base) < shape.dead_share
    out: list[dict] = []
    for i, row in enumerate(picked.iter_rows(named=True)):
        g = start + i
        row[TRACK_ID] = f"{row[SOURCE] or 'crawl'}:g{seed}-{g}"
        row[TITLE] = _perturb_title(row[TITLE], rng=rng)
        row[TAGS] = _perturb_tags(row[TAGS], rng=rng, vocab=vocab)
        row[ARTIST] = next(artist_iter) if has_artist[i] else None
        row[PERMALINK_URL] = _link(row[PERMALINK_URL], g, dead=bool(dead[i]), live_bases=live_bases,
                                   dead_bases=dead_bases)
        out.append(row)
    for j in range(n_dup):
        copy = dict(out[int(rng.integers(n_base))])
        if j % 2:
            copy[TAGS] = _perturb_tags(copy[TAGS], rng=rng, vocab=vocab)
        out.append(copy)
    for j in range(n_bad):
        row = dict(out[int(rng.integers(n_base))])
        row[TRACK_ID] = f"{row[SOURCE] or 'crawl'}:g{seed}-{start + n_base + j}"
        out.append(_malform(row, MALFORMED_KINDS[j % len(MALFORMED_KINDS)]))
    order = rng.permutation(len(out))
    frame = pl.DataFrame({c: [out[k][c] for k in order] for c in CRAWL_COLUMNS},
                         schema={c: pl.Utf8 for c in CRAWL_COLUMNS})
    return frame


def null_rates(frame: pl.DataFrame, columns: Sequence[str] = CRAWL_COLUMNS) -> dict[str, float]:
    """Share of null cells per column."""
    n = max(frame.height, 1)
    return {c: round(frame.get_column(c).null_count() / n, 4) for c in columns}
