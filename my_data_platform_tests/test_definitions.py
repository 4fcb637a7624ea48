"""Tier 1: the code location loads, validates, and every asset explains itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from my_data_platform.runner import load_definitions

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = {
    "landing/events",
    "landing/photos",
    "oltp/users",
    "oltp/photos",
    "lake/events",
    "lake/events_quarantine",
    "lake/photos",
    "lake/photos_quarantine",
    "warehouse/users",
    "warehouse/photos",
    "warehouse/events",
    "warehouse/events_quarantine",
    "warehouse/photo_engagement_daily",
}


def test_all_assets_load_with_groups_kinds_and_docs(data_env: Path) -> None:
    defs = load_definitions()
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys >= EXPECTED
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name and node.group_name != "default", key
        assert node.kinds, f"{key} has no kinds"
        assert node.description and len(node.description) > 40, f"{key} has no description"
    # warehouse tables follow asset keys and are partitioned by landing day where it fits
    events = graph.get(dg.AssetKey(["warehouse", "events"]))
    assert events.partitions_def is not None
    assert events.metadata["partition_expr"] == "landing_date"
    checks = {k.name for k in graph.asset_check_keys}
    assert "landed_equals_loaded_plus_quarantined" in checks


def test_dagster_definitions_validate_passes(data_env: Path) -> None:
    env = {**os.environ, "MDP_DATA_DIR": str(data_env), "DAGSTER_HOME": str(data_env / "dh")}
    (data_env / "dh").mkdir()
    for args in (["-m", "my_data_platform.definitions"], ["-w", str(ROOT / "workspace.yaml")]):
        proc = subprocess.run(
            [sys.executable, "-m", "dagster", "definitions", "validate", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Validation successful" in proc.stdout + proc.stderr
