"""``mdp sql``: read-only queries against the warehouse."""

from __future__ import annotations

import csv
import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from my_data_platform.cli._common import console, fail, jsonable, require_data_dir
from my_data_platform.defs.warehouse.location import location_from_settings
from my_data_platform.settings import analyst_s3_credentials, get_settings

if TYPE_CHECKING:
    from my_data_platform.core.sandbox import AnalystSession, S3ReadCredentials


def sql(
    query: Annotated[str, typer.Argument(help="SQL to run (read-only).")],
    format: Annotated[str, typer.Option("--format", "-f", help="table, csv or json")] = "table",
) -> None:
    """Query the warehouse read-only, while the pipeline keeps writing.

    The session is the analyst sandbox (docs/analyst-sandbox.md): it reads the warehouse and
    nothing else, with a memory limit and a statement timeout; a refused statement exits 2.
    """
    from my_data_platform.core.sandbox import SandboxError

    if format not in ("table", "csv", "json"):
        fail(f"--format must be table, csv or json, got {format!r}")
    require_data_dir()
    import duckdb

    try:
        with analyst_session() as session:
            cols, rows = session.run(query, timeout_s=get_settings().analyst_timeout_s)
    except SandboxError as exc:
        fail(str(exc))
    except duckdb.Error as exc:
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


def analyst_session() -> AnalystSession:
    """The analyst sandbox on the configured warehouse, with the configured limits (what
    ``mdp sql`` and the other read-only commands query through)."""
    from my_data_platform.core.sandbox import open_analyst_session

    s = get_settings()
    loc = location_from_settings()
    return open_analyst_session(
        loc.catalog,
        loc.data_path,
        memory_limit=s.analyst_memory_limit,
        threads=s.analyst_threads,
        read_credentials=_read_credentials(),
    )


def _read_credentials() -> S3ReadCredentials | None:
    """The analysts' own read-only S3 keys when the warehouse data is on S3 (None otherwise;
    the sandbox refuses an S3 data path without them)."""
    from my_data_platform.core.sandbox import S3ReadCredentials

    s = get_settings()
    pair = analyst_s3_credentials()
    if pair is None:
        return None
    endpoint = s.s3_endpoint_url
    return S3ReadCredentials(
        key_id=pair[0],
        secret=pair[1],
        region=s.s3_region,
        endpoint=endpoint.split("://", 1)[-1].rstrip("/") if endpoint else None,
        use_ssl=not (endpoint or "").startswith("http://"),
    )
