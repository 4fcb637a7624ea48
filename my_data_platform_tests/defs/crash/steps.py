"""The steps the crash tests kill, runnable in a child process (``python -m`` this module) or in
the test's own process, against the instance in ``$DAGSTER_HOME`` and the data in
``$MDP_DATA_DIR``; and the checks they share."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import zlib
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from my_data_platform.core.fsutil import TEMP_PREFIX
from my_data_platform.core.objectstore import ObjectStore
from my_data_platform.defs.lake.objects import (
    PublishedDay,
    event_day,
    landing_digest,
    landing_events_prefix,
    published_day,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
STEPS = {
    "lake": [["lake", "events"], ["lake", "events_quarantine"]],
    "warehouse": [["warehouse", "events"], ["warehouse", "events_quarantine"]],
    "warehouse_events": [["warehouse", "events"]],
    "dataset": [["datasets", "popularity"]],
    "photos": [["warehouse", "photos"]],
}
CHILD_TIMEOUT_S = 300


def run_step(
    defs: dg.Definitions, instance: dg.DagsterInstance, step: str, days: list[str]
) -> dg.ExecuteInProcessResult:
    """One run of ``step`` over ``days`` (a single-run backfill's range when several; none for
    an unpartitioned step)."""
    tags = {}
    if len(days) > 1:
        tags = {ASSET_PARTITION_RANGE_START_TAG: days[0], ASSET_PARTITION_RANGE_END_TAG: days[-1]}
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        partition_key=days[0] if len(days) == 1 else None,
        asset_selection=[dg.AssetKey(k) for k in STEPS[step]],
        tags=tags,
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )


def tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    """One evaluation of the landing events sensor, as the daemon makes it."""
    from my_data_platform.defs.automation.sensors import landing_events_sensor
    from my_data_platform.defs.lake.resources import object_store_resource_from_settings

    with dg.build_sensor_context(
        cursor=cursor,
        instance=instance,
        resources={"object_store": object_store_resource_from_settings()},
    ) as ctx:
        result = landing_events_sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    return result


def crash(step: str, args: list[str], point: str) -> int:
    """Run ``step`` in a child process with ``MDP_CRASH_AT=point``; its return code."""
    env = {**os.environ, "MDP_CRASH_AT": point, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "my_data_platform_tests.defs.crash.steps", step, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, (
        f"{step} {args} with MDP_CRASH_AT={point} exited {proc.returncode}, not by SIGKILL:\n"
        f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.returncode


def leftover_temp_files(data: Path) -> list[str]:
    return sorted(str(p.relative_to(data)) for p in data.rglob(f"{TEMP_PREFIX}*"))


# --- the lake's own checks ----------------------------------------------------------------------


def landed_lines(store: ObjectStore, day: str) -> int:
    """Non-blank landed lines of a day, counted without the pipeline (plain zlib, every gzip
    member, up to where a truncated one breaks; a plain file as it is)."""
    total = 0
    for obj in store.list(landing_events_prefix(day)):
        if event_day(obj.key) != day:
            continue
        data = store.get_bytes(obj.key)
        text = b""
        if data[:2] == b"\x1f\x8b":
            try:
                while data:
                    d = zlib.decompressobj(wbits=31)
                    text += d.decompress(data)
                    data = d.unused_data
            except zlib.error:
                pass
        else:
            text = data
        total += sum(1 for line in text.split(b"\n") if line.strip())
    return total


def assert_day_complete(store: ObjectStore, day: str) -> PublishedDay:
    """The day's publish is whole: its files hold what its pointer says, every landed line is
    loaded or quarantined, no event id twice, and it is of the files landed now."""
    pub = published_day(store, day)
    assert pub is not None and pub.generation is not None, day
    events = pq.read_table(store.uri(pub.events_key), columns=["event_id"])
    quarantine = pq.read_table(store.uri(pub.quarantine_key), columns=["line_no"])
    lines_quarantined = quarantine.num_rows - quarantine["line_no"].null_count
    assert events.num_rows == pub.counts["loaded"], day
    assert pc.count_distinct(events["event_id"]).as_py() == events.num_rows, day
    assert lines_quarantined == pub.counts["quarantined"], day
    assert (
        landed_lines(store, day)
        == pub.counts["landed_lines"]
        == (events.num_rows + lines_quarantined)
    ), day
    current = [o for o in store.list(landing_events_prefix(day)) if event_day(o.key) == day]
    assert pub.landing_digest == landing_digest(current), day
    return pub


def land_more(store: ObjectStore, day: str, tag: str) -> None:
    """A file landed late for ``day``: its first file's events again, under new event ids."""
    first = next(o for o in store.list(landing_events_prefix(day)) if event_day(o.key) == day)
    out = []
    for raw in gzip.decompress(store.get_bytes(first.key)).splitlines():
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("event_id"), str):
            event["event_id"] = f"{tag}-{event['event_id']}"
            out.append(json.dumps(event))
    data = gzip.compress(("\n".join(out) + "\n").encode())
    store.put_bytes(f"{landing_events_prefix(day)}late-{tag}.jsonl.gz", data)


def counts(rows: list[tuple]) -> dict[str, tuple[int, int]]:
    """``landing_date, count, count distinct`` rows as day -> (count, distinct)."""
    return {str(d): (int(n), int(u)) for d, n, u in rows}


def _main(argv: list[str]) -> int:
    from my_data_platform.runner import get_instance, load_definitions

    step, *args = argv
    instance = get_instance()
    if step == "sensor":
        (cursor_file,) = args
        raw = Path(cursor_file).read_text() if Path(cursor_file).exists() else None
        result = tick(instance, raw or None)
        print(json.dumps({"cursor": result.cursor, "runs": len(result.run_requests or [])}))
        return 0
    result = run_step(load_definitions(), instance, step, args)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))


def run_maintenance(defs: dg.Definitions, instance: dg.DagsterInstance) -> dict:
    """The maintenance job with no grace period (nothing is writing now): its report."""
    result = defs.get_job_def("maintenance_job").execute_in_process(
        instance=instance, run_config={"ops": {"maintain": {"config": {"grace_s": 0}}}}
    )
    assert result.success
    [out] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    return {k: v.value for k, v in out.step_output_data.metadata.items()}
