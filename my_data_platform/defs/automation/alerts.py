"""Run-failure alerts: a structured record in the log, a JSON line on disk, an optional webhook.

The JSONL file (``$MDP_DATA_DIR/alerts/alerts.jsonl``) is the durable record a person or a
pager integration can tail; the webhook (``AlertsResource.webhook_url``) is best effort: a slow
or failing endpoint never fails the sensor, and the URL is never logged.
"""

import datetime as dt
import json
import logging
import urllib.request
from pathlib import Path
from typing import Any

import dagster as dg

from my_data_platform.defs.automation.resources import AlertsResource

WEBHOOK_TIMEOUT_S = 5.0

logger = logging.getLogger(__name__)


def build_alert(context: dg.RunFailureSensorContext) -> dict[str, Any]:
    run = context.dagster_run
    steps = []
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        error = data.error if data else None
        while error is not None and error.cause is not None:  # the user's exception, not
            error = error.cause  # Dagster's "error occurred while executing" wrapper
        steps.append(
            {
                "step": event.step_key,
                "error": error.message.strip() if error else event.message,
                "error_class": error.cls_name if error else None,
            }
        )
    return {
        "kind": "run_failure",
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "run_id": run.run_id,
        "job": run.job_name,
        "partition": run.tags.get("dagster/partition"),
        "assets": sorted(k.to_user_string() for k in (run.asset_selection or [])),
        "failed_steps": steps,
        "error": context.failure_event.message,
        "source": run.tags.get("mdp/source") or run.tags.get("dagster/sensor_name"),
    }


def append_alert(alert: dict[str, Any], path: Path) -> None:
    """One line per alert; a single ``write`` on an O_APPEND file keeps lines whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(alert, sort_keys=True, default=str) + "\n")


def post_webhook(alert: dict[str, Any], url: str, timeout: float = WEBHOOK_TIMEOUT_S) -> bool:
    """POST the alert as JSON; returns whether it was accepted, never raises."""
    text = f"Dagster run {alert['run_id']} of {alert['job']} failed: {alert['error']}"
    body = json.dumps({"text": text, "alert": alert}, default=str).encode()
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except Exception as exc:  # any network/HTTP error: the alert is already on disk
        logger.warning(
            "alert webhook failed (%s); alert kept in the JSONL file", type(exc).__name__
        )
        return False


@dg.run_failure_sensor(
    name="run_failure_alerts",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Writes a structured alert for every failed run (log, JSONL file, webhook).",
)
def run_failure_alerts(context: dg.RunFailureSensorContext, alerts: AlertsResource) -> None:
    alert = build_alert(context)
    append_alert(alert, alerts.path())
    context.log.error("run failure alert: %s", json.dumps(alert, default=str))
    url = (alerts.webhook_url or "").strip()
    if url:
        ok = post_webhook(alert, url)
        context.log.info("alert webhook %s", "delivered" if ok else "not delivered")
