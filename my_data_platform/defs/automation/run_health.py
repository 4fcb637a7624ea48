"""Run health: every run beats a heartbeat into run storage, and a sensor fails the dead ones.

A ``dagster dev`` (or a host) killed mid-run leaves its runs STARTED for good: the default run
launcher cannot check a run worker's health, so run monitoring never fails them, and the
QueuedRunCoordinator keeps queueing every new run behind them. A process id means nothing on
another host, so liveness is judged from run storage only (SQLite or PostgreSQL alike):

- the heartbeat: the code location's executor wraps Dagster's default one and, while the run
  executes, a thread in the run worker writes the ``mdp/heartbeat`` tag (a UTC timestamp)
  every ``MDP_RUN_HEARTBEAT_S``; :func:`run_heartbeat` does the same for in-process runs.
- the detector: ``run_health_sensor`` fails a STARTING/STARTED run (cancels a CANCELING one)
  whose last heartbeat and last event are both older than ``MDP_RUN_STALE_AFTER_S``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from dagster._core.events import JobFailureData, RunFailureReason
from dagster._core.executor.base import Executor
from dagster._core.storage.dagster_run import ACTIVE_RUN_STATUSES

HEARTBEAT_TAG = "mdp/heartbeat"
SENSOR_NAME = "run_health_sensor"
logger = logging.getLogger(__name__)


# --- the heartbeat ------------------------------------------------------------------------------


def _beat(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Write one heartbeat; False once the run is over (nothing left to vouch for)."""
    run = instance.get_run_by_id(run_id)
    if run is None:  # an in-process run is created just after its heartbeat starts
        return True
    if run.is_finished:
        return False
    instance.add_run_tags(run_id, {HEARTBEAT_TAG: datetime.now(UTC).isoformat(timespec="seconds")})
    return True


@contextlib.contextmanager
def run_heartbeat(
    instance: dg.DagsterInstance, run_id: str, interval_s: float | None = None
) -> Iterator[None]:
    """Beat for ``run_id`` in a background thread while the block runs.

    A failed write is logged and retried at the next beat: a busy database never fails a run.
    """
    if interval_s is None:
        from my_data_platform.settings import get_settings

        interval_s = get_settings().run_heartbeat_s
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                if not _beat(instance, run_id):
                    return
            except Exception:  # the run matters more than one beat
                logger.warning("heartbeat for run %s failed", run_id, exc_info=True)
            stop.wait(interval_s)

    thread = threading.Thread(target=loop, name=f"mdp-heartbeat-{run_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


class _HeartbeatExecutor(Executor):
    """Dagster's executor, with the heartbeat around the whole plan (in the run worker)."""

    def __init__(self, inner: Executor) -> None:
        self._inner = inner

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[dg.DagsterEvent]:
        with run_heartbeat(plan_context.instance, plan_context.run_id):
            yield from self._inner.execute(plan_context, execution_plan)

    @property
    def retries(self) -> Any:
        return self._inner.retries

    @property
    def step_dependency_config(self) -> Any:
        return self._inner.step_dependency_config


_base = dg.multi_or_in_process_executor
heartbeat_executor = dg.ExecutorDefinition(
    name="multi_or_in_process_heartbeat_executor",
    config_schema=_base.config_schema,
    requirements=_base.get_requirements,
    executor_creation_fn=lambda init: _HeartbeatExecutor(_base.executor_creation_fn(init)),  # type: ignore[misc]
    description="Dagster's default executor (multiprocess or in-process, same config), plus a "
    f"heartbeat: the {HEARTBEAT_TAG} run tag, rewritten while the run executes.",
)


# --- the detector -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaleRun:
    run_id: str
    status: dg.DagsterRunStatus
    last_seen: float  # epoch seconds of the last heartbeat or event
    heartbeat: bool  # whether the run ever beat


def _heartbeat_ts(run: dg.DagsterRun) -> float | None:
    raw = run.tags.get(HEARTBEAT_TAG)
    try:
        return datetime.fromisoformat(raw).timestamp() if raw else None
    except ValueError:
        return None


def _last_seen(instance: dg.DagsterInstance, record: dg.RunRecord) -> float:
    """The last heartbeat or event; the run's creation only when it has neither."""
    run = record.dagster_run
    seen = []
    if (beat := _heartbeat_ts(run)) is not None:
        seen.append(beat)
    events = instance.get_records_for_run(run.run_id, ascending=False, limit=1).records
    if events:
        seen.append(events[0].event_log_entry.timestamp)
    return max(seen) if seen else record.create_timestamp.timestamp()


def find_stale_runs(
    instance: dg.DagsterInstance, stale_after_s: float, now: float | None = None
) -> list[StaleRun]:
    """Active runs (STARTING, STARTED, CANCELING) with no sign of life for ``stale_after_s``."""
    now = time.time() if now is None else now
    stale = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=ACTIVE_RUN_STATUSES)):
        last = _last_seen(instance, record)
        if now - last > stale_after_s:
            run = record.dagster_run
            stale.append(StaleRun(run.run_id, run.status, last, _heartbeat_ts(run) is not None))
    return stale


def stale_message(stale: StaleRun, stale_after_s: float, now: float) -> str:
    last = datetime.fromtimestamp(stale.last_seen, UTC).isoformat(timespec="seconds")
    verb = "canceled" if stale.status == dg.DagsterRunStatus.CANCELING else "failed"
    return (
        f"Marked {verb} by {SENSOR_NAME}: no heartbeat and no event for "
        f"{now - stale.last_seen:.0f}s (last sign of life {last}; MDP_RUN_STALE_AFTER_S="
        f"{stale_after_s:g}). Its run worker is gone (a killed `dagster dev`, a lost host), so "
        "the run's slot in the run queue is freed. Re-execute the run to finish its work."
    )


def fail_stale_runs(
    instance: dg.DagsterInstance, stale_after_s: float, now: float | None = None
) -> list[StaleRun]:
    """Fail (or, when CANCELING, cancel) every stale run; returns those it ended.

    Each run is judged again just before it is ended, so one that beat or finished meanwhile
    is left alone. Its concurrency slots are freed at once: its worker holds nothing anymore.
    """
    ended = []
    for candidate in find_stale_runs(instance, stale_after_s, now):
        record = instance.get_run_record_by_id(candidate.run_id)
        t = time.time() if now is None else now
        if record is None or record.dagster_run.status not in ACTIVE_RUN_STATUSES:
            continue
        if t - _last_seen(instance, record) <= stale_after_s:
            continue
        run = record.dagster_run
        message = stale_message(candidate, stale_after_s, t)
        if run.status == dg.DagsterRunStatus.CANCELING:
            instance.report_run_canceled(run, message)
        else:
            reason = RunFailureReason.UNEXPECTED_TERMINATION
            instance.report_run_failed(run, message, JobFailureData(None, reason))
        if instance.event_log_storage.supports_global_concurrency_limits:
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        ended.append(candidate)
    return ended


def sensor_interval_s(stale_after_s: float) -> int:
    """A quarter of the threshold (a dead run is ended within 1.25 x the threshold), 5-60 s."""
    return int(max(5, min(60, stale_after_s // 4)))


def build_run_health_sensor(stale_after_s: float) -> dg.SensorDefinition:
    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=sensor_interval_s(stale_after_s),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Fails runs whose worker died (no heartbeat and no event for "
            f"{stale_after_s:g}s, MDP_RUN_STALE_AFTER_S), so the run queue moves on."
        ),
    )
    def run_health_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        ended = fail_stale_runs(context.instance, stale_after_s)
        for stale in ended:
            context.log.warning(f"run {stale.run_id} ({stale.status.value}) was stale: ended it")
        if not ended:
            return dg.SkipReason("no stale run")
        return dg.SkipReason(f"ended {len(ended)} stale run(s): {[s.run_id for s in ended]}")

    return run_health_sensor


@dg.definitions
def run_health() -> dg.Definitions:
    """Every job of the code location gets the heartbeat executor (unless it names its own)."""
    from my_data_platform.settings import get_settings

    return dg.Definitions(
        sensors=[build_run_health_sensor(get_settings().run_stale_after_s)],
        executor=heartbeat_executor,
    )
