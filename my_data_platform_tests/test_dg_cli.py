"""Tier 1: Dagster's current command line (`dg`, from dagster-dg-cli) loads this project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DG = Path(sys.executable).with_name("dg")

pytestmark = pytest.mark.slow  # each call starts a code server (~15 s of CPU)


def _dg(data_env: Path, *args: str) -> subprocess.CompletedProcess[str]:
    home = data_env / "dagster_home"
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "MDP_DATA_DIR": str(data_env),
        "DAGSTER_HOME": str(home),
        # dg compares the active environment with the project's .venv; in a test the active
        # one is the interpreter running pytest
        "VIRTUAL_ENV": sys.prefix,
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [str(DG), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_dg_check_defs_passes(data_env: Path) -> None:
    proc = _dg(data_env, "check", "defs")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All definitions loaded successfully" in proc.stdout + proc.stderr


def test_dg_list_defs_lists_the_graph(data_env: Path) -> None:
    proc = _dg(data_env, "list", "defs", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = json.loads(proc.stdout)
    assets = {a["asset_key"]: a for a in listed["assets"]}
    for key in ("lake/events", "warehouse/events", "datasets/popularity"):
        assert key in assets, sorted(assets)
    assert assets["warehouse/events"]["group_name"] == "warehouse"
    checks = {c["name"] for c in listed["asset_checks"]}
    assert "landed_equals_loaded_plus_quarantined" in checks
    resources = {r["name"] for r in listed["resources"]}
    assert {"io_manager", "object_store", "warehouse", "versioning"} <= resources
    assert {s["name"] for s in listed["sensors"]} >= {"landing_events_sensor"}
    assert {s["name"] for s in listed["schedules"]} >= {"nightly_dataset_schedule"}
