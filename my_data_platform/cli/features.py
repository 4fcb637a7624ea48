"""``mdp features``: online features of one photo, by the training definition."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from my_data_platform.cli._common import (
    console,
    fail,
    jsonable,
    object_store,
    parse_time,
    require_data_dir,
)

if TYPE_CHECKING:
    from my_data_platform.core.sandbox import AnalystSession

app = typer.Typer(help="Online features: the same definition as training, for one photo.")


@app.command("get")
def features_get(
    photo_id: Annotated[int, typer.Argument(help="The photo to serve features for.")],
    as_of: Annotated[
        str | None, typer.Option(help="ISO-8601 time (UTC if no offset); default: newest event.")
    ] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table or json")] = "table",
) -> None:
    """The feature vector of one photo as of a time, computed by the training definition."""
    import polars as pl

    from my_data_platform.cli.sql import analyst_session
    from my_data_platform.core import features as F
    from my_data_platform.core.sandbox import SandboxError
    from my_data_platform.defs.features.inputs import observed_until, scan_lake_events
    from my_data_platform.defs.features.objects import classifier_outputs
    from my_data_platform.defs.features.resources import feature_settings_from_settings

    if format not in ("table", "json"):
        fail(f"--format must be table or json, got {format!r}")
    require_data_dir()
    store = object_store()
    try:
        with analyst_session() as session:
            photos = _read_table(
                session, "warehouse", "photos", ["photo_id", "user_id", "uploaded_at", "caption"]
            )
            users = _read_table(
                session, "warehouse", "users", ["user_id", "joined_at", "follower_count"]
            )
    except LookupError as exc:
        fail(f"{exc}: run `mdp run` first")
    except SandboxError as exc:
        fail(str(exc))
    mine = photos.filter(pl.col("photo_id") == photo_id)
    if mine.height == 0:
        fail(f"photo {photo_id} is not in warehouse.photos")
    author = mine["user_id"][0]
    author_photos = photos.filter(pl.col("user_id") == author)["photo_id"]
    try:
        all_events = scan_lake_events(store)
    except FileNotFoundError as exc:
        fail(str(exc))
    when = parse_time(as_of) if as_of else observed_until(all_events)
    events = all_events.filter(pl.col("photo_id").is_in(author_photos.implode()))
    try:
        extra = classifier_outputs(store).filter(pl.col("photo_id") == photo_id)
    except Exception:
        extra = None
    settings = feature_settings_from_settings()
    row = F.online_features(
        events, photos.lazy(), users.lazy(), photo_id, when, settings.config(), extra,
        engine=F.resolve_engine(settings.engine),
    )  # fmt: skip
    if format == "json":
        sys.stdout.write(json.dumps({k: jsonable(v) for k, v in row.items()}) + "\n")
        return
    table = Table(title=f"features of photo {photo_id} as of {when.isoformat()}")
    table.add_column("feature")
    table.add_column("value", justify="right")
    for k, v in row.items():
        shown = f"[{len(v)} values]" if isinstance(v, list) and len(v) > 8 else str(v)
        table.add_row(k, shown)
    console.print(table)


def _read_table(session: AnalystSession, schema: str, table: str, columns: list[str]) -> Any:
    """A warehouse table as a Polars frame, read through the analyst sandbox."""
    import polars as pl

    # identifiers are fixed by the caller, never user input
    found = session.run(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'mdp' "  # noqa: S608
        f"AND schema_name = '{schema}' AND table_name = '{table}'"
    )[1]
    if not found or not found[0][0]:
        raise LookupError(f"warehouse table {schema}.{table} does not exist yet")
    cols = ", ".join(f'"{c}"' for c in columns)
    return pl.from_arrow(session.arrow(f'SELECT {cols} FROM "{schema}"."{table}"'))  # noqa: S608
