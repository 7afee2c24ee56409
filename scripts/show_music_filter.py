#!/usr/bin/env python
"""Show what the music filter drops and keeps on a store's crawl (text and audio rules, no classifier).

    .venv/bin/python scripts/show_music_filter.py [--home DIR] [--sample 15] [--seed 0] [--csv OUT]

Reads the store's ``raw_tracks`` and ``audio_features`` tables (``--home`` or ``MOODSCAPE_HOME``; read
only), runs :func:`pipelines.heal.musicfilter.classify_music` and prints: rows kept / dropped per
source, dropped rows per kind of reason, a sample of dropped rows, and a sample of kept rows whose
text names a non-music sound (``SOUND_EVENTS``), with their reasons. ``--csv`` writes every verdict.
"""

import argparse
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import polars as pl  # noqa: E402

from pipelines import schema as S  # noqa: E402
from pipelines import store  # noqa: E402
from pipelines.heal.musicfilter import SOUND_EVENTS, classify_store_crawl  # noqa: E402


def verdicts(home: Path) -> pl.DataFrame:
    return classify_store_crawl(store.StoreLayout.under_home(home))


def reason_kind(reason: str | None) -> str:
    """A reason with its particulars removed ("text: 'siren' leads the tags" → "text: X leads the tags")."""
    text = re.sub(r"'[^']*'", "X", reason or "")
    text = re.sub(r"\d+ non-music sounds named \(.*\)", "N non-music sounds named", text)
    text = re.sub(r"[\d.]+", "#", text)
    return text[:70]


def show(df: pl.DataFrame, *, sample: int, seed: int) -> None:
    pl.Config.set_tbl_rows(max(40, sample + 5))
    pl.Config.set_fmt_str_lengths(110)
    pl.Config.set_tbl_width_chars(200)
    pl.Config.set_tbl_hide_dataframe_shape(True)
    print("kept / dropped per source")
    print(df.group_by(S.SOURCE).agg(
        pl.col(S.IS_MUSIC).sum().alias("kept"), (~pl.col(S.IS_MUSIC)).sum().alias("dropped")).sort(S.SOURCE))
    dropped = df.filter(~pl.col(S.IS_MUSIC))
    print("\ndropped, by kind of reason")
    print(dropped.select(pl.col(S.MUSIC_REASON).map_elements(reason_kind, return_dtype=pl.String).alias("reason"))
          .group_by("reason").len().sort("len", descending=True))
    cols = [S.TRACK_ID, S.MUSIC_REASON, pl.col(S.TAGS).str.slice(0, 110).alias(S.TAGS)]
    print(f"\nsample of dropped rows ({min(sample, dropped.height)} of {dropped.height})")
    print(dropped.sample(n=min(sample, dropped.height), seed=seed).select(cols))
    text = pl.concat_str([pl.col(S.TAGS).fill_null(""), pl.col(S.DESCRIPTION).fill_null("")], separator=" | ")
    kept = df.filter(pl.col(S.IS_MUSIC) & text.str.contains("(?i)" + SOUND_EVENTS.pattern))
    print(f"\nsample of kept rows that name a non-music sound ({min(sample, kept.height)} of {kept.height})")
    print(kept.sample(n=min(sample, kept.height), seed=seed).select(cols))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--home", type=Path, default=Path(os.environ.get("MOODSCAPE_HOME") or store.home()))
    p.add_argument("--sample", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--csv", type=Path, help="write every row's verdict (track_id, source, is_music, reason)")
    args = p.parse_args(argv)
    df = verdicts(args.home)
    show(df, sample=args.sample, seed=args.seed)
    if args.csv:
        df.select(S.TRACK_ID, S.SOURCE, S.IS_MUSIC, S.MUSIC_REASON).write_csv(args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
