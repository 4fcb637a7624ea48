"""Sensors on the landing prefixes: landing files become runs of the lake assets.

The lake's eager downstream (warehouse, features) follows through ``AutomationCondition``
(the policy, and the sensor that evaluates it, are in ``definitions.py``).

A tick lists only new keys and the most recent days, with a full re-scan now and then; a
day's run key is the digest of its files. docs/configuration.md explains the trade-offs.
"""

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from my_data_platform.core.images import IMAGE_SUFFIXES
from my_data_platform.core.objectstore import ObjectInfo, ObjectStore
from my_data_platform.defs.crashpoints import crash_point
from my_data_platform.defs.lake.objects import (
    EVENTS_KEY,
    EVENTS_QUARANTINE_KEY,
    PHOTOS_KEY,
    PHOTOS_QUARANTINE_KEY,
    event_day,
    landing_digest,
    landing_events_prefix,
)
from my_data_platform.defs.lake.resources import ObjectStoreResource
from my_data_platform.defs.partitions import event_days

EVENTS_PREFIX = "landing/events/"
PHOTOS_PREFIX = "landing/photos/"
CURSOR_VERSION = 1
DEFAULT_RECENT_DAYS = 3
DEFAULT_FULL_RESCAN_SECONDS = 6 * 3600


# --- pure planning (no Dagster) -------------------------------------------------------------


digest = landing_digest
"""The fingerprint of a set of landed files (see ``lake.objects.landing_digest``)."""


@dataclass
class EventsPlan:
    changed: dict[str, str]  # day -> new digest (a run per day)
    cursor: dict[str, Any]
    listed: int  # objects listed this tick (the cost)
    full_scan: bool
    removed: list[str] = field(default_factory=list)


def plan_landing_events(
    store: ObjectStore,
    cursor: dict[str, Any] | None,
    *,
    now: float,
    recent_days: int = DEFAULT_RECENT_DAYS,
    full_rescan_seconds: float = DEFAULT_FULL_RESCAN_SECONDS,
) -> EventsPlan:
    """Which landing days changed since ``cursor``, and the next cursor."""
    cursor = cursor or {}
    known: dict[str, str] = dict(cursor.get("days", {}))
    last_key: str | None = cursor.get("last_key")
    full = last_key is None or now - float(cursor.get("full_scan_at", 0)) >= full_rescan_seconds
    listed = 0
    current: dict[str, str] = {}

    def group(objs: Iterable[ObjectInfo]) -> tuple[dict[str, list[ObjectInfo]], str | None]:
        nonlocal listed
        by_day: dict[str, list[ObjectInfo]] = {}
        top = None
        for o in objs:
            listed += 1
            top = o.key
            day = event_day(o.key)
            if day is not None:
                by_day.setdefault(day, []).append(o)
        return by_day, top

    if full:
        by_day, top = group(store.list(EVENTS_PREFIX))
        current = {day: digest(objs) for day, objs in by_day.items()}
        removed = sorted(set(known) - set(current))
        new_last = top
    else:
        by_day, top = group(store.list(EVENTS_PREFIX, start_after=last_key))
        # A day folder entirely after last_key was listed whole by the resumed listing.
        for day, objs in by_day.items():
            if last_key is None or last_key < landing_events_prefix(day):
                current[day] = digest(objs)
        window = sorted(set(known) | set(by_day), reverse=True)[: max(recent_days, 0)]
        for day in sorted((set(window) | set(by_day)) - set(current)):
            objs_day, _ = group(store.list(landing_events_prefix(day)))
            current[day] = digest(objs_day.get(day, []))
        removed = sorted(d for d, dg_ in current.items() if dg_ == digest([]))
        new_last = max(filter(None, [last_key, top]), default=None)

    changed = {d: g for d, g in current.items() if g != digest([]) and known.get(d) != g}
    days = {**known, **current}
    for d in removed:
        days.pop(d, None)
    next_cursor = {
        "v": CURSOR_VERSION,
        "last_key": new_last,
        "days": dict(sorted(days.items())),
        "full_scan_at": now if full else float(cursor.get("full_scan_at", 0)),
    }
    return EventsPlan(changed, next_cursor, listed, full, removed)


@dataclass
class PhotosPlan:
    changed: bool
    state: str  # digest of the whole landed image set: the run key
    cursor: dict[str, Any]
    listed: int
    full_scan: bool


def plan_landing_photos(
    store: ObjectStore,
    cursor: dict[str, Any] | None,
    *,
    now: float,
    full_rescan_seconds: float = DEFAULT_FULL_RESCAN_SECONDS,
) -> PhotosPlan:
    """Whether the set of landed images changed: new keys every tick, rewrites at full scans."""
    cursor = cursor or {}
    last_key: str | None = cursor.get("last_key")
    old_state: str = cursor.get("state", digest([]))
    full = last_key is None or now - float(cursor.get("full_scan_at", 0)) >= full_rescan_seconds
    objs = list(store.list(PHOTOS_PREFIX, start_after=None if full else last_key))
    images = [o for o in objs if o.key.lower().endswith(IMAGE_SUFFIXES)]
    # incremental: XOR the new keys into the running fingerprint of the whole set
    state = digest(images) if full else f"{int(old_state, 16) ^ int(digest(images), 16):016x}"
    top = objs[-1].key if objs else None
    next_cursor = {
        "v": CURSOR_VERSION,
        "last_key": max(filter(None, [last_key, top]), default=None),
        "state": state,
        "full_scan_at": now if full else float(cursor.get("full_scan_at", 0)),
    }
    changed = state != old_state and state != digest([])
    return PhotosPlan(changed, state, next_cursor, len(objs), full)


def _load_cursor(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    data = json.loads(raw)
    return data if data.get("v") == CURSOR_VERSION else None


def already_loaded(instance: dg.DagsterInstance, days: Mapping[str, str]) -> set[str]:
    """Which of ``days`` (day -> landing digest) the lake already holds from these same files.

    Used on a first tick (no cursor), when every landed day looks new: a day whose lake/events
    partition is materialized (by ``mdp run``, the UI, a backfill or an earlier sensor) is
    skipped, unless its latest materialization recorded a different landing digest, i.e. files
    landed or changed since it was loaded. Materializations that predate the digest count as
    loaded. Two queries, whatever the number of days.
    """
    if not days:
        return set()
    latest = instance.get_latest_storage_id_by_partition(
        EVENTS_KEY, dg.DagsterEventType.ASSET_MATERIALIZATION, partitions=set(days)
    )
    if not latest:
        return set()
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=EVENTS_KEY, storage_ids=list(latest.values())),
        limit=len(latest),
    ).records
    loaded = set()
    for record in records:
        mat = record.asset_materialization
        if mat is None or mat.partition not in days:
            continue
        recorded = mat.metadata.get("landing_digest")
        if recorded is None or getattr(recorded, "value", recorded) == days[mat.partition]:
            loaded.add(mat.partition)
    return loaded


def photos_already_loaded(instance: dg.DagsterInstance, state: str) -> bool:
    """Whether lake/photos was last materialized from exactly this set of landed images (or
    before it recorded which), so a first tick need not run it again."""
    event = instance.get_latest_materialization_event(PHOTOS_KEY)
    mat = event.asset_materialization if event else None
    if mat is None:
        return False
    recorded = mat.metadata.get("landing_digest")
    return recorded is None or getattr(recorded, "value", recorded) == state


# --- Dagster wiring -------------------------------------------------------------------------


def build_landing_events_sensor(
    name: str = "landing_events_sensor",
    *,
    recent_days: int = DEFAULT_RECENT_DAYS,
    full_rescan_seconds: float = DEFAULT_FULL_RESCAN_SECONDS,
    minimum_interval_seconds: int = 30,
    clock: Callable[[], float] = time.time,
) -> dg.SensorDefinition:
    @dg.sensor(
        name=name,
        target=[EVENTS_KEY, EVENTS_QUARANTINE_KEY],
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "New, rewritten or late event files under landing/events/date=YYYY-MM-DD/ start a "
            "run of that day's lake/events partition (adding the partition when new)."
        ),
    )
    def landing_events_sensor(
        context: dg.SensorEvaluationContext, object_store: ObjectStoreResource
    ) -> dg.SensorResult:
        # A tick has no side effect of its own: the daemon stores the cursor and submits the
        # runs it returns, so a tick that dies anywhere leaves the previous cursor to replan from.
        crash_point("sensor_tick.start")
        cursor = _load_cursor(context.cursor)
        plan = plan_landing_events(
            object_store.get_store(),
            cursor,
            now=clock(),
            recent_days=recent_days,
            full_rescan_seconds=full_rescan_seconds,
        )
        changed = plan.changed
        loaded: list[str] = []
        if cursor is None:  # first tick: days loaded before the sensor ran are not new
            loaded = sorted(already_loaded(context.instance, changed))
            changed = {d: g for d, g in changed.items() if d not in loaded}
        existing = set(context.instance.get_dynamic_partitions(event_days.name or ""))
        new_days = sorted(d for d in plan.changed if d not in existing)
        crash_point("sensor_tick.middle")
        context.log.info(
            "listed %d objects (%s); %d changed days, %d already loaded, %d new partitions",
            plan.listed,
            "full scan" if plan.full_scan else "resumed",
            len(changed),
            len(loaded),
            len(new_days),
        )
        result = dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"{day}:{dig}",
                    partition_key=day,
                    asset_selection=[EVENTS_KEY, EVENTS_QUARANTINE_KEY],
                    tags={"mdp/source": name, "mdp/landing_digest": dig},
                )
                for day, dig in sorted(changed.items())
            ],
            dynamic_partitions_requests=[event_days.build_add_request(new_days)]
            if new_days
            else [],
            cursor=json.dumps(plan.cursor, separators=(",", ":")),
        )
        crash_point("sensor_tick.end")
        return result

    return landing_events_sensor


def build_landing_photos_sensor(
    name: str = "landing_photos_sensor",
    *,
    full_rescan_seconds: float = DEFAULT_FULL_RESCAN_SECONDS,
    minimum_interval_seconds: int = 30,
    clock: Callable[[], float] = time.time,
) -> dg.SensorDefinition:
    @dg.sensor(
        name=name,
        target=[PHOTOS_KEY, PHOTOS_QUARANTINE_KEY],
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="New images under landing/photos/ start a run of lake/photos.",
    )
    def landing_photos_sensor(
        context: dg.SensorEvaluationContext, object_store: ObjectStoreResource
    ) -> dg.SensorResult:
        cursor = _load_cursor(context.cursor)
        plan = plan_landing_photos(
            object_store.get_store(),
            cursor,
            now=clock(),
            full_rescan_seconds=full_rescan_seconds,
        )
        runs: Sequence[dg.RunRequest] = []
        # first tick: images already in the manifest (e.g. from `mdp run`) are not new
        loaded = cursor is None and photos_already_loaded(context.instance, plan.state)
        if plan.changed and not loaded:
            runs = [
                dg.RunRequest(
                    run_key=f"photos:{plan.state}",
                    asset_selection=[PHOTOS_KEY, PHOTOS_QUARANTINE_KEY],
                    tags={"mdp/source": name, "mdp/landing_digest": plan.state},
                )
            ]
        context.log.info("listed %d objects; %d runs", plan.listed, len(runs))
        return dg.SensorResult(
            run_requests=list(runs), cursor=json.dumps(plan.cursor, separators=(",", ":"))
        )

    return landing_photos_sensor


landing_events_sensor = build_landing_events_sensor()
landing_photos_sensor = build_landing_photos_sensor()
