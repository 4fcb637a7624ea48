"""``mdp sql``: read-only queries against the warehouse."""

from __future__ import annotations

import csv
import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from my_data_platform.cli._common import console, fail, jsonable, object_store, require_data_dir


def sql(
    query: Annotated[str, typer.Argument(help="SQL to run (read-only).")],
    format: Annotated[str, typer.Option("--format", "-f", help="table, csv or json")] = "table",
) -> None:
    """Query the warehouse read-only, while the pipeline keeps writing."""
    from my_data_platform.core.warehouse import (
        ReadOnlyViolation,
        WarehouseError,
        location_from_settings,
        run_analyst_query,
    )

    if format not in ("table", "csv", "json"):
        fail(f"--format must be table, csv or json, got {format!r}")
    require_data_dir()
    import duckdb

    try:
        cols, rows = run_analyst_query(location_from_settings(), query, object_store())
    except ReadOnlyViolation as exc:
        fail(str(exc))
    except (WarehouseError, duckdb.Error) as exc:
        fail(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    if format == "json":
        sys.stdout.write(
            json.dumps([{c: jsonable(v) for c, v in zip(cols, r, strict=True)} for r in rows])
            + "\n"
        )
    elif format == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(cols)
        w.writerows([[jsonable(v) for v in r] for r in rows])
    else:
        table = Table(show_lines=False)
        for c in cols:
            table.add_column(c)
        for r in rows:
            table.add_row(*["NULL" if v is None else str(v) for v in r])
        console.print(table)
        console.print(f"{len(rows)} row(s)")
