"""Version dedup: one key per (artist, song) so "Song" and "Song (Live)" count as one result.

``canonical_title`` lower-cases a title, strips *version markers* and normalises punctuation and
whitespace; ``canonical_keys`` does the same for whole columns (polars string kernels, no Python
loop per row) and joins ``artist\\x1ftitle``.

What is a version of the same song (stripped, in brackets ``(…)``/``[…]`` or after a spaced dash
``" - …"``, or ``feat./ft./featuring …`` to the end of the title):

=========================  =====================================================================
marker                      examples
=========================  =====================================================================
live                        "(Live)", " - Live at Wembley", "[Live 1986]"
remaster, remastered        " - Remastered 2011", "(2011 Remaster)", "(Remastered Version)"
edit                        "[Radio Edit]", "(Single Edit)", "(Album Edit)", "(Edit)"
mono, stereo                "(Mono)", " - Stereo Version", "(Stereo Mix)"
deluxe, demo, version       "(Deluxe Edition)", "(Demo)", "(Album Version)", "(Acoustic Version)"
original/radio/album mix    "(Original Mix)", "(Radio Mix)" — the song itself, not a remix
explicit, clean, bonus      "(Explicit)", "(Clean)", "(Bonus Track)"
feat., ft., featuring       "(feat. X)", "[ft. X]", "Song feat. X"
=========================  =====================================================================

Kept distinct (a bracket or dash part that mentions any of these is never stripped, even if it
also holds a version word — "(Live Remix)" stays): remix, rmx, mix (other than the original/
radio/album/single/mono/stereo mix above), cover, instrumental, karaoke, acapella/a cappella,
reprise. A remix, cover or instrumental is a different recording a listener may want next to the
original.

Limits: markers are English; a title whose only words are a marker ("Live") keeps its full
normalised text; a null artist or title has no key (never deduplicated).
"""

import numpy as np
import polars as pl

KEY_SEP = "\x1f"
_V = (
    r"live|remaster|remastered|remasters|edit|mono|stereo|deluxe|demo|version|explicit|clean|bonus"
    r"|feat|ft|featuring"
)
_D = r"remix|remixed|rmx|mix|cover|instrumental|karaoke|acapella|a cappella|reprise"
_OPEN, _CLOSE, _DASH = "\x02", "\x03", "\x04"  # sentinels for protected (distinct) parts


def canonical_title_expr(expr: pl.Expr) -> pl.Expr:
    """Polars expression: titles (String) → canonical title (String, null for null/blank)."""
    e = (
        expr.str.to_lowercase()
        .str.replace_all(r"[\u2010-\u2015\u2212]", "-")
        .str.replace_all(r"\s+", " ")
        # The song itself, named as a "mix": make it a version word before "mix" marks remixes.
        .str.replace_all(r"\b(original|radio|album|single|mono|stereo)\s+mix\b", "$1 version")
        # Protect bracket groups and dash parts that name a distinct recording.
        .str.replace_all(rf"[\(\[]([^\(\)\[\]]*\b(?:{_D})\b[^\(\)\[\]]*)[\)\]]", f"{_OPEN}$1{_CLOSE}")
        .str.replace_all(rf"\s-\s([^-]*\b(?:{_D})\b[^-]*)$", f" {_DASH} $1")
        # Strip version bracket groups anywhere, then (twice) a trailing version dash part.
        .str.replace_all(rf"\s*[\(\[][^\(\)\[\]]*\b(?:{_V})\b[^\(\)\[\]]*[\)\]]", "")
        .str.replace(rf"\s-\s[^-]*\b(?:{_V})\b[^-]*$", "")
        .str.replace(rf"\s-\s[^-]*\b(?:{_V})\b[^-]*$", "")
        .str.replace(r"\s(?:feat|ft|featuring)\b\.?\s.*$", "")
        # Punctuation and sentinels become spaces; collapse.
        .str.replace_all(r"[^\p{L}\p{N}]+", " ")
        .str.strip_chars()
    )
    out = pl.when(e == "").then(_plain_title_expr(expr)).otherwise(e)
    return pl.when(out == "").then(None).otherwise(out)


def _plain_title_expr(expr: pl.Expr) -> pl.Expr:
    """Lower-cased, punctuation → spaces, collapsed; null for blank (titles without markers)."""
    out = expr.str.to_lowercase().str.replace_all(r"[^\p{L}\p{N}]+", " ").str.strip_chars()
    return pl.when(out == "").then(None).otherwise(out)


def _artist_expr(expr: pl.Expr) -> pl.Expr:
    a = expr.str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
    return pl.when(a == "").then(None).otherwise(a)


def canonical_title(title: str | None) -> str | None:
    """The version-free key of one title ("Song - Remastered 2011" → "song"), or None."""
    if title is None:
        return None
    return pl.select(canonical_title_expr(pl.lit(title, dtype=pl.String))).item()


def canonical_keys(artists: pl.Series | list[str | None], titles: pl.Series | list[str | None]) -> np.ndarray:
    """(n,) object array of ``"artist\\x1fcanonical title"`` keys, None where either is missing.

    ``artists``, ``titles``: (n,) strings (nulls allowed). Vectorised (polars string kernels).
    """
    df = pl.DataFrame(
        {"a": pl.Series(artists, dtype=pl.String), "t": pl.Series(titles, dtype=pl.String)}
    ).with_row_index("i")
    # Only titles that can hold a marker (a bracket, a spaced dash, feat/ft) need the full regex
    # chain; the rest are only lower-cased and stripped of punctuation.
    heavy = pl.col("t").str.contains(r"(?i)[\(\[]|\s[-\u2010-\u2015\u2212]\s|\b(?:feat|ft|featuring)\b")
    title = pl.concat([
        df.filter(heavy.fill_null(False)).select("i", canonical_title_expr(pl.col("t")).alias("c")),
        df.filter(~heavy.fill_null(True)).select("i", _plain_title_expr(pl.col("t")).alias("c")),
    ]).sort("i")
    keys = df.join(title, on="i", how="left").sort("i").select(
        pl.concat_str([_artist_expr(pl.col("a")), pl.col("c")], separator=KEY_SEP)
    ).to_series()
    return keys.to_numpy().astype(object) if len(keys) else np.zeros(0, dtype=object)


def key_codes(keys: np.ndarray) -> np.ndarray:
    """(n,) int64 codes of ``keys`` (object array): equal keys share a code ≥ 0; -1 where None."""
    s = pl.Series(keys.tolist() if len(keys) else [], dtype=pl.String)
    return s.cast(pl.Categorical).to_physical().cast(pl.Int64).fill_null(-1).to_numpy()
