"""``mdp features``: online features of one photo, by the training definition."""

from __future__ import annotations

import json
import sys
from typing import Annotated

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

    from my_data_platform.core import features as F
    from my_data_platform.core.warehouse import analyst_connection
    from my_data_platform.defs.features.inputs import (
        observed_until,
        read_warehouse_table,
        scan_lake_events,
    )
    from my_data_platform.defs.features.objects import classifier_outputs
    from my_data_platform.defs.features.resources import feature_settings_from_settings
    from my_data_platform.defs.warehouse.location import location_from_settings

    if format not in ("table", "json"):
        fail(f"--format must be table or json, got {format!r}")
    require_data_dir()
    store = object_store()
    conn = analyst_connection(location_from_settings(), store)
    try:
        photos = read_warehouse_table(
            conn, "warehouse", "photos", ["photo_id", "user_id", "uploaded_at", "caption"]
        )
        users = read_warehouse_table(
            conn, "warehouse", "users", ["user_id", "joined_at", "follower_count"]
        )
    except LookupError as exc:
        fail(f"{exc}: run `mdp run` first")
    finally:
        conn.close()
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
