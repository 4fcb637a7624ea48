"""The analyst side of the warehouse: read-only sessions on the DuckLake catalog."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from my_data_platform.core import warehouse as wh
from my_data_platform.core.sandbox import (
    QueryRefused,
    SandboxError,
    open_analyst_session,
)


def _query(loc: wh.WarehouseLocation, sql: str) -> tuple[list[str], list[tuple]]:
    with open_analyst_session(loc.catalog, loc.data_path) as s:
        return s.run(sql)


@pytest.fixture
def location(tmp_path: Path) -> wh.WarehouseLocation:
    loc = wh.WarehouseLocation(
        catalog=f"sqlite:{tmp_path / 'wh' / 'catalog.sqlite'}",
        data_path=str(tmp_path / "data") + "/",
    )
    conn = wh.connect(loc)
    conn.execute("CREATE SCHEMA warehouse")
    conn.execute("CREATE TABLE warehouse.t AS SELECT range AS a FROM range(5)")
    conn.close()
    return loc


def test_reads_run(location: wh.WarehouseLocation) -> None:
    cols, rows = _query(location, "SELECT sum(a) AS s, count(*) AS n FROM warehouse.t")
    assert cols == ["s", "n"] and rows == [(10, 5)]
    cols, rows = _query(location, "DESCRIBE warehouse.t")
    assert rows[0][0] == "a"


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("INSERT INTO warehouse.t VALUES (9)", "INSERT"),
        ("DROP TABLE warehouse.t", "DROP"),
        ("DELETE FROM warehouse.t", "DELETE"),
        ("UPDATE warehouse.t SET a = 0", "UPDATE"),
        ("CREATE TABLE warehouse.u (x INT)", "CREATE"),
        ("ATTACH 'other.duckdb' AS other", "ATTACH"),
        ("COPY (SELECT 1) TO 'out.csv'", "COPY"),
        ("SELECT 1; DROP TABLE warehouse.t", "DROP"),
        ("SET threads = 1", "SET"),
        ("INSTALL spatial", "LOAD"),
        ("SELECT * FROM duckdb_databases()", "duckdb_databases"),
    ],
)
def test_writes_are_refused_with_a_clear_message(
    location: wh.WarehouseLocation, sql: str, kind: str, tmp_path: Path
) -> None:
    with pytest.raises(QueryRefused, match=kind):
        _query(location, sql)
    # and nothing changed
    assert _query(location, "SELECT count(*) FROM warehouse.t")[1] == [(5,)]
    assert not (tmp_path / "out.csv").exists()


def test_missing_warehouse_names_the_catalog(tmp_path: Path) -> None:
    loc = wh.WarehouseLocation(
        catalog=f"sqlite:{tmp_path / 'nope.sqlite'}", data_path=str(tmp_path)
    )
    with pytest.raises(SandboxError, match=r"nope\.sqlite"):
        _query(loc, "SELECT 1")


def test_postgres_password_never_shown() -> None:
    loc = wh.WarehouseLocation(
        catalog="postgres:dbname=lake host=db user=u password=hunter2", data_path="s3://b/w/"
    )
    assert "hunter2" not in loc.describe() and "lake" in loc.describe()


def test_writing_sessions_share_one_instance_but_not_transactions(
    location: wh.WarehouseLocation,
) -> None:
    a, b = wh.connect(location), wh.connect(location)
    try:
        # one instance: a database attached through one session is seen by the other
        a.execute("ATTACH ':memory:' AS scratch")
        assert "scratch" in {r[0] for r in b.execute("SHOW DATABASES").fetchall()}
        a.execute("DETACH scratch")
        a.execute("BEGIN TRANSACTION")
        a.execute("INSERT INTO warehouse.t VALUES (99)")
        assert b.execute("SELECT count(*) FROM warehouse.t").fetchone() == (5,)  # uncommitted
        a.execute("COMMIT")
        assert b.execute("SELECT count(*) FROM warehouse.t").fetchone() == (6,)
    finally:
        a.close()
    # closing one session leaves the others working
    assert b.execute("SELECT max(a) FROM warehouse.t").fetchone() == (99,)
    b.close()
    # an analyst's locked, read-only session is an instance of its own
    with pytest.raises(QueryRefused):
        _query(location, "SET threads = 1")
    c = wh.connect(location)
    c.execute("SET threads = 2")  # the writer's configuration is not locked
    c.close()


def test_a_catalog_wiped_and_rebuilt_is_attached_anew(
    location: wh.WarehouseLocation, tmp_path: Path
) -> None:
    conn = wh.connect(location)
    assert conn.execute("SELECT count(*) FROM warehouse.t").fetchone() == (5,)
    conn.close()
    shutil.rmtree(tmp_path / "wh")
    shutil.rmtree(tmp_path / "data")
    conn = wh.connect(location)  # not the old attachment: a new, empty catalog
    try:
        assert not wh.table_exists(conn, "warehouse", "t")
        conn.execute("CREATE SCHEMA warehouse")
        conn.execute("CREATE TABLE warehouse.t AS SELECT 7 AS a")
    finally:
        conn.close()
    assert (tmp_path / "wh" / "catalog.sqlite").is_file()
    assert _query(location, "SELECT a FROM warehouse.t")[1] == [(7,)]


def test_an_open_analyst_session_never_blocks_a_commit(location: wh.WarehouseLocation) -> None:
    # e.g. a notebook left open after a query
    analyst = open_analyst_session(location.catalog, location.data_path)
    other_process_reader = wh.connect(location, threads=1)  # an instance of its own
    try:
        assert analyst.run("SELECT count(*) FROM warehouse.t")[1] == [(5,)]
        assert other_process_reader.execute("SELECT count(*) FROM warehouse.t").fetchone() == (5,)
        writer = wh.connect(location)
        try:
            with wh.transaction(writer):
                writer.execute("INSERT INTO warehouse.t VALUES (5)")
            with wh.transaction(writer):
                writer.execute("DELETE FROM warehouse.t WHERE a = 0")
        finally:
            writer.close()
        assert analyst.run("SELECT count(*), min(a) FROM warehouse.t")[1] == [(5, 1)]
    finally:
        analyst.close()
        other_process_reader.close()
    path = location.catalog.removeprefix("sqlite:")
    with contextlib.closing(sqlite3.connect(path)) as con:
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_files_with_a_new_column_extend_an_older_table(
    location: wh.WarehouseLocation, tmp_path: Path
) -> None:
    """A table created by an older release gains the files' new (nullable) column; its older
    rows read it as NULL and the new rows keep their values."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "new.parquet"
    pq.write_table(pa.table({"a": pa.array([7, 8], pa.int64()), "b": ["x", None]}), path)
    conn = wh.connect(location)
    try:
        with wh.transaction(conn):
            added = wh.load_parquet_files(conn, "warehouse", "t", wh.ParquetFiles((str(path),)))
        rows = conn.execute("SELECT a, b FROM warehouse.t ORDER BY a").fetchall()
    finally:
        conn.close()
    assert added == 2
    assert rows == [(0, None), (1, None), (2, None), (3, None), (4, None), (7, "x"), (8, None)]


def _moved(tmp_path: Path, location: wh.WarehouseLocation) -> wh.WarehouseLocation:
    """The same warehouse, with a data file, copied under ``moved/`` (catalog and files), the
    original renamed."""
    conn = wh.connect(location, threads=1)
    conn.execute("INSERT INTO warehouse.t SELECT range FROM range(5, 3000)")  # a Parquet file
    conn.close()
    shutil.copytree(tmp_path / "wh", tmp_path / "moved" / "wh")
    shutil.copytree(tmp_path / "data", tmp_path / "moved" / "data")
    (tmp_path / "wh").rename(tmp_path / "wh-gone")
    (tmp_path / "data").rename(tmp_path / "data-gone")
    return wh.WarehouseLocation(
        catalog=f"sqlite:{tmp_path / 'moved' / 'wh' / 'catalog.sqlite'}",
        data_path=f"{tmp_path / 'moved' / 'data'}/",
    )


def test_a_moved_warehouse_reads_and_writes_at_its_new_path(
    location: wh.WarehouseLocation, tmp_path: Path
) -> None:
    moved = _moved(tmp_path, location)
    assert _query(moved, "SELECT count(*), sum(a) FROM warehouse.t")[1] == [(3000, 4498500)]
    conn = wh.connect(moved, threads=1)
    try:
        assert wh.stored_data_path(conn) == moved.data_path  # re-pointed by the writer
        with wh.transaction(conn):
            conn.execute("INSERT INTO warehouse.t SELECT range FROM range(3000, 6000)")
    finally:
        conn.close()
    assert _query(moved, "SELECT count(*), sum(a) FROM warehouse.t")[1] == [(6000, 17997000)]
    assert not (tmp_path / "data").exists() and not (tmp_path / "wh").exists()
    assert len(list((tmp_path / "moved" / "data").rglob("*.parquet"))) == 2


def test_a_catalog_moved_without_its_files_is_refused(
    location: wh.WarehouseLocation, tmp_path: Path
) -> None:
    moved = _moved(tmp_path, location)
    shutil.rmtree(tmp_path / "moved" / "data")
    with pytest.raises(wh.WarehouseError, match="holds no files"):
        wh.connect(moved, threads=1)
    path = moved.catalog.removeprefix("sqlite:")
    with contextlib.closing(sqlite3.connect(path)) as con:
        (stored,) = con.execute(
            "SELECT value FROM ducklake_metadata WHERE key = 'data_path' AND scope IS NULL"
        ).fetchone()
    assert stored == location.data_path  # not re-pointed at the empty folder
