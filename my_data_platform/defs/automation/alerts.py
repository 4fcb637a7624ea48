"""Run-failure alerts: a structured record in the log, an object in the object store, an
optional webhook.

The objects (``alerts/run_failure/date=YYYY-MM-DD/<time>-<run id>-<nonce>.json``, one per alert)
are the durable record: the sensor may evaluate on any host (workers share nothing but servers),
so alerts live where every host can list them, never in one host's file. One object per alert
means concurrent writers never clash, and keys sort by time, so :func:`read_alerts` lists them
in order. The webhook (``AlertsResource.webhook_url``) is best effort: a slow or failing
endpoint never fails the sensor, and the URL is never logged.
"""

import datetime as dt
import json
import logging
import urllib.request
import uuid
from typing import Any

import dagster as dg

from my_data_platform.core.objectstore import ObjectNotFoundError, ObjectStore
from my_data_platform.defs.automation.resources import ALERTS_PREFIX, AlertsResource
from my_data_platform.defs.lake.resources import ObjectStoreResource

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


def alert_key(run_id: str, when: dt.datetime | None = None) -> str:
    """A new, unique key for an alert about ``run_id``: its day folder, then the time to the
    microsecond (keys sort by time), the run id and a random nonce (two hosts alerting on the
    same run in the same microsecond still write two objects)."""
    when = (when or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    safe_run = "".join(c for c in run_id if c.isalnum() or c == "-")[:64] or "unknown"
    return (
        f"{ALERTS_PREFIX}date={when:%Y-%m-%d}/"
        f"{when:%Y%m%dT%H%M%S.%f}Z-{safe_run}-{uuid.uuid4().hex[:12]}.json"
    )


def write_alert(alert: dict[str, Any], store: ObjectStore) -> str:
    """Store one alert as its own object (one PUT: atomic); returns its key."""
    key = alert_key(str(alert.get("run_id") or ""))
    store.put_bytes(key, json.dumps(alert, sort_keys=True, default=str).encode())
    return key


def read_alerts(store: ObjectStore, since: dt.date | None = None) -> list[dict[str, Any]]:
    """Every alert in ``store``, oldest first (from the day ``since`` on, when given), each
    with its ``key``. An object that is not a JSON alert is listed as ``kind:
    "unreadable_alert"`` with the reason, not skipped: a damaged record stays visible."""
    start = f"{ALERTS_PREFIX}date={since:%Y-%m-%d}/" if since else None
    out: list[dict[str, Any]] = []
    for info in store.list(ALERTS_PREFIX):
        if start is not None and info.key < start:
            continue
        try:
            alert = json.loads(store.get_bytes(info.key))
        except ObjectNotFoundError:
            continue  # deleted since listing (retention): it is no longer an alert
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            out.append({"kind": "unreadable_alert", "key": info.key, "reason": str(exc)})
            continue
        if not isinstance(alert, dict):
            reason = f"a JSON {type(alert).__name__}, not an object"
            out.append({"kind": "unreadable_alert", "key": info.key, "reason": reason})
            continue
        out.append({**alert, "key": info.key})
    return out


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
    except Exception as exc:  # any network/HTTP error: the alert is already stored
        logger.warning(
            "alert webhook failed (%s); alert kept in the object store", type(exc).__name__
        )
        return False


@dg.run_failure_sensor(
    name="run_failure_alerts",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Writes a structured alert for every failed run (log, object store, webhook).",
)
def run_failure_alerts(
    context: dg.RunFailureSensorContext,
    alerts: AlertsResource,
    object_store: ObjectStoreResource,
) -> None:
    alert = build_alert(context)
    key = write_alert(alert, object_store.get_store())
    context.log.info("alert stored as %s", key)
    context.log.error("run failure alert: %s", json.dumps(alert, default=str))
    url = (alerts.webhook_url or "").strip()
    if url:
        ok = post_webhook(alert, url)
        context.log.info("alert webhook %s", "delivered" if ok else "not delivered")
