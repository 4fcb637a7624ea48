"""Shared fixtures: an isolated data dir per test, and a real S3 endpoint (moto's server)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from my_data_platform.settings import reset_settings

# Property tests are reproducible where it matters: `make test` and `make check` (and so CI)
# run the "ci" profile, which derandomizes every search (the same examples on every run, so a
# run never passes or fails by chance) and keeps no example database between runs. The "dev"
# profile (`pytest --hypothesis-profile=dev`) explores randomly and remembers what it found in
# .hypothesis/; a failure it finds is pinned with `@example` before it is fixed.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("dev", print_blob=True)

_ENV_VARS = [
    "MDP_DATA_DIR",
    "MDP_OBJECT_STORE",
    "MDP_S3_BUCKET",
    "MDP_S3_PREFIX",
    "MDP_S3_ENDPOINT_URL",
    "MDP_OLTP_URL",
    "MDP_WAREHOUSE_CATALOG",
    "MDP_WAREHOUSE_DATA_PATH",
    "DAGSTER_HOME",
    "MDP_FIFTYONE_DATABASE_URI",
    "MDP_VERSIONING",
    "MDP_FIFTYONE_DATABASE_NAME",
    "MDP_MEDIA_CACHE_DIR",
    # the scale-out profile (docs/scale-out.md)
    "MDP_PROFILE",
    "MDP_EXECUTOR",
    "MDP_CELERY_BROKER_URL",
    "MDP_CELERY_BACKEND_URL",
    "MDP_DAGSTER_POSTGRES_URL",
    "MDP_WEBSERVER_URL",
]


@pytest.fixture(scope="session", autouse=True)
def _stop_test_mongods(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Assets that touch FiftyOne start the bundled mongod under their (temporary) data dir;
    it would stop by itself after 5 idle minutes. Stop every one this session started now, so
    a test run leaves no process behind."""
    yield
    from my_data_platform.core.mongo import STATE_FILE, stop_mongod

    base = tmp_path_factory.getbasetemp()
    for state in base.rglob(STATE_FILE):
        stop_mongod(state.parent)


@pytest.fixture(autouse=True)
def _no_dagster_instance_left_current() -> Iterator[None]:
    """A test must leave Dagster's current instance (the one definitions load against) as it
    found it. An evaluation context built with ``build_schedule_context`` and never exited, for
    example, leaves its instance current after the test; once that instance is collected, any
    later test that loads definitions in the same worker fails with "undefined DagsterInstance
    weakref", depending on which tests the worker happened to run before."""
    from dagster._core.storage.defs_state.base import DefsStateStorage

    before = DefsStateStorage.get()
    yield
    assert DefsStateStorage.get() is before, (
        "this test left a Dagster instance current: enter Dagster instances and evaluation "
        "contexts with `with`"
    )


@pytest.fixture
def data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point every setting at a fresh data dir under ``tmp_path``."""
    for name in _ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("MDP_DATA_DIR", str(data))
    monkeypatch.setenv("DAGSTER_HOME", str(data / "dagster_home"))
    reset_settings()
    yield data
    reset_settings()


@contextlib.contextmanager
def pipeline_world(
    tmp_path_factory: pytest.TempPathFactory, name: str, config: Any, select: str | None = None
) -> Iterator[dict[str, Any]]:
    """A generated world in a fresh data dir and Dagster instance, with ``select`` (default:
    everything) materialized through ``mdp run``'s runner. For module-scoped fixtures."""
    import dagster as dg

    from my_data_platform.defs.lake.resources import object_store_from_settings
    from my_data_platform.runner import execute_plan, load_definitions, plan_refresh
    from my_data_platform.settings import get_settings
    from my_data_platform.synth import generate_world

    data = tmp_path_factory.mktemp(name) / "data"
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        for var in _ENV_VARS:
            mp.delenv(var, raising=False)
        mp.setenv("MDP_DATA_DIR", str(data))
        mp.setenv("DAGSTER_HOME", str(data / "dagster_home"))
        reset_settings()
        try:
            s = get_settings()
            generate_world(config, object_store_from_settings(), s.oltp_url, s.ground_truth_dir)
            defs = load_definitions()
            outcomes = execute_plan(defs, instance, plan_refresh(defs, instance, select))
            mats = {k: md for o in outcomes for k, md in o.materializations.items()}
            yield {
                "data": data, "instance": instance, "outcomes": outcomes, "defs": defs,
                "mats": mats,
            }  # fmt: skip
        finally:
            reset_settings()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1: a real HTTP endpoint, not an in-process mock."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("moto server did not start")
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def s3_env(
    s3_server: str, data_env: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[dict[str, str]]:
    """Settings for the S3 object store on moto, with a fresh bucket per test."""
    import boto3

    bucket = "mdp-" + request.node.name.lower().replace("_", "-").replace("[", "-")[:40].strip("-]")
    bucket = "".join(c for c in bucket if c.isalnum() or c == "-")[:60]
    env = {
        "MDP_OBJECT_STORE": "s3",
        "MDP_S3_BUCKET": bucket,
        "MDP_S3_PREFIX": "platform",
        "MDP_S3_ENDPOINT_URL": s3_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_REGION": "us-east-1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    reset_settings()
    boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing-secret",
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    yield env
    reset_settings()


def s3_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing-secret"),
        region_name="us-east-1",
    )


def wait_for_file(path: Path, timeout: float = 120) -> None:
    """Block until another process signals readiness by creating ``path`` (bounded)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.1)
