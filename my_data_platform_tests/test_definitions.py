"""Tier 1: the code location loads, validates, and every asset explains itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from my_data_platform.runner import load_definitions
from my_data_platform.settings import get_settings, reset_settings

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


@pytest.mark.slow  # two `dagster definitions validate` subprocesses
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


def test_each_domain_registers_its_resources_and_secrets_stay_env_vars(
    data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Secrets reach resources as EnvVars (the UI shows the name, never the value); without
    them, resources get computed defaults that hold none."""
    res = load_definitions().resources
    assert {"object_store", "oltp", "io_manager", "warehouse", "alerts"} <= set(res)
    assert not isinstance(res["oltp"].url, dg.EnvVar)
    assert res["oltp"].url == get_settings().oltp_url
    assert res["alerts"].webhook_url is None

    secrets = {
        "MDP_OLTP_URL": f"sqlite:///{data_env / 'oltp.sqlite'}",
        "MDP_WAREHOUSE_CATALOG": f"sqlite:{data_env / 'catalog.sqlite'}",
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "MDP_ALERT_WEBHOOK_URL": "https://hooks.invalid/token",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MDP_OBJECT_STORE", "s3")
    monkeypatch.setenv("MDP_S3_BUCKET", "bucket")
    reset_settings()
    res = load_definitions().resources
    found = {
        "MDP_OLTP_URL": res["oltp"].url,
        "MDP_WAREHOUSE_CATALOG": res["io_manager"].catalog,
        "AWS_ACCESS_KEY_ID": res["object_store"].s3.aws_access_key_id,
        "AWS_SECRET_ACCESS_KEY": res["object_store"].s3.aws_secret_access_key,
        "MDP_ALERT_WEBHOOK_URL": res["alerts"].webhook_url,
    }
    assert res["warehouse"].catalog == found["MDP_WAREHOUSE_CATALOG"]
    for name, value in found.items():
        assert isinstance(value, dg.EnvVar) and value.env_var_name == name, name
