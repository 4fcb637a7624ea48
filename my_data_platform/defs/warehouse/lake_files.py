"""The lake Parquet of a run's event days, handed to the warehouse IO manager as files."""

from collections.abc import Callable

import dagster as dg
import duckdb

from my_data_platform.core.duck import sql_literal
from my_data_platform.core.objectstore import ObjectStore
from my_data_platform.core.warehouse import ParquetFiles
from my_data_platform.defs.lake.objects import PublishedDay, PublishedDayError, published_day
from my_data_platform.defs.metadata import table_metadata


def lake_days_files(
    context: dg.AssetExecutionContext,
    store: ObjectStore,
    object_of_day: Callable[[PublishedDay], str],
    lake_asset: str,
) -> ParquetFiles:
    """The lake Parquet of every day in the run's partition range, for the IO manager to load.

    Each day is resolved once, through its pointer (``published_day``), so the run reads one
    consistent publish of the day even if lake/events publishes it again meanwhile. DuckDB
    reads the files itself (in parallel, straight from the object store) inside the IO
    manager's transaction, so a single-run backfill of N days never holds them in Python.
    Every file is checked up front, so a missing day fails the run before the warehouse is
    touched; each day's materialization gets that day's row count, schema, preview and lake
    generation, read from its file's footer and first rows.
    """
    days = list(context.partition_keys)
    try:
        published = {day: published_day(store, day) for day in days}
    except PublishedDayError as exc:
        raise dg.Failure(str(exc)) from None
    unpublished = [day for day, p in published.items() if p is None]
    if unpublished:
        raise dg.Failure(
            f"{lake_asset} has no published day {', '.join(unpublished)} in "
            f"{store.describe()}: materialize {lake_asset} first"
        )
    keys = {day: object_of_day(p) for day, p in published.items() if p is not None}
    missing = [key for key in keys.values() if not store.exists(key)]
    if missing:
        raise dg.Failure(
            f"lake file(s) {', '.join(repr(k) for k in missing)} missing: "
            f"materialize {lake_asset} again for their days"
        )
    uris = {day: store.uri(key) for day, key in keys.items()}
    conn = duckdb.connect(":memory:")
    try:
        store.configure_duckdb(conn)
        for day, uri in uris.items():
            files = ParquetFiles((uri,))
            (rows,) = conn.execute(
                f"SELECT sum(num_rows) FROM parquet_file_metadata({sql_literal(uri)})"  # noqa: S608
            ).fetchone() or (0,)
            sample = conn.execute(
                f"SELECT * FROM {files.source_sql()} LIMIT 5"  # noqa: S608
            ).to_arrow_table()
            generation = published[day].generation if published[day] else None
            context.add_asset_metadata(
                {
                    **table_metadata(sample, row_count=int(rows or 0)),
                    "lake_generation": generation or "legacy (no pointer)",
                },
                partition_key=day,
            )
    except duckdb.IOException as exc:  # deleted or unreadable since the check
        raise dg.Failure(f"cannot read {lake_asset} from {store.describe()}: {exc}") from None
    finally:
        conn.close()
    return ParquetFiles(tuple(uris[day] for day in days))
