"""The evaluation's input files (CORPUS, LABELS, QUERIES as CSV or Parquet), read and validated:
every problem raises ``EvaluationInputError`` naming the file, row and column.
"""

import math
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from pipelines import schema as S
from pipelines.errors import EvaluationInputError

QUERY = "query"  # QUERIES column holding the query text


def _read_table(path: Path, *, what: str, string_columns: Sequence[str]) -> pl.DataFrame:
    path = Path(path)
    if not path.exists():
        raise EvaluationInputError(f"{what} file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            df = pl.read_parquet(path)
        elif suffix in (".csv", ".tsv", ".txt"):
            # string columns are read as strings first so ids like 007 keep their zeros
            header = pl.read_csv(path, n_rows=0, separator="\t" if suffix == ".tsv" else ",")
            overrides = {c: pl.Utf8 for c in string_columns if c in header.columns}
            df = pl.read_csv(
                path, separator="\t" if suffix == ".tsv" else ",", schema_overrides=overrides,
                infer_schema_length=10000,
            )
        else:
            raise EvaluationInputError(f"{what} must be .csv or .parquet: {path}")
    except pl.exceptions.PolarsError as exc:
        raise EvaluationInputError(f"{what} {path} could not be read: {exc}") from exc
    return df


def _require(df: pl.DataFrame, columns: Sequence[str], *, what: str, path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise EvaluationInputError(
            f"{what} {path} lacks column(s) {missing}; it has {df.columns}"
        )


def _row_ref(i: int, path: Path) -> str:
    line = f", line {i + 2}" if path.suffix.lower() in (".csv", ".tsv", ".txt") else ""
    return f"row {i + 1}{line}"


def _check_ids(ids: pl.Series, *, what: str, path: Path, key: str) -> None:
    for i, value in enumerate(ids.to_list()):
        if value is None or not str(value).strip():
            raise EvaluationInputError(f"{what} {path} {_row_ref(i, path)}: column '{key}' is empty")
    dup = ids.is_duplicated()
    if dup.any():
        i = int(dup.arg_true()[0])
        raise EvaluationInputError(
            f"{what} {path} {_row_ref(i, path)}: duplicate {key} {ids[i]!r}"
        )


def load_corpus(path: Path) -> pl.DataFrame:
    """Read CORPUS (CSV/Parquet): ``track_id`` required (as string, unique, non-empty);
    ``audio_path`` (if present) made absolute, relative paths taken from the CORPUS file's folder.
    """
    path = Path(path).resolve()
    df = _read_table(path, what="CORPUS", string_columns=S.CRAWL_TEXT_COLUMNS)
    _require(df, [S.TRACK_ID], what="CORPUS", path=path)
    df = df.with_columns(pl.col(S.TRACK_ID).cast(pl.Utf8).str.strip_chars())
    _check_ids(df[S.TRACK_ID], what="CORPUS", path=path, key=S.TRACK_ID)
    if S.AUDIO_PATH in df.columns:
        base = path.parent

        def resolve(p: str | None) -> str | None:
            if p is None or not str(p).strip():
                return None
            q = Path(str(p).strip()).expanduser()
            return str(q if q.is_absolute() else (base / q).resolve())

        resolved = [resolve(p) for p in df[S.AUDIO_PATH].cast(pl.Utf8).to_list()]
        df = df.with_columns(pl.Series(S.AUDIO_PATH, resolved, dtype=pl.Utf8))
    return df


def _check_unit_floats(df: pl.DataFrame, columns: Sequence[str], *, what: str, path: Path) -> pl.DataFrame:
    for col in columns:
        raw = df[col]
        if raw.dtype == pl.Utf8:
            parsed = raw.str.strip_chars().cast(pl.Float64, strict=False)
        else:
            try:
                parsed = raw.cast(pl.Float64, strict=False)
            except pl.exceptions.PolarsError as exc:
                raise EvaluationInputError(f"{what} {path}: column '{col}' is not numeric") from exc
        values = parsed.to_list()
        for i, v in enumerate(values):
            if v is None or not math.isfinite(v):
                raise EvaluationInputError(
                    f"{what} {path} {_row_ref(i, path)}: column '{col}' value {raw[i]!r} is not a number"
                )
            if not -1.0 <= v <= 1.0:
                raise EvaluationInputError(
                    f"{what} {path} {_row_ref(i, path)}: column '{col}' value {v} is outside [-1, 1]"
                )
        df = df.with_columns(parsed.alias(col))
    return df


def load_labels(path: Path) -> pl.DataFrame:
    """Read LABELS: ``track_id`` (string, unique), ``valence``, ``arousal`` floats in [-1, 1]."""
    path = Path(path).resolve()
    df = _read_table(path, what="LABELS", string_columns=[S.TRACK_ID])
    _require(df, [S.TRACK_ID, S.VALENCE, S.AROUSAL], what="LABELS", path=path)
    df = df.select(S.TRACK_ID, S.VALENCE, S.AROUSAL).with_columns(
        pl.col(S.TRACK_ID).cast(pl.Utf8).str.strip_chars()
    )
    _check_ids(df[S.TRACK_ID], what="LABELS", path=path, key=S.TRACK_ID)
    return _check_unit_floats(df, [S.VALENCE, S.AROUSAL], what="LABELS", path=path)


def load_queries(path: Path) -> pl.DataFrame:
    """Read QUERIES: ``query`` (non-empty text), ``valence``, ``arousal`` floats in [-1, 1]."""
    path = Path(path).resolve()
    df = _read_table(path, what="QUERIES", string_columns=[QUERY])
    _require(df, [QUERY, S.VALENCE, S.AROUSAL], what="QUERIES", path=path)
    df = df.select(QUERY, S.VALENCE, S.AROUSAL).with_columns(pl.col(QUERY).cast(pl.Utf8))
    for i, q in enumerate(df[QUERY].to_list()):
        if q is None or not q.strip():
            raise EvaluationInputError(f"QUERIES {path} {_row_ref(i, path)}: column 'query' is empty")
    return _check_unit_floats(df, [S.VALENCE, S.AROUSAL], what="QUERIES", path=path)
