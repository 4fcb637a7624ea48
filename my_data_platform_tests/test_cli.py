"""The `mdp` command line, run as a real process: outputs, and one clear error per bad input."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs `mdp` in subprocesses on a generated world


ROOT = Path(__file__).resolve().parent.parent


def mdp(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "my_data_platform.cli", *args],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    data = tmp_path_factory.mktemp("cli") / "data"
    env = {"MDP_DATA_DIR": str(data), "DAGSTER_HOME": str(data / "dagster_home")}
    seeded = mdp(
        "seed", "--days", "2", "--users", "40", "--photos", "120", "--events-per-day", "1500",
        "--corrupt-rate", "0.02", env=env,
    )  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    ran = mdp("run", "--select", "group:lake or group:warehouse", env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "runs succeeded" in ran.stdout
    return env


def test_sql_formats(world: dict[str, str]) -> None:
    q = "SELECT event_type, count(*) AS n FROM warehouse.events GROUP BY 1 ORDER BY 1"
    out = mdp("sql", "--format", "json", q, env=world)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["event_type"] for r in rows] == ["comment", "like", "share", "view"]
    assert all(isinstance(r["n"], int) and r["n"] > 0 for r in rows)
    csv_out = mdp("sql", "--format", "csv", q, env=world)
    lines = csv_out.stdout.strip().splitlines()
    assert lines[0] == "event_type,n" and len(lines) == 5
    assert lines[1:] == [f"{r['event_type']},{r['n']}" for r in rows]
    table = mdp("sql", q, env=world)
    assert "view" in table.stdout and "4 row(s)" in table.stdout
    quarantine = json.loads(
        mdp(
            "sql", "--format", "json",
            "SELECT raw, source_file, line_no, reason FROM warehouse.events_quarantine "
            "WHERE reason = 'malformed_json' LIMIT 1",
            env=world,
        ).stdout
    )  # fmt: skip
    assert quarantine[0]["raw"] and quarantine[0]["line_no"] >= 1
    assert quarantine[0]["source_file"].startswith("landing/events/date=")


@pytest.mark.parametrize(
    ("sql", "word"),
    [
        ("INSERT INTO warehouse.users VALUES (1, now(), 1)", "INSERT"),
        ("DROP TABLE warehouse.events", "DROP"),
        ("ATTACH '/tmp/x.duckdb' AS x", "ATTACH"),
        ("COPY warehouse.users TO '/tmp/users.csv'", "COPY"),
    ],
)
def test_sql_refuses_writes(world: dict[str, str], sql: str, word: str) -> None:
    out = mdp("sql", sql, env=world)
    assert out.returncode == 2
    assert word in out.stderr and "read-only" in out.stderr
    assert "Traceback" not in out.stderr
    still = json.loads(
        mdp("sql", "-f", "json", "SELECT count(*) n FROM warehouse.events", env=world).stdout
    )
    assert still[0]["n"] > 0


def test_missing_data_dir(tmp_path: Path) -> None:
    env = {"MDP_DATA_DIR": str(tmp_path / "nope"), "DAGSTER_HOME": str(tmp_path / "dh")}
    for args in (["run"], ["sql", "SELECT 1"]):
        out = mdp(*args, env=env)
        assert out.returncode == 2, out.stdout + out.stderr
        assert str(tmp_path / "nope") in out.stderr.replace("\n", "")
    assert not (tmp_path / "nope").exists()


def test_empty_landing_area(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "lake" / "landing" / "events").mkdir(parents=True)
    out = mdp("run", env={"MDP_DATA_DIR": str(data), "DAGSTER_HOME": str(data / "dh")})
    assert out.returncode == 2
    assert "no landed event files" in out.stderr and "landing/events/" in out.stderr


def test_missing_oltp_table_fails_the_run_and_names_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"MDP_DATA_DIR": str(data), "DAGSTER_HOME": str(data / "dh")}
    assert mdp("seed", "--days", "1", "--users", "10", "--photos", "20",
               "--events-per-day", "200", env=env).returncode == 0  # fmt: skip
    with sqlite3.connect(data / "oltp.sqlite") as conn:
        conn.execute("DROP TABLE users")
    out = mdp("run", "--select", "group:lake or group:warehouse", env=env)
    assert out.returncode == 1
    assert "OLTP table 'users' does not exist" in out.stderr.replace("\n", "")


def test_unreachable_s3_endpoint_names_it(tmp_path: Path) -> None:
    env = {
        "MDP_DATA_DIR": str(tmp_path),
        "DAGSTER_HOME": str(tmp_path / "dh"),
        "MDP_OBJECT_STORE": "s3",
        "MDP_S3_BUCKET": "b",
        "MDP_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "super-secret-value",
        "AWS_MAX_ATTEMPTS": "1",
    }
    out = mdp("run", env=env)
    assert out.returncode == 2
    assert "127.0.0.1:9" in out.stderr
    assert "super-secret-value" not in out.stdout + out.stderr


def test_partition_with_no_files_fails_clearly(world: dict[str, str], tmp_path: Path) -> None:
    import dagster as dg

    from my_data_platform.defs.lake.assets import lake_events
    from my_data_platform.defs.lake.resources import LocalObjectStoreResource
    from my_data_platform.defs.sources.resources import OLTPResource

    data = Path(world["MDP_DATA_DIR"])
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("event_days", ["2030-01-01"])
        result = dg.materialize(
            [lake_events],
            partition_key="2030-01-01",
            instance=instance,
            resources={
                "object_store": LocalObjectStoreResource(root=str(data / "lake")),
                "oltp": OLTPResource(url=f"sqlite:///{data / 'oltp.sqlite'}"),
            },
            raise_on_error=False,
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "landing/events/date=2030-01-01/" in failure.step_failure_data.error.message
