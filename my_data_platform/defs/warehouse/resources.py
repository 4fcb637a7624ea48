"""The warehouse IO manager: dagster-duckdb's machinery on a DuckLake catalog.

``DbIOManager`` deletes a table slice and inserts the new one; here both happen inside one
DuckLake transaction (the client's ``connect`` opens it and commits on exit), so re-running a
partition replaces it atomically: an analyst sees the old rows or the new rows, never neither
and never both.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl
import pyarrow as pa
from dagster._core.storage.db_io_manager import DbClient, DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb import DuckDBIOManager
from dagster_duckdb.io_manager import DuckDbClient, _get_cleanup_statement
from pydantic import Field

from my_data_platform.core import warehouse as wh
from my_data_platform.core.duck import quote_ident
from my_data_platform.core.fsutil import LockTimeout, file_lock
from my_data_platform.defs.crashpoints import crash_point
from my_data_platform.defs.lake.resources import (
    ObjectStoreResource,
    object_store_resource_from_settings,
)
from my_data_platform.defs.metadata import table_metadata
from my_data_platform.defs.warehouse.location import warehouse_data_path


class DuckLakeClient(DbClient):
    """Connects to the DuckLake catalog and wraps each IO-manager call in one transaction."""

    def __init__(self, location: wh.WarehouseLocation, store_resource: ObjectStoreResource):
        self.location = location
        self.store_resource = store_resource

    @contextmanager
    def connect(self, context: Any, table_slice: TableSlice) -> Iterator[duckdb.DuckDBPyConnection]:
        writing = isinstance(context, dg.OutputContext)
        with writer_lock(self.location) if writing else nullcontext():
            conn = wh.connect(self.location, self.store_resource.get_store())
            try:
                # Schemas are created before the transaction: two steps creating the same
                # schema in parallel transactions would otherwise conflict at commit.
                _retry(
                    lambda: conn.execute(
                        f"CREATE SCHEMA IF NOT EXISTS {quote_ident(table_slice.schema)}"
                    )
                )
                with wh.transaction(conn):
                    yield conn
                if writing:
                    _crash_point(table_slice, "end")  # committed, not yet reported
            finally:
                conn.close()

    @staticmethod
    def ensure_schema_exists(context: Any, table_slice: TableSlice, connection: Any) -> None:
        return None  # done in connect(), outside the transaction

    @staticmethod
    def delete_table_slice(context: Any, table_slice: TableSlice, connection: Any) -> None:
        # Inside a transaction a failing DELETE would abort it, so check existence first.
        if wh.table_exists(connection, table_slice.schema, table_slice.table):
            connection.execute(_get_cleanup_statement(table_slice))

    @staticmethod
    def get_select_statement(table_slice: TableSlice) -> str:
        return DuckDbClient.get_select_statement(table_slice)


@contextmanager
def writer_lock(location: wh.WarehouseLocation, timeout_s: float = 1800) -> Iterator[None]:
    """Makes writers of a SQLite-backed DuckLake catalog take turns, across processes.

    A DuckLake transaction reads the SQLite catalog when it starts and writes it at commit, so
    when two write transactions overlap (two steps of one run, or two runs) SQLite refuses the
    second commit with "database is locked"; a SQLite busy timeout does not help. Each writer
    therefore holds an exclusive ``flock`` on a file next to the catalog for its whole
    transaction. Readers are not affected. PostgreSQL catalogs need no lock: DuckLake retries
    conflicting commits there.
    """
    if location.kind != "sqlite" or location.catalog_file is None:
        yield
        return
    lock_path = Path(f"{location.catalog_file}.writer.lock")
    with ExitStack() as held:
        try:
            held.enter_context(file_lock(lock_path, timeout=timeout_s))
        except LockTimeout:
            raise wh.WarehouseError(
                f"another writer has held {location.describe()} for over {timeout_s:.0f}s"
                f" (lock file {lock_path})"
            ) from None
        yield


def _crash_point(table_slice: TableSlice, stage: str) -> None:
    """warehouse/events' crash points in its load (test-only, ``defs/crashpoints.py``)."""
    if (table_slice.schema, table_slice.table) == ("warehouse", "events"):
        crash_point(f"warehouse_events.{stage}")


def _retry(fn: Any, attempts: int = 8) -> Any:
    for i in range(attempts):
        try:
            return fn()
        except duckdb.TransactionException:
            if i == attempts - 1:
                raise
            time.sleep(0.05 * 2**i)
    return None


class PolarsArrowTypeHandler(DbTypeHandler[pl.DataFrame]):
    """Stores Polars frames, Arrow tables, Arrow streams and Parquet files by column name;
    loads Polars frames.

    An Arrow stream (``pa.RecordBatchReader``) is inserted as it is read, so an asset that
    outputs a partition range (a single-run backfill) can hand over one day at a time and the
    run never holds the whole range in memory. ``ParquetFiles`` (lake objects) never enter
    Python at all: they become DuckLake data files as they are when they can, else DuckDB
    loads them (``warehouse.load_parquet_files``).
    """

    def __init__(
        self,
        location: wh.WarehouseLocation | None = None,
        object_store: ObjectStoreResource | None = None,
    ) -> None:
        self.location = location
        self.object_store = object_store

    def handle_output(
        self, context: dg.OutputContext, table_slice: TableSlice, obj: Any, connection: Any
    ) -> dict[str, Any]:
        # Identifiers come from asset keys and are checked by quote_ident; data is bound by name.
        target = f"{quote_ident(table_slice.schema)}.{quote_ident(table_slice.table)}"
        if isinstance(obj, wh.ParquetFiles):
            connection.execute(
                f"CREATE TABLE IF NOT EXISTS {target} AS SELECT * FROM {obj.source_sql()} LIMIT 0"  # noqa: S608
            )
            added = wh.load_parquet_files(
                connection,
                table_slice.schema,
                table_slice.table,
                obj,
                store=self.object_store.get_store() if self.object_store else None,
                data_path=self.location.data_path if self.location else None,
            )
            _crash_point(table_slice, "middle")  # copied and registered, not committed
            return self._written_metadata(connection, table_slice, (added,))
        if isinstance(obj, pl.DataFrame):
            # DuckLake stores variable-length lists, not fixed-size arrays (e.g. embeddings).
            obj = obj.with_columns(
                pl.col(n).cast(pl.List(t.inner))  # type: ignore[union-attr]
                for n, t in obj.schema.items()
                if isinstance(t, pl.Array)
            )
        data = obj.to_arrow() if isinstance(obj, pl.DataFrame) else obj
        # The table is created from the schema alone: a stream can be read only once.
        connection.register("mdp_output_schema", data.schema.empty_table())
        connection.register("mdp_output", data)
        try:
            connection.execute(
                f"CREATE TABLE IF NOT EXISTS {target} AS SELECT * FROM mdp_output_schema"  # noqa: S608
            )
            inserted = connection.execute(
                f"INSERT INTO {target} BY NAME SELECT * FROM mdp_output"  # noqa: S608
            ).fetchone()
        finally:
            connection.unregister("mdp_output")
            connection.unregister("mdp_output_schema")
        if isinstance(data, pa.Table):
            return table_metadata(data)
        return self._written_metadata(connection, table_slice, inserted)

    @staticmethod
    def _written_metadata(connection: Any, table_slice: TableSlice, inserted: Any) -> dict:
        """A stream or files are gone once inserted: preview what was written, inside this
        transaction, with the true row count."""
        sample = connection.execute(
            f"{DuckDbClient.get_select_statement(table_slice)} LIMIT 5"
        ).to_arrow_table()
        return table_metadata(sample, row_count=int(inserted[0]) if inserted else 0)

    def load_input(
        self, context: dg.InputContext, table_slice: TableSlice, connection: Any
    ) -> pl.DataFrame:
        if table_slice.partition_dimensions and len(context.asset_partition_keys) == 0:
            return pl.DataFrame()
        return pl.from_arrow(
            connection.execute(DuckDbClient.get_select_statement(table_slice)).to_arrow_table()
        )  # type: ignore[return-value]

    @property
    def supported_types(self) -> Sequence[type]:
        return [pl.DataFrame, pa.Table, pa.RecordBatchReader, wh.ParquetFiles]


class DuckLakeIOManager(DuckDBIOManager):
    """Reads and writes warehouse tables in the DuckLake catalog ``mdp``.

    ``catalog`` is ``sqlite:<path>`` (default) or ``postgres:<conninfo>``; ``data_path`` is
    where DuckLake writes Parquet (a folder in the lake or an ``s3://`` prefix).
    """

    database: str = Field(default=wh.CATALOG_ALIAS, description="The attached catalog's alias.")
    catalog: str
    data_path: str
    object_store: ObjectStoreResource

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        """What dagster-duckdb's interface asks for; ``create_io_manager`` builds the handler
        with this manager's location and object store instead, so lake files can be
        registered with DuckLake rather than copied."""
        return [PolarsArrowTypeHandler()]

    @staticmethod
    def default_load_type() -> type | None:
        return pl.DataFrame

    def location(self) -> wh.WarehouseLocation:
        return wh.WarehouseLocation(catalog=self.catalog, data_path=self.data_path)

    def create_io_manager(self, context: dg.InitResourceContext) -> DbIOManager:
        return DbIOManager(
            db_client=DuckLakeClient(self.location(), self.object_store),
            database=self.database,
            schema=self.schema_,
            type_handlers=[PolarsArrowTypeHandler(self.location(), self.object_store)],
            default_load_type=self.default_load_type(),
            io_manager_name="DuckLakeIOManager",
        )


class WarehouseResource(dg.ConfigurableResource):
    """Direct SQL on the warehouse, for assets that are SQL transformations in DuckDB."""

    catalog: str
    data_path: str
    object_store: ObjectStoreResource

    def location(self) -> wh.WarehouseLocation:
        return wh.WarehouseLocation(catalog=self.catalog, data_path=self.data_path)

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        conn = wh.connect(self.location(), self.object_store.get_store())
        try:
            yield conn
        finally:
            conn.close()

    def writing(self) -> Any:
        """Hold while writing to the warehouse (see ``writer_lock``)."""
        return writer_lock(self.location())


@dg.definitions
def resources() -> dg.Definitions:
    """The IO manager and the SQL resource on the configured catalog. The catalog string is an
    ``EnvVar`` when ``MDP_WAREHOUSE_CATALOG`` is set (a PostgreSQL one may hold a password)."""
    from my_data_platform.settings import get_settings

    s = get_settings()
    config = {
        "catalog": s.secret("MDP_WAREHOUSE_CATALOG", s.warehouse_catalog),
        "data_path": warehouse_data_path(s),
        "object_store": object_store_resource_from_settings(),
    }
    return dg.Definitions(
        resources={
            "io_manager": DuckLakeIOManager(**config),
            "warehouse": WarehouseResource(**config),
        }
    )
