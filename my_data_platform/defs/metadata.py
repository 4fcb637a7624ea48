"""Metadata people can read: row counts, a schema and a preview for every table asset."""

from __future__ import annotations

import base64
from typing import Any

import dagster as dg
import polars as pl
import pyarrow as pa


def table_metadata(
    data: pl.DataFrame | pa.Table, preview_rows: int = 5, row_count: int | None = None
) -> dict[str, Any]:
    """Row count, column schema and a Markdown preview.

    Pass only a sample as ``data`` together with the true ``row_count`` for big tables.
    """
    df = data if isinstance(data, pl.DataFrame) else pl.from_arrow(data)
    assert isinstance(df, pl.DataFrame)
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name=n, type=str(t)) for n, t in df.schema.items()]
    )
    return {
        "dagster/row_count": df.height if row_count is None else row_count,
        "dagster/column_schema": schema,
        "preview": dg.MetadataValue.md(markdown_preview(df, preview_rows)),
    }


def markdown_preview(df: pl.DataFrame, rows: int = 5) -> str:
    head = df.head(rows)
    if not head.columns:
        return "_(no columns)_"
    cols = head.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in head.iter_rows():
        cells = [("" if v is None else str(v)).replace("|", "\\|")[:60] for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    if df.height == 0:
        lines.append("_(empty)_")
    return "\n".join(lines)


def png_metadata(png: bytes | None, title: str) -> dg.MetadataValue:
    """A plot for the asset's metadata: a PNG inlined as a Markdown image (the UI renders it)."""
    if not png:
        return dg.MetadataValue.text(f"({title}: no plotting library available)")
    data = base64.b64encode(png).decode()
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{data})")


def latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, Any]:
    """The metadata values of ``key``'s newest materialization; fails the step if none."""
    event = instance.get_latest_materialization_event(key)
    mat = event.asset_materialization if event else None
    if mat is None:
        raise dg.Failure(f"{key.to_user_string()} has never been materialized: run it first")
    return {k: v.value for k, v in mat.metadata.items()}
