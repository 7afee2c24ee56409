"""Asset metadata as the Dagster UI shows it: count tables, null rates, inline plots."""

import base64
import io
from collections.abc import Mapping

import polars as pl
from dagster import MetadataValue


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


def json_counts(df: pl.DataFrame, column: str) -> MetadataValue:
    """Value → count of one column (nulls counted as "null") as JSON metadata."""
    return MetadataValue.json(
        {str(k): int(v) for k, v in df.get_column(column).fill_null("null").value_counts().iter_rows()}
    )


def md_table(df: pl.DataFrame) -> MetadataValue:
    """A small frame as a markdown table (floats to 3 decimals)."""
    rows = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    for r in df.iter_rows():
        rows.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r) + " |")
    return MetadataValue.md("\n".join(rows))
