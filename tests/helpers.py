"""Small helpers shared by test modules (brute-force references, not code under test)."""

import re


def genres_of(value: str | None) -> set[str]:
    """The lower-cased genres of a genre cell ("a|b", "a, b", "a/b"), for brute-force filter checks."""
    return {g.strip().lower() for g in re.split(r"[,|;/]", value or "") if g.strip()}
