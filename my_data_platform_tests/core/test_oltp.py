"""Reading the OLTP database: id sets for the lake's checks, and clear errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from my_data_platform.core import oltp


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "oltp.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (user_id INTEGER PRIMARY KEY, joined_at TEXT)")
        conn.executemany("INSERT INTO users VALUES (?, ?)", [(i, "2026-01-01") for i in (5, 1, 9)])
        conn.execute("CREATE TABLE odd (oid TEXT)")
        conn.executemany("INSERT INTO odd VALUES (?)", [("7",), ("x",)])
        conn.execute("CREATE TABLE holes (hid INTEGER)")
        conn.executemany("INSERT INTO holes VALUES (?)", [(1,), (None,)])
    return f"sqlite:///{path}"


def test_read_ids_returns_every_id_as_int64(db: str) -> None:
    ids = oltp.read_ids(db, "users", "user_id")
    assert ids.dtype == np.int64
    assert sorted(ids.tolist()) == [1, 5, 9]
    assert oltp.read_table(db, "users", ["user_id"])["user_id"].sort().to_list() == [1, 5, 9]


@pytest.mark.parametrize(
    ("table", "column", "message"),
    [
        ("nope", "user_id", "OLTP table 'nope' does not exist"),
        ("users", "missing", r"lacks columns \['missing'\]"),
        ("odd", "oid", "odd.oid .* does not hold integer ids"),
        ("holes", "hid", "holes.hid .* holds NULL ids"),
        ("users; DROP TABLE users", "user_id", "not a safe identifier"),
    ],
)
def test_read_ids_errors_name_the_table_and_column(
    db: str, table: str, column: str, message: str
) -> None:
    with pytest.raises(oltp.OLTPError, match=message):
        oltp.read_ids(db, table, column)
    assert sorted(oltp.read_ids(db, "users", "user_id").tolist()) == [1, 5, 9]  # untouched


def test_an_unreachable_database_is_named(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.sqlite'}"
    with pytest.raises(oltp.OLTPError, match="cannot read OLTP database sqlite:///"):
        oltp.read_ids(url, "users", "user_id")
    with pytest.raises(oltp.OLTPError, match="cannot read OLTP database sqlite:///"):
        oltp.read_table(url, "users", ["user_id"])
