"""Dagster on PostgreSQL storage with celery workers that share nothing but the servers.

Why: this is the skeleton of the distributed test (issue 18). It proves that steps run in
worker processes with their own home, temp, data and Dagster folders, that step outputs
travel through S3 and run state through PostgreSQL, and it pins down what happens when a
worker dies in the middle of a step, which decides how the real test configures celery:

* default celery settings, pool process SIGKILLed: the worker's main process reports
  ``WorkerLostError`` and the run fails at once;
* default settings, whole worker SIGKILLed: the task was acknowledged on receipt, so it is
  lost and the run waits forever (not tested: it would only end at pytest's timeout);
* ``task_acks_late`` + ``task_reject_on_worker_lost`` with a Redis ``visibility_timeout``
  longer than any step: the step is delivered again (at once after a pool-process death,
  after the visibility timeout after a whole-worker death) and the run succeeds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from my_data_platform_tests.scaleout import celery_job
from my_data_platform_tests.scaleout.conftest import unique_name
from my_data_platform_tests.scaleout.servers import MotoS3, PostgresServer, RedisServer
from my_data_platform_tests.scaleout.workers import (
    REPO_ROOT,
    CeleryWorker,
    celery_execution_config,
    celery_workers,
    write_dagster_home,
)

pytestmark = [
    pytest.mark.slow,
    # dagster-celery registers its task on the app for every step it submits; celery 5.7 warns
    # about the re-registration (same callable). Not ours to change.
    pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning"),
]

STEP_S = 4.0
"""How long the step that gets killed runs (long enough to kill it in the middle)."""

ACKS_LATE = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    # Redis gives an unacknowledged task to another worker after visibility_timeout; a step
    # that runs longer than that is delivered again while it runs (then again and again).
    # Sweeping every second (instead of every 100 s) makes recovery take about the timeout.
    "broker_transport_options": {
        "visibility_timeout": 3 * STEP_S,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
}


class Cluster:
    """The servers' coordinates, a Dagster instance on PostgreSQL, and the workers' env."""

    def __init__(
        self,
        tmp: Path,
        postgres: PostgresServer,
        redis_db: tuple[str, str],
        moto: MotoS3,
        bucket: str,
        dbname: str,
        config_source: dict[str, Any] | None,
    ) -> None:
        postgres.create_database(dbname)
        self.storage = postgres.dagster_storage(dbname)
        self.execution = celery_execution_config(*redis_db, config_source)
        self.env = {
            **moto.credentials,
            "MDP_SCALEOUT_S3_ENDPOINT": moto.endpoint_url,
            "MDP_SCALEOUT_S3_BUCKET": bucket,
        }
        self.home = write_dagster_home(tmp / "dagster_home", self.storage)
        self.bucket = bucket
        self.workers: dict[str, CeleryWorker] = {}

    def run_config(self, markers: Path, first_sleep_s: float = 0.0) -> dict[str, Any]:
        return {
            "execution": {"config": self.execution},
            "ops": {
                "first": {"config": {"sleep_s": first_sleep_s, "marker_dir": str(markers)}},
                "second": {"config": {}},
            },
        }


_redis_dbs = iter(range(0, 16, 2))


@contextlib.contextmanager
def _cluster(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    redis_server: RedisServer,
    moto_s3: MotoS3,
    config_source: dict[str, Any] | None,
) -> Iterator[tuple[Cluster, dg.DagsterInstance]]:
    """Two workers ``w0`` and ``w1`` and the test process's instance, for a module."""
    db = next(_redis_dbs)  # a broker and a result db of its own on the shared Redis
    cluster = Cluster(
        tmp_path_factory.mktemp("cluster"), postgres_server,
        (redis_server.db_url(db), redis_server.db_url(db + 1)), moto_s3,
        moto_s3.create_bucket(unique_name(request, "io").replace("_", "-")[:63]),
        unique_name(request, "dagster"), config_source,
    )  # fmt: skip
    # The instance comes first: its first connection creates Dagster's tables, and two
    # workers creating them at the same time would race.
    with (
        pytest.MonkeyPatch.context() as mp,
        dg.DagsterInstance.from_config(str(cluster.home)) as instance,
        celery_workers(
            ["w0", "w1"], storage=cluster.storage, execution_config=cluster.execution,
            env=cluster.env,
        ) as workers,
    ):  # fmt: skip
        # the coordinator (this process, in the in-process test) loads outputs through S3
        for k, v in cluster.env.items():
            mp.setenv(k, v)
        cluster.workers = workers
        yield cluster, instance


@pytest.fixture(scope="module")
def default_cluster(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    redis_server: RedisServer,
    moto_s3: MotoS3,
) -> Iterator[tuple[Cluster, dg.DagsterInstance]]:
    """Workers with celery's default acknowledgement (on receipt)."""
    with _cluster(request, tmp_path_factory, postgres_server, redis_server, moto_s3, None) as c:
        yield c


@pytest.fixture(scope="module")
def acks_late_cluster(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    redis_server: RedisServer,
    moto_s3: MotoS3,
) -> Iterator[tuple[Cluster, dg.DagsterInstance]]:
    """Workers that acknowledge a task once it finished. The whole-worker kill test leaves
    one worker: it runs last in this module."""
    with _cluster(
        request, tmp_path_factory, postgres_server, redis_server, moto_s3, ACKS_LATE
    ) as c:
        yield c


def _coordinator(cluster: Cluster, run_config: dict[str, Any], log: Path) -> subprocess.Popen:
    """The run's coordinator (what a run worker would be) as a process the test can kill."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "my_data_platform_tests.scaleout.celery_job",
             str(cluster.home), json.dumps(run_config)],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True,
            env={**os.environ, **cluster.env, "PYTHONPATH": str(REPO_ROOT)},
        )  # fmt: skip


def _wait_for_marker(path: Path, coordinator: subprocess.Popen, log: Path) -> tuple[int, str]:
    deadline = time.monotonic() + 120
    while not path.exists():
        assert coordinator.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"the step never started\n{log.read_text()[-3000:]}"
        time.sleep(0.05)
    time.sleep(0.05)  # the marker's content is one short write
    pid, worker = path.read_text().split()
    return int(pid), worker


def _finish(coordinator: subprocess.Popen, log: Path, timeout: float = 180) -> dict[str, Any]:
    try:
        coordinator.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(coordinator.pid, signal.SIGKILL)
        coordinator.wait(30)
        pytest.fail(f"the run did not finish in {timeout:.0f} s\n{log.read_text()[-3000:]}")
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith('{"run_id"')]
    assert coordinator.returncode == 0 and lines, log.read_text()[-3000:]
    return json.loads(lines[-1])


def _step_starts(instance: dg.DagsterInstance, run_id: str, step: str) -> list[int]:
    """The pid of every attempt of ``step``, in order."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records
    return [
        r.event_log_entry.dagster_event.pid for r in records if r.event_log_entry.step_key == step
    ]


def test_steps_run_in_workers_sharing_only_servers(
    default_cluster: tuple[Cluster, dg.DagsterInstance], moto_s3: MotoS3, tmp_path: Path
) -> None:
    cluster, instance = default_cluster
    homes = {w.name: str(w.root / "home") for w in cluster.workers.values()}
    with dg.execute_job(
        dg.reconstructable(celery_job.where_job), instance, run_config=cluster.run_config(tmp_path)
    ) as result:
        assert result.success
        second = result.output_for_node("second")
    # the test process only coordinated: both steps ran in worker processes, each with its
    # worker's private HOME, and the second read the first's output from S3
    for where in (second, second["upstream"]):
        assert where["pid"] != os.getpid()
        assert where["worker"] in homes
        assert where["home"] == homes[where["worker"]]
    listing = moto_s3.client().list_objects_v2(Bucket=cluster.bucket)
    assert f"dagster-io/storage/{result.run_id}/first/result" in [
        o["Key"] for o in listing["Contents"]
    ]
    # the run's state and events are in PostgreSQL, where any process reads them
    stored = instance.get_run_by_id(result.run_id)
    assert stored is not None and stored.status == dg.DagsterRunStatus.SUCCESS
    done = instance.get_records_for_run(result.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
    assert {r.event_log_entry.step_key for r in done.records} == {"first", "second"}


def test_pool_process_killed_fails_the_run_by_default(
    default_cluster: tuple[Cluster, dg.DagsterInstance], tmp_path: Path
) -> None:
    """Default celery settings: the step's process dies, the worker reports WorkerLostError,
    Dagster fails the run (no retry)."""
    cluster, instance = default_cluster
    log = tmp_path / "coordinator.log"
    coordinator = _coordinator(cluster, cluster.run_config(tmp_path, first_sleep_s=60), log)
    pid, _ = _wait_for_marker(tmp_path / "first.started", coordinator, log)
    os.kill(pid, signal.SIGKILL)
    outcome = _finish(coordinator, log)
    assert outcome["success"] is False
    text = log.read_text()
    assert "billiard.exceptions.WorkerLostError: Worker exited prematurely: signal 9" in text
    run = instance.get_run_by_id(outcome["run_id"])
    assert run is not None and run.status == dg.DagsterRunStatus.FAILURE


@pytest.mark.parametrize("kill", ["pool-process", "whole-worker"])  # whole-worker last
def test_killed_step_is_redelivered_with_acks_late(
    acks_late_cluster: tuple[Cluster, dg.DagsterInstance], tmp_path: Path, kill: str
) -> None:
    """With late acknowledgement the killed step runs again (on either worker) and the run
    succeeds; the first attempt's STEP_START stays in the event log."""
    cluster, instance = acks_late_cluster
    log = tmp_path / "coordinator.log"
    marker = tmp_path / "first.started"
    coordinator = _coordinator(cluster, cluster.run_config(tmp_path, first_sleep_s=STEP_S), log)
    pid, worker = _wait_for_marker(marker, coordinator, log)
    marker.unlink()
    if kill == "pool-process":
        os.kill(pid, signal.SIGKILL)
    else:
        cluster.workers[worker].kill()
    outcome = _finish(coordinator, log)
    assert outcome["success"] is True, log.read_text()[-3000:]
    again_pid, again_worker = marker.read_text().split()
    assert int(again_pid) != pid
    if kill == "whole-worker":
        assert again_worker != worker  # the only worker left
    starts = _step_starts(instance, outcome["run_id"], "first")
    assert starts == [pid, int(again_pid)]
