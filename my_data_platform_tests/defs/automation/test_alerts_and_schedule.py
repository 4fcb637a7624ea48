"""The nightly schedule's skip logic and the run-failure alert (object store + webhook)."""

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dagster as dg
import pytest

from my_data_platform.defs.automation import alerts
from my_data_platform.defs.automation.resources import alerts_resource_from_settings
from my_data_platform.defs.automation.schedules import nightly_dataset_job, nightly_decision
from my_data_platform.defs.lake.resources import object_store_resource_from_settings
from my_data_platform.settings import get_settings, reset_settings

TRAINING = dg.AssetKey(["features", "training_examples"])
DATASET = dg.AssetKey(["datasets", "popularity"])


def materialize(instance: dg.DagsterInstance, key: dg.AssetKey) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(key))


def test_nightly_schedule_skips_until_training_data_changes() -> None:
    with dg.instance_for_test() as instance:
        first = nightly_decision(instance, nightly_dataset_job.name)
        assert isinstance(first, dg.SkipReason)
        assert "never materialized" in (first.skip_message or "")

        materialize(instance, TRAINING)
        build = nightly_decision(instance, nightly_dataset_job.name)
        assert isinstance(build, dg.RunRequest)
        assert "features/training_examples@" in build.tags["mdp/upstream_changed"]

        materialize(instance, DATASET)
        skip = nightly_decision(instance, nightly_dataset_job.name)
        assert isinstance(skip, dg.SkipReason)
        assert "nothing upstream" in (skip.skip_message or "")

        materialize(instance, TRAINING)
        again = nightly_decision(instance, nightly_dataset_job.name)
        assert isinstance(again, dg.RunRequest)
        assert again.run_key != build.run_key  # a new upstream state, a new build


def test_schedule_through_dagster_uses_the_env_timezone(
    data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from my_data_platform.runner import load_definitions

    monkeypatch.setenv("MDP_SCHEDULE_TIMEZONE", "Europe/Paris")
    defs = load_definitions()
    schedule = defs.resolve_schedule_def("nightly_dataset_schedule")
    assert schedule.execution_timezone == "Europe/Paris"
    assert schedule.cron_schedule == "0 2 * * *"
    job = defs.resolve_job_def(schedule.job_name)
    assert DATASET in job.asset_layer.selected_asset_keys
    # the nightly job builds the dataset and trains the model from it
    assert dg.AssetKey(["training", "popularity_model"]) in job.asset_layer.selected_asset_keys
    # The context is entered and exited: it opens its own instance from the ref and makes it
    # the current one; left open, that would outlive this test as a dead reference.
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=dt.datetime(2024, 3, 2, 2, tzinfo=dt.UTC),
        ) as ctx,
    ):
        data = schedule.evaluate_tick(ctx)
        assert data.run_requests == [] and data.skip_message
        materialize(instance, TRAINING)
        (req,) = schedule.evaluate_tick(ctx).run_requests or []
        assert req.tags["mdp/upstream_changed"].startswith("features/training_examples@")

    monkeypatch.setenv("MDP_SCHEDULE_TIMEZONE", "Mars/Olympus")
    reset_settings()
    with pytest.raises(ValueError, match="MDP_SCHEDULE_TIMEZONE"):
        get_settings()


@dg.op
def explode() -> None:
    raise RuntimeError("disk on fire")


@dg.job
def doomed() -> None:
    explode()


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def _failure_context(instance: dg.DagsterInstance) -> tuple[str, dg.RunFailureSensorContext]:
    result = doomed.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    ctx = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=run,
        resources={
            "alerts": alerts_resource_from_settings(),
            "object_store": object_store_resource_from_settings(),
        },
    ).for_run_failure()
    return result.run_id, ctx


def _stored_alerts() -> list[dict]:
    from my_data_platform.defs.lake.resources import object_store_from_settings

    return alerts.read_alerts(object_store_from_settings())


def test_failure_sensor_stores_an_alert_and_posts_the_webhook(
    data_env: Path, webhook: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDP_ALERT_WEBHOOK_URL", webhook)
    with dg.instance_for_test() as instance:
        run_id, ctx = _failure_context(instance)
        alerts.run_failure_alerts(ctx)
    (alert,) = _stored_alerts()
    assert alert["key"].startswith("alerts/run_failure/date=")
    assert alert["run_id"] == run_id
    assert alert["job"] == "doomed"
    assert alert["kind"] == "run_failure"
    (step,) = alert["failed_steps"]
    assert step["step"] == "explode"
    assert "disk on fire" in step["error"]
    assert step["error_class"] == "RuntimeError"
    assert dt.datetime.fromisoformat(alert["time"]).tzinfo is not None
    (posted,) = _Hook.received
    assert posted["alert"]["run_id"] == run_id
    assert run_id in posted["text"]


def test_failure_sensor_survives_an_unreachable_webhook(
    data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from my_data_platform_tests.conftest import free_port

    monkeypatch.setenv("MDP_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/nobody")
    with dg.instance_for_test() as instance:
        run_id, ctx = _failure_context(instance)
        alerts.run_failure_alerts(ctx)  # must not raise
        alerts.run_failure_alerts(ctx)
    stored = _stored_alerts()
    assert [a["run_id"] for a in stored] == [run_id, run_id]
    assert len({a["key"] for a in stored}) == 2  # one object per alert, never overwritten
    assert not (data_env / "alerts").exists()  # nothing on this host's disk
