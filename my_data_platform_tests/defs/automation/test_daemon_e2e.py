"""End to end with the real daemon: land a new day, and the platform refreshes itself.

`dagster dev` (webserver + daemon) runs against a temporary DAGSTER_HOME; `mdp seed
--append-days 1` lands a day; the landing sensor, then declarative automation, must bring the
warehouse and the features up to date with no other command. Bounded in time; the whole
process group is killed at the end (dagster dev ignores SIGTERM for a long time).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from my_data_platform_tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT_S = 420
WAREHOUSE_EVENTS = dg.AssetKey(["warehouse", "events"])
FEATURES = ("features", "training_examples")


def _mdp(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "my_data_platform.cli", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _latest(instance: dg.DagsterInstance, *path: str) -> float:
    ev = instance.get_latest_materialization_event(dg.AssetKey(list(path)))
    return ev.timestamp if ev else 0.0


@pytest.mark.slow
def test_new_day_flows_through_sensor_and_automation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    env = {
        **os.environ,
        "MDP_DATA_DIR": str(data),
        "DAGSTER_HOME": str(data / "dagster_home"),
        "COLUMNS": "200",
    }
    for name in ("MDP_OBJECT_STORE", "MDP_OLTP_URL", "MDP_WAREHOUSE_CATALOG"):
        env.pop(name, None)
    seeded = _mdp(env, "seed", "--days", "2", "--users", "40", "--photos", "240",
                  "--events-per-day", "2000", "--seed", "3")  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    ran = _mdp(env, "run")
    assert ran.returncode == 0, ran.stdout + ran.stderr

    (data / "dagster_home").mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (tmp_path / "dagster_dev.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
        with dg.DagsterInstance.get() as instance:
            before = {"features": _latest(instance, *FEATURES)}
            time.sleep(10)  # let the daemon start and tick once on the existing days
            landed = _mdp(env, "seed", "--append-days", "1")
            assert landed.returncode == 0, landed.stderr
            new_day = "2026-01-03"
            deadline = time.monotonic() + TIMEOUT_S
            warehouse_days: set[str] = set()
            features_refreshed = False
            sensors: set[str] = set()
            while time.monotonic() < deadline:
                time.sleep(5)
                warehouse_days = instance.get_materialized_partitions(WAREHOUSE_EVENTS)
                features_refreshed = _latest(instance, *FEATURES) > before["features"]
                # a materialization lands before its run ends: wait for the runs to succeed
                done = instance.get_runs(
                    filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS])
                )
                sensors = {r.tags.get("dagster/sensor_name") for r in done} - {None}
                if (
                    new_day in warehouse_days
                    and features_refreshed
                    and {"landing_events_sensor", "eager_automation_sensor"} <= sensors
                ):
                    break
            assert new_day in warehouse_days and features_refreshed, (
                f"not refreshed within {TIMEOUT_S}s: warehouse days {sorted(warehouse_days)}, "
                f"features refreshed: {features_refreshed}\n"
                + (tmp_path / "dagster_dev.log").read_text()[-3000:]
            )
            # the runs were launched by the daemon (sensor / automation), not by a command
            runs = instance.get_runs()
            summary = [(r.status.value, r.tags.get("dagster/sensor_name")) for r in runs]
            assert "landing_events_sensor" in sensors, summary
            assert "eager_automation_sensor" in sensors, summary
        query = f"SELECT count(*) AS n FROM warehouse.events WHERE landing_date = '{new_day}'"
        sql = _mdp(env, "sql", "--format", "json", query)
        assert sql.returncode == 0 and '"n": 0' not in sql.stdout, sql.stdout + sql.stderr
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        log.close()
