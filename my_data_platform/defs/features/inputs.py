"""Reading the inputs of the feature assets: lake events (Parquet) and warehouse tables.

Shared by the assets and by ``mdp features get``, so offline and online read the same data.
"""

import datetime as dt

import dagster as dg
import duckdb
import polars as pl

from my_data_platform.core.objectstore import ObjectStore
from my_data_platform.core.warehouse import table_exists
from my_data_platform.defs.lake.objects import published_days

EVENT_COLUMNS = ["event_id", "event_type", "user_id", "photo_id", "ts", "dwell_ms"]


def scan_lake_events(store: ObjectStore) -> pl.LazyFrame:
    """All loaded events, every landed day, as one lazy scan of the lake Parquet files (each
    day's published generation)."""
    keys = [day.events_key for day in published_days(store).values()]
    if not keys:
        raise FileNotFoundError(
            f"no lake/events partitions in {store.describe()}: materialize lake/events first"
        )
    return pl.scan_parquet(
        [store.uri(k) for k in keys], storage_options=store.polars_storage_options()
    ).select(EVENT_COLUMNS)


def warehouse_input(table: str, columns: list[str]) -> dg.AssetIn:
    """A warehouse table as an asset input: the IO manager loads ``columns`` as a Polars frame."""
    return dg.AssetIn(["warehouse", table], metadata={"columns": columns})


def read_warehouse_table(
    conn: duckdb.DuckDBPyConnection, schema: str, table: str, columns: list[str]
) -> pl.DataFrame:
    """A warehouse table outside a run (``mdp features get``); assets use ``warehouse_input``."""
    if not table_exists(conn, schema, table):
        raise LookupError(f"warehouse table {schema}.{table} does not exist yet")
    # identifiers are fixed by the callers, never user input
    cols = ", ".join(f'"{c}"' for c in columns)
    arrow = conn.execute(f'SELECT {cols} FROM "{schema}"."{table}"').to_arrow_table()  # noqa: S608
    df = pl.from_arrow(arrow)
    assert isinstance(df, pl.DataFrame)
    return df


def observed_until(events: pl.LazyFrame) -> dt.datetime:
    """The newest event time: labels and snapshots are as of what has been observed."""
    value = events.select(pl.col("ts").max()).collect().item()
    if value is None:
        raise ValueError("there are no loaded events yet")
    return value
