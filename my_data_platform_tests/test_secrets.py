"""Secrets stay secret: not in the analyst's session, not in resource config, not in what the
Dagster UI shows (run config, event logs, asset metadata, the repository snapshot).

Every secret variable gets a distinctive fake value; the assertions look for those values in
everything an analyst or a UI user could read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from my_data_platform.settings import SECRET_VARS, reset_settings

ROOT = Path(__file__).resolve().parent.parent

# Values no code would print by accident; each must never be shown.
FAKE = {
    "MDP_OLTP_URL": "postgresql://app:OLTP-PASSWORD-a61f@db.internal:5432/app",
    "MDP_WAREHOUSE_CATALOG": "postgres:dbname=lake host=db user=u password=CATALOG-PW-93bd",
    "AWS_ACCESS_KEY_ID": "AKIAPIPELINE7Q2X",
    "AWS_SECRET_ACCESS_KEY": "PIPELINE-AWS-SECRET-5c0e",
    "LAKEFS_ACCESS_KEY_ID": "AKIALAKEFS9D1M",
    "LAKEFS_SECRET_ACCESS_KEY": "LAKEFS-SECRET-77aa",
    "MDP_FIFTYONE_DATABASE_URI": "mongodb://fo:MONGO-PW-4e21@mongo.internal:27017",
    "MDP_ALERT_WEBHOOK_URL": "https://hooks.example.com/services/WEBHOOK-TOKEN-0b3c",
    "MDP_ANALYST_AWS_ACCESS_KEY_ID": "AKIAANALYST3K8P",
    "MDP_ANALYST_AWS_SECRET_ACCESS_KEY": "ANALYST-AWS-SECRET-d9f4",
    "MDP_DAGSTER_POSTGRES_URL": "postgresql://dagster:DAGSTER-PG-PW-1f7a@pg.internal:5432/dagster",
    "MDP_CELERY_BROKER_URL": "redis://:BROKER-PW-6c2d@redis.internal:6379/0",
    "MDP_CELERY_BACKEND_URL": "redis://:BACKEND-PW-8e5b@redis.internal:6379/1",
}
# reach Dagster through the instance config and the executor config, never a resource
NOT_RESOURCE_SECRETS = {
    "MDP_ANALYST_AWS_ACCESS_KEY_ID",  # the analysts' keys are read by the CLI only
    "MDP_ANALYST_AWS_SECRET_ACCESS_KEY",
    "MDP_DAGSTER_POSTGRES_URL",
    "MDP_CELERY_BROKER_URL",
    "MDP_CELERY_BACKEND_URL",
}
# The parts of each value that are the secret (a URL's host or a key id may be shown).
SECRET_PARTS = [
    "OLTP-PASSWORD-a61f",
    "CATALOG-PW-93bd",
    "PIPELINE-AWS-SECRET-5c0e",
    "AKIAPIPELINE7Q2X",
    "LAKEFS-SECRET-77aa",
    "AKIALAKEFS9D1M",
    "MONGO-PW-4e21",
    "WEBHOOK-TOKEN-0b3c",
    "ANALYST-AWS-SECRET-d9f4",
    "DAGSTER-PG-PW-1f7a",
    "BROKER-PW-6c2d",
    "BACKEND-PW-8e5b",
]


def test_every_secret_variable_has_a_fake_value() -> None:
    assert set(FAKE) == set(SECRET_VARS)


def _leaks(text: str) -> list[str]:
    return [s for s in SECRET_PARTS if s in text]


# ---------------------------------------------------------------------------------------------
# (b) resources hold EnvVars


def _fields(resource: Any, path: str) -> Iterator[tuple[str, Any]]:
    for name in type(resource).model_fields:
        value = getattr(resource, name)
        yield f"{path}.{name}", value
        if isinstance(value, dg.ConfigurableResource | dg.ConfigurableIOManagerFactory):
            yield from _fields(value, f"{path}.{name}")


def test_resources_hold_envvars_never_the_values(
    data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in FAKE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MDP_OBJECT_STORE", "s3")
    monkeypatch.setenv("MDP_S3_BUCKET", "bucket")
    monkeypatch.setenv("MDP_VERSIONING", "lakefs")
    monkeypatch.setenv("LAKEFS_ENDPOINT", "http://127.0.0.1:9")
    reset_settings()
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._serdes import serialize_value

    from my_data_platform.runner import load_definitions

    defs = load_definitions()
    envvars: dict[str, str] = {}
    for key, resource in (defs.resources or {}).items():
        assert _leaks(repr(resource)) == [], key
        for path, value in _fields(resource, key):
            if isinstance(value, dg.EnvVar):
                envvars[path] = value.env_var_name
            else:
                assert _leaks(repr(value)) == [], path
    # every secret a resource takes is an EnvVar naming its variable
    assert set(envvars.values()) == set(SECRET_VARS) - NOT_RESOURCE_SECRETS
    assert envvars["oltp.url"] == "MDP_OLTP_URL"
    assert envvars["warehouse.catalog"] == "MDP_WAREHOUSE_CATALOG"
    assert envvars["io_manager.object_store.s3.aws_secret_access_key"] == "AWS_SECRET_ACCESS_KEY"
    # what the UI's resource pages are built from
    with warnings.catch_warnings():  # Dagster's own snapshot reads a deprecated property
        warnings.simplefilter("ignore", DeprecationWarning)
        snap = serialize_value(RepositorySnap.from_def(defs.get_repository_def()))
    assert _leaks(snap) == []
    assert "MDP_OLTP_URL" in snap  # shown by name


# ---------------------------------------------------------------------------------------------
# (a) and (c): a small world on S3 (moto), materialized; the analyst session and the instance


@pytest.fixture(scope="module")
def world(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    import boto3

    from my_data_platform.defs.lake.resources import object_store_from_settings
    from my_data_platform.runner import execute_plan, load_definitions, plan_refresh
    from my_data_platform.settings import get_settings
    from my_data_platform.synth import WorldConfig, generate_world
    from my_data_platform_tests.conftest import _ENV_VARS

    data = tmp_path_factory.mktemp("secrets") / "data"
    data.mkdir()
    # SQLite takes no password: the OLTP URL's secret part is its file name here
    oltp = data / "oltp-OLTP-PASSWORD-a61f.sqlite"
    env = {
        **FAKE,
        "MDP_OLTP_URL": f"sqlite:///{oltp}",
        "MDP_DATA_DIR": str(data),
        "DAGSTER_HOME": str(data / "dagster_home"),
        "MDP_OBJECT_STORE": "s3",
        "MDP_S3_BUCKET": "mdp-secrets",
        "MDP_S3_PREFIX": "platform",
        "MDP_S3_ENDPOINT_URL": s3_server,
        "AWS_REGION": "us-east-1",
    }
    del env["MDP_WAREHOUSE_CATALOG"]  # the sandbox opens SQLite catalogs only (no server here)
    boto3.client(
        "s3", endpoint_url=s3_server, region_name="us-east-1",
        aws_access_key_id="x", aws_secret_access_key="y",
    ).create_bucket(Bucket="mdp-secrets")  # fmt: skip
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        for var in _ENV_VARS:
            mp.delenv(var, raising=False)
        for k, v in env.items():
            mp.setenv(k, v)
        reset_settings()
        try:
            s = get_settings()
            config = WorldConfig(days=1, users=20, photos=40, events_per_day=400, seed=5)
            generate_world(config, object_store_from_settings(), s.oltp_url, s.ground_truth_dir)
            defs = load_definitions()
            plan = plan_refresh(defs, instance, "group:sources or group:lake or group:warehouse")
            outcomes = execute_plan(defs, instance, plan)
            assert all(o.success for o in outcomes), [o.failed_steps for o in outcomes]
            yield {"instance": instance, "env": env, "outcomes": outcomes}
        finally:
            reset_settings()


PROBES = [
    "SELECT * FROM duckdb_databases()",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_secrets()",
    "SELECT * FROM which_secret('s3://mdp-secrets/platform/warehouse/x', 's3')",
    "SELECT current_setting('s3_secret_access_key')",
    "SELECT current_setting('s3_access_key_id')",
    "SELECT getenv('AWS_SECRET_ACCESS_KEY')",
    "SELECT getenv('MDP_OLTP_URL')",
    "SELECT getenv('LAKEFS_SECRET_ACCESS_KEY')",
    "SELECT * FROM pragma_database_list",
    "SELECT * FROM pg_settings",
    "PRAGMA database_list",
    "SHOW ALL",
    "SELECT * FROM duckdb_extensions()",
    "SELECT * FROM duckdb_tables()",
    "SELECT * FROM duckdb_views()",
    "SELECT * FROM duckdb_functions() WHERE macro_definition IS NOT NULL",
    "SELECT * FROM ducklake_snapshots('mdp')",
    "SELECT * FROM ducklake_table_info('mdp')",
    "SELECT * FROM __ducklake_metadata_mdp.ducklake_metadata",
    "SELECT * FROM information_schema.schemata",
    "SHOW DATABASES",
]
# Straight on the locked connection (past the statement check): DuckDB's own state.
RAW_PROBES = [
    "SELECT value FROM duckdb_settings() WHERE name LIKE 's3%'",
    "SELECT secret_string FROM duckdb_secrets()",
    "SELECT current_setting('s3_secret_access_key'), current_setting('s3_access_key_id')",
    "SELECT current_setting('s3_session_token')",
]


@pytest.mark.slow
def test_the_analyst_session_shows_no_secret(world: dict[str, Any]) -> None:
    from my_data_platform.cli.sql import analyst_session
    from my_data_platform.core.sandbox import QueryRefused

    seen: list[str] = []
    with analyst_session() as session:
        assert session.run("SELECT count(*) FROM warehouse.users")[1] == [(20,)]
        for sql in PROBES:
            try:
                seen.append(json.dumps(session.run(sql), default=str))
            except (QueryRefused, duckdb.Error) as exc:
                seen.append(str(exc))
        for sql in RAW_PROBES:
            try:
                seen.append(json.dumps(session._conn.execute(sql).fetchall(), default=str))
            except duckdb.Error as exc:
                seen.append(str(exc))
    assert [
        (p, _leaks(t)) for p, t in zip(PROBES + RAW_PROBES, seen, strict=True) if _leaks(t)
    ] == []


@pytest.mark.slow
def test_mdp_sql_shows_no_secret(world: dict[str, Any]) -> None:
    env = {**os.environ, **world["env"]}
    outputs = []
    for sql in [*PROBES, "SELECT count(*) AS n FROM warehouse.events"]:
        done = subprocess.run(
            [sys.executable, "-m", "my_data_platform.cli", "sql", sql, "--format", "json"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        outputs.append(done.stdout + done.stderr)
    assert json.loads(outputs[-1])[0]["n"] > 0  # the session works with the analysts' key
    assert [o for o in outputs if _leaks(o)] == []


@pytest.mark.slow
def test_the_instance_records_no_secret(world: dict[str, Any]) -> None:
    """Run config, tags, every event (materializations with their metadata, logs, step
    outputs) of every run: what the UI and GraphQL serve."""
    from dagster._serdes import serialize_value

    instance: dg.DagsterInstance = world["instance"]
    runs = instance.get_runs()
    assert len(runs) == len(world["outcomes"]) > 0
    materialized = 0
    for run in runs:
        assert _leaks(json.dumps(run.run_config, default=str)) == [], run.run_id
        assert _leaks(json.dumps(run.tags)) == [], run.run_id
        for entry in instance.all_logs(run.run_id):
            assert _leaks(serialize_value(entry)) == [], entry.message
            if entry.dagster_event and entry.dagster_event.is_step_materialization:
                materialized += 1
    assert materialized > 0
