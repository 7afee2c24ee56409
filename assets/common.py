"""Small helpers shared by the asset modules (metadata formatting, table loading)."""

import io
import base64
from collections.abc import Mapping

import polars as pl
from dagster import MetadataValue

from pipelines.store import read_table, table_path


def load(name: str) -> pl.DataFrame:
    path = table_path(name)
    if not path.exists():
        raise FileNotFoundError(f"table {name!r} is missing at {path}: materialize its asset first")
    return read_table(path)


def counts_md(counts: Mapping[str, int], *, key: str = "value", value: str = "count") -> MetadataValue:
    lines = [f"| {key} | {value} |", "|---|---|"] + [f"| {k} | {v} |" for k, v in counts.items()]
    return MetadataValue.md("\n".join(lines))


def value_counts(df: pl.DataFrame, column: str) -> dict[str, int]:
    if df.height == 0:
        return {}
    vc = df.get_column(column).fill_null("null").value_counts(sort=True)
    return {str(k): int(v) for k, v in zip(vc.get_column(column).to_list(), vc.get_column("count").to_list())}


def null_rates(df: pl.DataFrame, columns: list[str]) -> dict[str, float]:
    if df.height == 0:
        return {c: 0.0 for c in columns}
    out = {}
    for c in columns:
        col = df.get_column(c)
        missing = col.is_null()
        if col.dtype == pl.Utf8:
            missing = missing | (col.str.strip_chars() == "")
        out[c] = round(float(missing.mean()), 4)
    return out


def png_md(fig) -> MetadataValue:
    """A matplotlib figure as inline markdown (Dagster renders data-URI images in md metadata)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode()
    return MetadataValue.md(f"![plot](data:image/png;base64,{data})")
