"""The repository's dagster.yaml holds no path, and merging it keeps an instance's storage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from my_data_platform.runner import INSTANCE_STORAGE_KEYS, PROJECT_ROOT, write_instance_config

REPO_FILE = PROJECT_ROOT / "dagster.yaml"

POSTGRES_STORAGE = {
    "postgres": {
        "postgres_db": {
            "hostname": "db.internal",
            "username": "dagster",
            "password": {"env": "DAGSTER_PG_PASSWORD"},
            "db_name": "dagster",
            "port": 5432,
        }
    }
}


@dg.asset
def marker() -> int:
    return 1


def test_the_repo_file_configures_no_storage() -> None:
    config = yaml.safe_load(REPO_FILE.read_text())
    assert not set(config) & set(INSTANCE_STORAGE_KEYS)


def test_two_instances_from_copies_of_the_repo_file_do_not_share_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # both start in the same working directory, where a relative storage path would meet
    monkeypatch.chdir(tmp_path)
    homes = [tmp_path / "a", tmp_path / "b"]
    for home in homes:
        home.mkdir()
        shutil.copy(REPO_FILE, home / "dagster.yaml")
    with (
        dg.DagsterInstance.from_config(str(homes[0])) as first,
        dg.DagsterInstance.from_config(str(homes[1])) as second,
    ):
        result = dg.materialize([marker], instance=first)
        assert result.success
        assert [r.run_id for r in first.get_runs()] == [result.run_id]
        assert second.get_runs() == []
    assert all(list(home.rglob("runs.db")) for home in homes)  # each under its own home
    assert not (tmp_path / "data").exists()


def test_merging_keeps_the_instance_storage_and_takes_the_repo_settings(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        yaml.safe_dump({"storage": POSTGRES_STORAGE, "run_coordinator": {"stale": True}})
    )
    write_instance_config(home)
    merged = yaml.safe_load((home / "dagster.yaml").read_text())
    assert merged["storage"] == POSTGRES_STORAGE
    assert merged["run_coordinator"] == yaml.safe_load(REPO_FILE.read_text())["run_coordinator"]
    # idempotent: a second merge changes nothing
    before = (home / "dagster.yaml").read_text()
    write_instance_config(home)
    assert (home / "dagster.yaml").read_text() == before


def test_a_postgres_storage_block_survives_the_runner_module(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump({"storage": POSTGRES_STORAGE}))
    env = {
        **os.environ,
        "MDP_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "my_data_platform.runner"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    merged = yaml.safe_load((home / "dagster.yaml").read_text())
    assert merged["storage"] == POSTGRES_STORAGE
    assert merged["telemetry"] == {"enabled": False}
    assert merged["run_coordinator"]["config"] == {"max_concurrent_runs": 2}


def test_run_monitoring_ends_runs_that_never_start_or_never_finish_canceling(
    tmp_path: Path,
) -> None:
    """STARTED runs are run_health_sensor's (the default launcher cannot check their worker)."""
    home = tmp_path / "home"
    write_instance_config(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_start_timeout_seconds == 180
        assert instance.run_monitoring_cancel_timeout_seconds == 180
        assert instance.run_monitoring_max_resume_run_attempts == 0
        assert not instance.run_launcher.supports_check_run_worker_health
