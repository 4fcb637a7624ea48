"""The analyst side of the warehouse: read-only sessions on the DuckLake catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

from my_data_platform.core import warehouse as wh


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
    cols, rows = wh.run_analyst_query(
        location, "SELECT sum(a) AS s, count(*) AS n FROM warehouse.t"
    )
    assert cols == ["s", "n"] and rows == [(10, 5)]
    cols, rows = wh.run_analyst_query(location, "DESCRIBE warehouse.t")
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
    ],
)
def test_writes_are_refused_with_a_clear_message(
    location: wh.WarehouseLocation, sql: str, kind: str, tmp_path: Path
) -> None:
    with pytest.raises(wh.ReadOnlyViolation, match=kind):
        wh.run_analyst_query(location, sql)
    # and nothing changed
    assert wh.run_analyst_query(location, "SELECT count(*) FROM warehouse.t")[1] == [(5,)]
    assert not (tmp_path / "out.csv").exists()


def test_missing_warehouse_names_the_catalog(tmp_path: Path) -> None:
    loc = wh.WarehouseLocation(
        catalog=f"sqlite:{tmp_path / 'nope.sqlite'}", data_path=str(tmp_path)
    )
    with pytest.raises(wh.WarehouseError, match=r"nope\.sqlite"):
        wh.run_analyst_query(loc, "SELECT 1")


def test_postgres_password_never_shown() -> None:
    loc = wh.WarehouseLocation(
        catalog="postgres:dbname=lake host=db user=u password=hunter2", data_path="s3://b/w/"
    )
    assert "hunter2" not in loc.describe() and "lake" in loc.describe()
