"""End to end: `dagster dev` killed mid-run, a new one started on the same instance.

Two long runs hold both of the run queue's slots (dagster.yaml: ``max_concurrent_runs: 2``);
their heartbeat keeps them alive past the stale threshold while their workers live. Then the
whole process group (webserver, daemon, code servers, run workers) is killed with SIGKILL, a
new `dagster dev` starts, and a new run is submitted: ``run_health_sensor`` must fail the two
dead runs, and only then the new run is dequeued and succeeds. This module is also the test's
second code location (the ``slumber`` job).
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.events import DagsterEventType

from my_data_platform.defs.automation.run_health import HEARTBEAT_TAG, heartbeat_executor
from my_data_platform_tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[3]
LOCATION = "run_health_e2e"
STALE_AFTER_S = 20
HEARTBEAT_S = 2
LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


@dg.op(config_schema={"seconds": float})
def slumber_op(context: dg.OpExecutionContext) -> None:
    time.sleep(context.op_config["seconds"])  # silent: no event while it sleeps


@dg.job(executor_def=heartbeat_executor)
def slumber() -> None:
    slumber_op()


e2e_defs = dg.Definitions(jobs=[slumber])


def _config(seconds: float) -> dict[str, Any]:
    return {"ops": {"slumber_op": {"config": {"seconds": seconds}}}}


class Dev:
    """One `dagster dev` in its own session (it ignores SIGTERM: the group gets SIGKILL)."""

    def __init__(self, tmp: Path, env: dict[str, str], name: str) -> None:
        self.port = free_port()
        self.log_path = tmp / f"{name}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", str(tmp / "workspace.yaml"),
             "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text()[-3000:]

    def wait_up(self) -> None:
        wait_for(lambda: self._serves(), 180, lambda: f"webserver not up\n{self.log()}")

    def _serves(self) -> bool:
        url = f"http://127.0.0.1:{self.port}/server_info"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def submit(self, seconds: float) -> str:
        """Launch a ``slumber`` run as the UI does (the GraphQL mutation; it is queued)."""
        params = {
            "selector": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__",
                         "jobName": "slumber"},
            "runConfigData": _config(seconds),
        }  # fmt: skip
        body = json.dumps({"query": LAUNCH, "variables": {"params": params}}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/graphql", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as r:
            answer = json.load(r)
        launched = answer["data"]["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", answer
        return launched["run"]["runId"]

    def kill(self) -> None:
        """SIGKILL to the whole group, and wait until no process of it is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._log.close()
        wait_for(lambda: not _group_alive(self.proc.pid), 30, lambda: "group survived SIGKILL")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(done: Callable[[], bool], timeout_s: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"not within {timeout_s}s: {why()}"
        time.sleep(1)


def _run(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return run


def _sleeping(instance: dg.DagsterInstance, run_id: str) -> bool:
    """The op has started (and so sleeps, silently)."""
    of_type = DagsterEventType.STEP_START
    return bool(instance.get_records_for_run(run_id, of_type=of_type).records)


def _last_event_ts(instance: dg.DagsterInstance, run_id: str) -> float:
    records = instance.get_records_for_run(run_id, ascending=False, limit=1).records
    return records[0].event_log_entry.timestamp


@pytest.mark.slow
def test_runs_of_a_killed_dagster_dev_are_failed_and_the_queue_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    home = data / "dagster_home"
    home.mkdir(parents=True)
    env = {
        **os.environ,
        "MDP_DATA_DIR": str(data),
        "DAGSTER_HOME": str(home),
        "MDP_RUN_STALE_AFTER_S": str(STALE_AFTER_S),
        "MDP_RUN_HEARTBEAT_S": str(HEARTBEAT_S),
        "PYTHONPATH": str(ROOT),
    }
    for name in ("MDP_OBJECT_STORE", "MDP_OLTP_URL", "MDP_WAREHOUSE_CATALOG"):
        env.pop(name, None)
    workspace = {
        "load_from": [
            {"python_module": {"module_name": "my_data_platform.definitions",
                               "location_name": "my_data_platform",
                               "working_directory": str(ROOT)}},
            {"python_file": {"relative_path": __file__, "attribute": "e2e_defs",
                             "location_name": LOCATION, "working_directory": str(ROOT)}},
        ]
    }  # fmt: skip
    (tmp_path / "workspace.yaml").write_text(yaml.safe_dump(workspace))
    ran = subprocess.run(
        [sys.executable, "-m", "my_data_platform.runner"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr  # the repo's dagster.yaml, merged into the home
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    first = Dev(tmp_path, env, "dev1")
    second: Dev | None = None
    try:
        first.wait_up()
        dead = [first.submit(600), first.submit(600)]
        with dg.DagsterInstance.get() as instance:
            wait_for(
                lambda: all(
                    HEARTBEAT_TAG in _run(instance, r).tags and _sleeping(instance, r) for r in dead
                ),
                240,
                lambda: f"{[_run(instance, r).status for r in dead]}\n{first.log()}",
            )
            # alive: silent in the event log for twice the threshold, kept by the heartbeat
            silent_since = max(_last_event_ts(instance, r) for r in dead)
            wait_for(lambda: time.time() > silent_since + 2 * STALE_AFTER_S, 120, str)
            assert [_run(instance, r).status for r in dead] == [dg.DagsterRunStatus.STARTED] * 2
            assert max(_last_event_ts(instance, r) for r in dead) == silent_since
            first.kill()

            second = Dev(tmp_path, env, "dev2")
            second.wait_up()
            new = second.submit(1)
            wait_for(
                lambda: _run(instance, new).is_finished,
                300,
                lambda: f"{[_run(instance, r).status for r in [*dead, new]]}\n{second.log()}",
            )
            assert _run(instance, new).status == dg.DagsterRunStatus.SUCCESS
            ended_at = []
            for run_id in dead:
                assert _run(instance, run_id).status == dg.DagsterRunStatus.FAILURE
                failure = instance.get_records_for_run(
                    run_id, of_type=DagsterEventType.PIPELINE_FAILURE
                ).records
                event = failure[0].event_log_entry
                assert event.dagster_event is not None
                assert "Marked failed by run_health_sensor" in (event.dagster_event.message or "")
                ended_at.append(event.timestamp)
            # the queue held the new run until the dead runs' slots were freed
            start = instance.get_records_for_run(
                new, of_type=DagsterEventType.PIPELINE_STARTING
            ).records
            assert start[0].event_log_entry.timestamp >= max(ended_at)
    finally:
        first.kill()
        if second is not None:
            second.kill()
