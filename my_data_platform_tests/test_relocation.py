"""A data dir copied to another path (and the original gone) works there, reading its own data.

Every command runs as a real ``mdp`` process with ``MDP_DATA_DIR`` pointing at the copy; the
original is renamed away first, so any absolute path still stored somewhere fails loudly, and
any write aimed at the old place would recreate it (which is checked).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from my_data_platform.core.duck import load_extension

pytestmark = pytest.mark.slow  # a generated world, `mdp` subprocesses, a mongod

ROOT = Path(__file__).resolve().parent.parent
TABLES = ["users", "photos", "events", "events_quarantine", "photo_engagement_daily"]
COUNTS = " UNION ALL ".join(f"SELECT '{t}' AS t, count(*) AS n FROM warehouse.{t}" for t in TABLES)
EVENTS_BY_DAY = (
    "SELECT landing_date::VARCHAR AS day, count(*) AS n, count(DISTINCT event_id) AS ids, "
    "sum(hash(event_id)) AS h FROM warehouse.events GROUP BY 1 ORDER BY 1"
)


def mdp(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "COLUMNS": "200",
        "MDP_DATA_DIR": str(data),
        "DAGSTER_HOME": str(data / "dagster_home"),
    }
    for name in ("MDP_OLTP_URL", "MDP_WAREHOUSE_CATALOG", "MDP_WAREHOUSE_DATA_PATH"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "my_data_platform.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def ok(data: Path, *args: str) -> str:
    done = mdp(data, *args)
    assert done.returncode == 0, f"mdp {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def sql(data: Path, query: str) -> list[dict]:
    return json.loads(ok(data, "sql", query, "--format", "json"))


def _runs(data: Path) -> int:
    with dg.DagsterInstance.from_config(str(data / "dagster_home")) as instance:
        return len(instance.get_runs())


def _stored_data_path(data: Path) -> str:
    with contextlib.closing(sqlite3.connect(data / "warehouse" / "catalog.sqlite")) as con:
        (value,) = con.execute(
            "SELECT value FROM ducklake_metadata WHERE key = 'data_path' AND scope IS NULL"
        ).fetchone()
    return str(value)


def test_a_copied_data_dir_works_at_its_new_path(tmp_path: Path) -> None:
    a = tmp_path / "a" / "data"
    ok(a, "seed", "--days", "2", "--users", "40", "--photos", "120",
       "--events-per-day", "1500", "--corrupt-rate", "0.02")  # fmt: skip
    ok(a, "run", "--select", "group:lake or group:warehouse")
    # a dataset commit in the embedded version store
    commit = _commit_a_dataset(a)
    counts, by_day = sql(a, COUNTS), sql(a, EVENTS_BY_DAY)
    assert {r["t"]: r["n"] for r in counts}["events"] > 0
    photo = sql(a, "SELECT min(photo_id) AS p FROM warehouse.photos")[0]["p"]
    as_of = "2026-01-02T12:00:00Z"
    features = ok(a, "features", "get", str(photo), "--as-of", as_of, "--format", "json")
    runs_before = _runs(a)
    assert runs_before > 0
    assert _stored_data_path(a) == f"{a}/lake/warehouse/"

    b = tmp_path / "b" / "data"
    b.parent.mkdir()
    subprocess.run(["cp", "-a", str(a), str(b)], check=True, timeout=300)
    gone = tmp_path / "a-gone"
    a.parent.rename(gone)

    # reads, before any writer has touched the copy
    assert sql(b, COUNTS) == counts
    assert sql(b, EVENTS_BY_DAY) == by_day
    assert ok(b, "features", "get", str(photo), "--as-of", as_of, "--format", "json") == features
    log = json.loads(ok(b, "datasets", "log", "--format", "json"))
    assert log[0]["id"] == commit
    shown = ok(b, "datasets", "show", commit, "--format", "json")
    assert json.loads(shown)["objects"][0]["path"] in ("card.md", "data.bin")
    summary = ok(b, "demo-summary")
    assert f"{next(r['n'] for r in counts if r['t'] == 'events'):,} events" in summary

    # a writer: re-materialize the warehouse partitions (and what reads the OLTP database)
    before = set((b / "lake" / "warehouse").rglob("*.parquet"))
    ran = ok(b, "run", "--select", "key:warehouse/events or key:warehouse/users")
    assert "runs succeeded" in ran and str(b / "dagster_home") in ran
    assert set((b / "lake" / "warehouse").rglob("*.parquet")) - before, "new files at the copy"
    assert sql(b, COUNTS) == counts
    assert sql(b, EVENTS_BY_DAY) == by_day
    assert _runs(b) > runs_before  # the instance moved with its history, and records new runs
    assert str(a) not in (b / "dagster_home" / "dagster.yaml").read_text()
    assert _stored_data_path(b) == f"{b}/lake/warehouse/"  # the catalog was re-pointed
    assert not (tmp_path / "a").exists(), "nothing was written to the old path"
    assert _stored_data_path(gone / "data") == f"{a}/lake/warehouse/"  # the original untouched

    # and a plain ATTACH, as the README shows, finds the files at the copy
    con = duckdb.connect()
    load_extension(con, "ducklake")
    load_extension(con, "sqlite")
    con.execute(f"ATTACH 'ducklake:sqlite:{b}/warehouse/catalog.sqlite' AS mdp (READ_ONLY)")
    n = con.execute("SELECT count(*) FROM mdp.warehouse.events").fetchone()
    con.close()
    assert n == (next(r["n"] for r in counts if r["t"] == "events"),)


def _commit_a_dataset(data: Path) -> str:
    """A commit made with the embedded version store under ``data`` (the datasets asset's own
    store), in a subprocess so this process's settings stay untouched."""
    code = (
        "from my_data_platform.defs.datasets.resources import version_store_from_settings\n"
        "vs = version_store_from_settings()\n"
        "vs.put_objects('main', {'data.bin': b'rows', 'card.md': b'# card'})\n"
        "print(vs.commit('main', 'relocation test').id)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "MDP_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_a_copied_fiftyone_folder_gets_its_own_mongod(tmp_path: Path) -> None:
    """The copy's ``mongod.json`` names the original's mongod: it is neither reused (it
    serves the original's files) nor stopped (the original is still in use)."""
    import pymongo

    from my_data_platform.core.mongo import _serves, ensure_mongod, stop_mongod

    a, b = tmp_path / "a" / "fiftyone", tmp_path / "b" / "fiftyone"
    uri = ensure_mongod(a, idle_timeout_s=None)
    try:
        with pymongo.MongoClient(uri, directConnection=True) as client:
            client.mdp.samples.insert_one({"photo": 1})
    finally:
        stop_mongod(a)
    shutil.copytree(a, b, symlinks=True)
    uri_a = ensure_mongod(a, idle_timeout_s=None)
    try:
        # a copy taken while the original ran carries the original's running state
        shutil.copy2(a / "mongod.json", b / "mongod.json")
        uri_b = ensure_mongod(b, idle_timeout_s=None)
        try:
            assert uri_b != uri_a
            assert _serves(uri_a, a / "data") and _serves(uri_b, b / "data")
            with pymongo.MongoClient(uri_b, directConnection=True) as client:
                assert [d["photo"] for d in client.mdp.samples.find()] == [1]
                client.mdp.samples.insert_one({"photo": 2})
            with pymongo.MongoClient(uri_a, directConnection=True) as client:
                assert [d["photo"] for d in client.mdp.samples.find()] == [1]
        finally:
            assert stop_mongod(b)
        assert _serves(uri_a, a / "data")  # stopping the copy's left the original running
    finally:
        stop_mongod(a)
