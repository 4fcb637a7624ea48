"""Run health on a real instance: a dead run is failed, a live one kept, and the queue moves on.

The instance lives in a temporary DAGSTER_HOME configured by the repo's dagster.yaml
(QueuedRunCoordinator, two runs at a time, the default run launcher). This module is also the
small code location the queued run is launched from, through a real gRPC code server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.dagster_run import make_new_run_id
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import PythonFileTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)

from my_data_platform.defs.automation.run_health import (
    HEARTBEAT_TAG,
    fail_stale_runs,
    find_stale_runs,
    heartbeat_executor,
    run_heartbeat,
    sensor_interval_s,
)
from my_data_platform.runner import write_instance_config
from my_data_platform.settings import SettingsError, get_settings, reset_settings

ROOT = Path(__file__).resolve().parents[3]
LOCATION = "run_health_test"
STALE_AFTER_S = 300.0


@dg.op
def nap() -> int:
    time.sleep(3)  # several heartbeats long, silent in the event log
    return 1


@dg.job(executor_def=heartbeat_executor)
def napping() -> None:
    nap()


run_health_test_defs = dg.Definitions(jobs=[napping])


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    reset_settings()
    yield monkeypatch
    reset_settings()


def test_settings_defaults_and_a_threshold_below_three_heartbeats(
    settings_env: pytest.MonkeyPatch,
) -> None:
    settings_env.delenv("MDP_RUN_HEARTBEAT_S", raising=False)
    settings_env.delenv("MDP_RUN_STALE_AFTER_S", raising=False)
    s = get_settings()
    assert (s.run_heartbeat_s, s.run_stale_after_s) == (30.0, 300.0)
    assert sensor_interval_s(s.run_stale_after_s) == 60
    settings_env.setenv("MDP_RUN_STALE_AFTER_S", "60")
    settings_env.setenv("MDP_RUN_HEARTBEAT_S", "30")
    reset_settings()
    with pytest.raises(SettingsError, match="MDP_RUN_STALE_AFTER_S"):
        get_settings()
    settings_env.setenv("MDP_RUN_HEARTBEAT_S", "0")
    reset_settings()
    with pytest.raises(SettingsError, match="MDP_RUN_HEARTBEAT_S"):
        get_settings()


def _event(instance: dg.DagsterInstance, run: dg.DagsterRun, kind: DagsterEventType, ts: float):
    """Store a run event as its worker would have, at time ``ts``."""
    event = dg.DagsterEvent(event_type_value=kind.value, job_name=run.job_name)
    entry = EventLogEntry(
        error_info=None, level=logging.DEBUG, user_message="", run_id=run.run_id,
        timestamp=ts, dagster_event=event, job_name=run.job_name,
    )  # fmt: skip
    instance.handle_new_event(entry)


def _create_run(
    context: WorkspaceProcessContext, instance: dg.DagsterInstance, tags: dict[str, str]
) -> dg.DagsterRun:
    """A run of ``napping`` as the webserver would create it (origins, snapshots)."""
    request = context.create_request_context()
    location = request.get_code_location(LOCATION)
    job = location.get_repository("__repository__").get_full_job("napping")
    plan = location.get_execution_plan(job, {}, step_keys_to_execute=None, known_state=None)
    return instance.create_run(
        job_name="napping", run_id=None, run_config={}, resolved_op_selection=None,
        step_keys_to_execute=None, status=dg.DagsterRunStatus.NOT_STARTED, tags=tags,
        root_run_id=None, parent_run_id=None, job_snapshot=job.job_snapshot,
        execution_plan_snapshot=plan.execution_plan_snapshot, parent_job_snapshot=None,
        remote_job_origin=job.get_remote_origin(), job_code_origin=job.get_python_origin(),
        asset_selection=None, asset_check_selection=None, op_selection=None,
        asset_graph=request.asset_graph,
    )  # fmt: skip


def _started(instance, run, ts, tags=None) -> None:  # type: ignore[no-untyped-def]
    _event(instance, run, DagsterEventType.PIPELINE_STARTING, ts)
    _event(instance, run, DagsterEventType.PIPELINE_START, ts)
    if tags:
        instance.add_run_tags(run.run_id, tags)


def _status(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRunStatus:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return run.status


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


@pytest.mark.slow
def test_only_the_dead_run_is_failed_and_the_queued_run_then_runs(
    tmp_path: Path, settings_env: pytest.MonkeyPatch
) -> None:
    settings_env.setenv("MDP_RUN_HEARTBEAT_S", "0.5")  # read by the run worker's executor
    settings_env.setenv("MDP_DATA_DIR", str(tmp_path / "data"))
    home = tmp_path / "dagster_home"
    write_instance_config(home)
    target = PythonFileTarget(
        python_file=__file__, attribute="run_health_test_defs",
        working_directory=str(ROOT), location_name=LOCATION,
    )  # fmt: skip
    with (
        dg.DagsterInstance.from_config(str(home)) as instance,
        create_test_daemon_workspace_context(target, instance) as context,
    ):
        now = time.time()
        old = now - 2 * STALE_AFTER_S
        dead = _create_run(context, instance, {})
        _started(instance, dead, old)
        beating = _create_run(context, instance, {})  # old events, fresh heartbeat
        _started(instance, beating, old, {HEARTBEAT_TAG: _iso(now - 10)})
        queued = _create_run(context, instance, {})
        instance.submit_run(queued.run_id, context.create_request_context())
        assert _status(instance, queued.run_id) == dg.DagsterRunStatus.QUEUED

        daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
        list(daemon.run_iteration(context))  # both slots are held: nothing moves
        assert _status(instance, queued.run_id) == dg.DagsterRunStatus.QUEUED

        assert [s.run_id for s in find_stale_runs(instance, STALE_AFTER_S)] == [dead.run_id]
        ended = fail_stale_runs(instance, STALE_AFTER_S)
        assert [s.run_id for s in ended] == [dead.run_id]
        assert _status(instance, dead.run_id) == dg.DagsterRunStatus.FAILURE
        assert _status(instance, beating.run_id) == dg.DagsterRunStatus.STARTED
        failure = instance.get_records_for_run(
            dead.run_id, of_type=DagsterEventType.PIPELINE_FAILURE
        ).records
        message = failure[0].event_log_entry.dagster_event.message  # type: ignore[union-attr]
        assert "run_health_sensor" in message and "no heartbeat and no event" in message
        assert fail_stale_runs(instance, STALE_AFTER_S) == []  # nothing left to end

        list(daemon.run_iteration(context))  # a slot is free: the queued run is launched
        deadline = time.monotonic() + 180
        while not (run := instance.get_run_by_id(queued.run_id)) or not run.is_finished:
            assert time.monotonic() < deadline, f"queued run still {run and run.status}"
            time.sleep(0.5)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        # the run worker beat while the op slept (3 s), after its start event
        start = instance.get_records_for_run(
            run.run_id, of_type=DagsterEventType.PIPELINE_START
        ).records[0]
        beat = datetime.fromisoformat(run.tags[HEARTBEAT_TAG]).timestamp()
        assert beat >= int(start.event_log_entry.timestamp) + 1, (run.tags, start)


@dg.op
def short_nap() -> None:
    time.sleep(0.5)


@dg.job
def brief() -> None:
    short_nap()


def test_an_in_process_run_beats_through_run_heartbeat(tmp_path: Path) -> None:
    """How ``mdp run`` beats: the run id is chosen first, so the heartbeat can wait for it."""
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        run_id = make_new_run_id()
        with run_heartbeat(instance, run_id, interval_s=0.05):
            time.sleep(0.2)  # no run yet: the heartbeat waits instead of failing
            assert instance.get_run_by_id(run_id) is None
            result = brief.execute_in_process(instance=instance, run_id=run_id)
        assert result.success
        run = instance.get_run_by_id(run_id)
        assert run is not None and HEARTBEAT_TAG in run.tags
        assert not [t for t in threading.enumerate() if t.name.startswith("mdp-heartbeat")]
        # a finished run is never stale, whatever its heartbeat's age
        assert find_stale_runs(instance, 0.0, now=time.time() + 3600) == []


def test_a_dead_starting_run_fails_and_a_dead_canceling_run_is_canceled(tmp_path: Path) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        old = time.time() - 2 * STALE_AFTER_S
        starting = instance.create_run_for_job(brief, status=dg.DagsterRunStatus.NOT_STARTED)
        _event(instance, starting, DagsterEventType.PIPELINE_STARTING, old)
        canceling = instance.create_run_for_job(brief, status=dg.DagsterRunStatus.NOT_STARTED)
        _started(instance, canceling, old)
        _event(instance, canceling, DagsterEventType.PIPELINE_CANCELING, old)
        fresh = instance.create_run_for_job(brief, status=dg.DagsterRunStatus.NOT_STARTED)
        _event(instance, fresh, DagsterEventType.PIPELINE_STARTING, time.time())

        ended = {s.run_id: s.status for s in fail_stale_runs(instance, STALE_AFTER_S)}
        assert ended == {
            starting.run_id: dg.DagsterRunStatus.STARTING,
            canceling.run_id: dg.DagsterRunStatus.CANCELING,
        }
        assert _status(instance, starting.run_id) == dg.DagsterRunStatus.FAILURE
        assert _status(instance, canceling.run_id) == dg.DagsterRunStatus.CANCELED
        assert _status(instance, fresh.run_id) == dg.DagsterRunStatus.STARTING
        canceled = instance.get_records_for_run(
            canceling.run_id, of_type=DagsterEventType.PIPELINE_CANCELED
        ).records
        assert "Marked canceled by run_health_sensor" in (
            canceled[0].event_log_entry.dagster_event.message or ""  # type: ignore[union-attr]
        )
