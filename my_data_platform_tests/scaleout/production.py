"""The production profile on loopback servers: its environment, a Dagster webserver and daemon
on PostgreSQL storage, and ``mdp`` run against them.

Why: the distributed test runs the platform the way docs/scale-out.md deploys it, with every
store on a server and steps on Celery workers that share no disk with each other, the
webserver, the daemon or the test. This module holds the pieces of that deployment the test
composes; each process runs in its own session so teardown ends it with its children.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from my_data_platform.core.graphql_client import DagsterWebserverClient, GraphQLError
from my_data_platform_tests.core.versioning.lakefs_server import LakeFSTestServer
from my_data_platform_tests.scaleout.servers import (
    MongodServer,
    MotoS3,
    PostgresServer,
    RedisServer,
    free_port,
    log_tail,
    stop_process_group,
)
from my_data_platform_tests.scaleout.workers import REPO_ROOT

FAST_DAEMON = (
    "import sys, dagster._daemon.controller as c; c.DEFAULT_DAEMON_INTERVAL_SECONDS = 1; "
    "from dagster._daemon.cli import main; sys.argv[0] = 'dagster-daemon'; main()"
)
"""``dagster-daemon`` with a 1 s loop instead of 30 s, so backfill runs start at once."""

_SCRUB = ("MDP_", "AWS_", "LAKEFS_", "DAGSTER_", "FIFTYONE_")


def clean_environ() -> dict[str, str]:
    """This process's environment without any setting of the platform, Dagster or a store."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}


@dataclass
class Production:
    """The production profile's variables for one test: three databases, one bucket, a Redis
    broker and result db, a lakeFS repository and a FiftyOne database of its own."""

    env: dict[str, str]
    dagster_storage: dict[str, Any]
    broker: str
    backend: str
    bucket: str
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        name: str,
        *,
        postgres: PostgresServer,
        redis: RedisServer,
        redis_db: int,
        moto: MotoS3,
        mongod: MongodServer,
        lakefs: LakeFSTestServer,
        visibility_timeout_s: float,
    ) -> Production:
        dbs = {kind: f"{name}_{kind}" for kind in ("dagster", "catalog", "oltp")}
        for db in dbs.values():
            postgres.create_database(db)
        bucket = moto.create_bucket(name.replace("_", "-")[:63])
        broker, backend = redis.db_url(redis_db), redis.db_url(redis_db + 1)
        dagster_url = postgres.url(dbs["dagster"], driver="postgresql")
        env = {
            "MDP_PROFILE": "production",
            "MDP_EXECUTOR": "celery",
            "MDP_CELERY_BROKER_URL": broker,
            "MDP_CELERY_BACKEND_URL": backend,
            "MDP_CELERY_VISIBILITY_TIMEOUT_S": str(visibility_timeout_s),
            "MDP_DAGSTER_POSTGRES_URL": dagster_url,
            "MDP_OBJECT_STORE": "s3",
            "MDP_S3_BUCKET": bucket,
            "MDP_S3_ENDPOINT_URL": moto.endpoint_url,
            **moto.credentials,
            "MDP_OLTP_URL": postgres.url(dbs["oltp"]),
            "MDP_WAREHOUSE_CATALOG": f"postgres:{postgres.dsn(dbs['catalog'])}",
            "MDP_VERSIONING": "lakefs",
            "LAKEFS_ENDPOINT": lakefs.endpoint,
            "LAKEFS_ACCESS_KEY_ID": lakefs.access_key_id,
            "LAKEFS_SECRET_ACCESS_KEY": lakefs.secret_access_key,
            "MDP_LAKEFS_REPOSITORY": name.replace("_", "-")[:40],
            "MDP_LAKEFS_STORAGE_NAMESPACE": f"s3://{bucket}/lakefs",
            "MDP_FIFTYONE_DATABASE_URI": mongod.uri,
            "MDP_FIFTYONE_DATABASE_NAME": f"fo_{name}"[:60],
        }
        return cls(
            env=env,
            dagster_storage=postgres.dagster_storage(dbs["dagster"]),
            broker=broker,
            backend=backend,
            bucket=bucket,
        )

    def host_env(self, root: Path) -> dict[str, str]:
        """The environment of one host (the test's ``mdp``, the webserver's): the profile's
        variables, and a data dir, home, temp dir and DAGSTER_HOME of its own under ``root``."""
        for sub in ("data", "home", "tmp", "dagster_home"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        return {
            **clean_environ(),
            **self.env,
            "MDP_DATA_DIR": str(root / "data"),
            "HOME": str(root / "home"),
            "TMPDIR": str(root / "tmp"),
            "DAGSTER_HOME": str(root / "dagster_home"),
            "PYTHONPATH": str(REPO_ROOT),
            "COLUMNS": "200",
            **self.extra,
        }

    def mdp(self, root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``python -m my_data_platform.cli <args>`` as a host under ``root`` would run it."""
        return subprocess.run(
            [sys.executable, "-m", "my_data_platform.cli", *args],
            env=self.host_env(root), cwd=root, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip


def instance_yaml(storage: dict[str, Any]) -> str:
    """The webserver's and daemon's dagster.yaml: PostgreSQL storage, runs launched at once
    (no queue: the daemon's backfill loop launches them), no telemetry."""
    return yaml.safe_dump(
        {
            "storage": storage,
            "run_coordinator": {
                "module": "dagster._core.run_coordinator",
                "class": "DefaultRunCoordinator",
            },
            "code_servers": {"local_startup_timeout": 300},
            "telemetry": {"enabled": False},
        },
        sort_keys=False,
    )


_SENSORS = """
query { repositoriesOrError { ... on RepositoryConnection { nodes {
  sensors { id name sensorState { status } }
  schedules { id name scheduleState { status } }
} } } }
"""


def stop_automation(client: DagsterWebserverClient) -> list[str]:
    """Stop every running sensor and schedule through the webserver, so only the test's
    backfills launch runs (the eager automation sensor would otherwise refresh the warehouse
    beside them). Returns the names stopped."""
    got = client.execute(_SENSORS)
    stopped = []
    for repo in got["repositoriesOrError"]["nodes"]:
        for sensor in repo["sensors"]:
            if sensor["sensorState"]["status"] == "RUNNING":
                client.execute(
                    "mutation($id: String) { stopSensor(id: $id) { __typename } }",
                    {"id": sensor["id"]},
                )
                stopped.append(sensor["name"])
        for schedule in repo["schedules"]:
            if schedule["scheduleState"]["status"] == "RUNNING":
                client.execute(
                    "mutation($id: String) { stopRunningSchedule(id: $id) { __typename } }",
                    {"id": schedule["id"]},
                )
                stopped.append(schedule["name"])
    return stopped


@contextlib.contextmanager
def webserver_and_daemon(production: Production) -> Iterator[tuple[str, Path]]:
    """``dagster-webserver`` over workspace.yaml and, once every sensor and schedule is
    stopped, ``dagster-daemon``; both on PostgreSQL storage. Yields the URL and the folder
    holding their logs. Not tmp_path: pytest prunes old basetemps of concurrent sessions."""
    with tempfile.TemporaryDirectory(prefix="mdp-webserver-") as tmp:
        root, logs = Path(tmp), Path(tmp) / "logs"
        logs.mkdir()
        env = production.host_env(root)
        Path(env["DAGSTER_HOME"], "dagster.yaml").write_text(
            instance_yaml(production.dagster_storage)
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env["MDP_WEBSERVER_URL"] = url
        procs: list[subprocess.Popen[bytes]] = []

        def launch(name: str, cmd: list[str]) -> None:
            with (logs / f"{name}.log").open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        cmd,
                        env=env,
                        cwd=REPO_ROOT,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )

        try:
            webserver = str(Path(sys.executable).parent / "dagster-webserver")
            launch("webserver", [webserver, "-w", "workspace.yaml", "-h", "127.0.0.1",
                                 "-p", str(port)])  # fmt: skip
            client = DagsterWebserverClient(url, timeout_s=30)
            deadline = time.monotonic() + 240
            while True:
                try:
                    client.find_repository()
                    break
                except GraphQLError:
                    if time.monotonic() > deadline or procs[0].poll() is not None:
                        raise AssertionError(
                            f"webserver did not come up:\n{log_tail(logs / 'webserver.log', 60)}"
                        ) from None
                    time.sleep(1)
            stop_automation(client)
            launch("daemon", [sys.executable, "-c", FAST_DAEMON, "run", "-w", "workspace.yaml"])
            yield url, logs
        finally:
            for proc in procs:
                stop_process_group(proc, 15)
