"""Small helpers shared by test modules (brute-force references, not code under test)."""

import re

from pipelines import store
from pipelines.lexicon import resolve_open_file


def genres_of(value: str | None) -> set[str]:
    """The lower-cased genres of a genre cell ("a|b", "a, b", "a/b"), for brute-force filter checks."""
    return {g.strip().lower() for g in re.split(r"[,|;/]", value or "") if g.strip()}


def have_open_file(relative: str) -> bool:
    """Whether an open-data file (project copy, else the shared copy) exists, for skipif marks."""
    try:
        resolve_open_file(data_dir=store.DATA_DIR, relative=relative)
    except FileNotFoundError:
        return False
    return True
