"""Landing sensors: run requests, run keys, partitions and cursors over a real local store."""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from my_data_platform.core.objectstore import LocalObjectStore, ObjectInfo, ObjectStore
from my_data_platform.defs.automation.sensors import (
    build_landing_events_sensor,
    build_landing_photos_sensor,
    digest,
    event_day,
)
from my_data_platform.defs.lake.objects import (
    EVENTS_KEY,
    EVENTS_QUARANTINE_KEY,
    PHOTOS_KEY,
    PHOTOS_QUARANTINE_KEY,
)
from my_data_platform.defs.lake.resources import LocalObjectStoreResource

LISTED: list[str] = []


class CountingStore(LocalObjectStore):
    """A real local store that records every key it lists (the cost of a tick)."""

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        for obj in super().list(prefix, start_after):
            LISTED.append(obj.key)
            yield obj


class CountingStoreResource(LocalObjectStoreResource):
    def get_store(self) -> ObjectStore:
        return CountingStore(self.root)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lake(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "lake")


def land(store: ObjectStore, day: str, name: str, body: bytes = b"x") -> ObjectInfo:
    return store.put_bytes(f"landing/events/date={day}/{name}.jsonl.gz", body)


class Ticker:
    """Evaluates a sensor tick after tick like the daemon does: cursor and instance carried."""

    def __init__(self, sensor: dg.SensorDefinition, store: LocalObjectStore) -> None:
        self.sensor = sensor
        self.instance = dg.DagsterInstance.ephemeral()
        self.resources = {"object_store": CountingStoreResource(root=str(store.root))}
        self.cursor: str | None = None

    def tick(self) -> dg.SensorResult:
        LISTED.clear()
        ctx = dg.build_sensor_context(
            cursor=self.cursor, instance=self.instance, resources=self.resources
        )
        result = self.sensor(ctx)
        assert isinstance(result, dg.SensorResult)
        for req in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        self.cursor = result.cursor
        return result


def days_of(result: dg.SensorResult) -> list[str]:
    return [r.partition_key for r in result.run_requests or []]


def test_event_day_parses_only_event_files() -> None:
    assert event_day("landing/events/date=2024-03-01/part-0.jsonl.gz") == "2024-03-01"
    assert event_day("landing/events/date=2024-03-01/part-0.jsonl") == "2024-03-01"
    assert event_day("landing/events/date=2024-03-01/_SUCCESS") is None
    assert event_day("landing/events/date=2024-13-01/a.jsonl.gz") is None
    assert event_day("landing/events/date=2024-03-01/sub/a.jsonl.gz") is None
    assert event_day("landing/events/a.jsonl.gz") is None


def test_events_sensor_new_days_rewrites_and_late_files(lake: LocalObjectStore) -> None:
    clock = Clock()
    t = Ticker(build_landing_events_sensor(recent_days=2, clock=clock), lake)
    a1 = land(lake, "2024-03-01", "part-0")
    a2 = land(lake, "2024-03-01", "part-1", b"yy")
    b1 = land(lake, "2024-03-02", "part-0")
    lake.put_bytes("landing/events/date=2024-03-02/_SUCCESS", b"")  # not an event file

    first = t.tick()
    reqs = first.run_requests or []
    assert days_of(first) == ["2024-03-01", "2024-03-02"]
    assert [r.run_key for r in reqs] == [
        f"2024-03-01:{digest([a1, a2])}",
        f"2024-03-02:{digest([b1])}",
    ]
    for r in reqs:
        assert set(r.asset_selection or []) == {EVENTS_KEY, EVENTS_QUARANTINE_KEY}
    assert [list(r.partition_keys) for r in first.dynamic_partitions_requests or []] == [
        ["2024-03-01", "2024-03-02"]
    ]
    cursor = json.loads(first.cursor or "")
    assert cursor["last_key"] == "landing/events/date=2024-03-02/part-0.jsonl.gz"
    assert cursor["days"] == {"2024-03-01": digest([a1, a2]), "2024-03-02": digest([b1])}
    assert set(t.instance.get_dynamic_partitions("event_days")) == {"2024-03-01", "2024-03-02"}

    # nothing new: no runs, no partitions, same state
    again = t.tick()
    assert again.run_requests == [] and not again.dynamic_partitions_requests
    assert json.loads(again.cursor or "")["days"] == cursor["days"]

    # a new day: only that day, and its partition is added
    c1 = land(lake, "2024-03-03", "part-0")
    new_day = t.tick()
    assert days_of(new_day) == ["2024-03-03"]
    assert (new_day.run_requests or [])[0].run_key == f"2024-03-03:{digest([c1])}"
    assert [list(r.partition_keys) for r in new_day.dynamic_partitions_requests or []] == [
        ["2024-03-03"]
    ]

    # a rewritten file (new etag) in a recent day: that day again, under a new run key
    b1_new = land(lake, "2024-03-02", "part-0", b"rewritten")
    assert b1_new.etag != b1.etag
    rewritten = t.tick()
    assert days_of(rewritten) == ["2024-03-02"]
    assert (rewritten.run_requests or [])[0].run_key == f"2024-03-02:{digest([b1_new])}"
    assert not rewritten.dynamic_partitions_requests  # the partition already exists

    # a late file sorting before the cursor, into a day in the window: that day again
    late = land(lake, "2024-03-02", "a-late")
    late_tick = t.tick()
    assert days_of(late_tick) == ["2024-03-02"]
    assert (late_tick.run_requests or [])[0].run_key == f"2024-03-02:{digest([late, b1_new])}"
    assert t.tick().run_requests == []


def test_events_sensor_first_tick_skips_days_already_loaded(lake: LocalObjectStore) -> None:
    """With no cursor (new instance, sensor just enabled), days the lake already holds from the
    same files are not run again; days loaded from other files, and new days, are."""
    t = Ticker(build_landing_events_sensor(recent_days=3), lake)
    same = land(lake, "2024-03-01", "part-0")  # loaded (e.g. by `mdp run`) from these files
    land(lake, "2024-03-02", "part-0")  # loaded before digests were recorded
    before = land(lake, "2024-03-03", "part-0")  # loaded, then another file landed
    after = land(lake, "2024-03-03", "part-1")
    new = land(lake, "2024-03-04", "part-0")  # never loaded
    t.instance.add_dynamic_partitions("event_days", ["2024-03-01", "2024-03-02", "2024-03-03"])
    for day, recorded in [
        ("2024-03-01", digest([same])),
        ("2024-03-02", None),
        ("2024-03-03", digest([before])),
    ]:
        t.instance.report_runless_asset_event(
            dg.AssetMaterialization(
                EVENTS_KEY,
                partition=day,
                metadata={"landing_digest": recorded} if recorded else {},
            )
        )

    first = t.tick()
    assert days_of(first) == ["2024-03-03", "2024-03-04"]
    assert [r.run_key for r in first.run_requests or []] == [
        f"2024-03-03:{digest([before, after])}",
        f"2024-03-04:{digest([new])}",
    ]
    assert [list(r.partition_keys) for r in first.dynamic_partitions_requests or []] == [
        ["2024-03-04"]
    ]
    # the cursor knows every day, skipped ones included: later ticks are as before
    assert sorted(json.loads(first.cursor or "")["days"]) == [
        "2024-03-01",
        "2024-03-02",
        "2024-03-03",
        "2024-03-04",
    ]
    assert t.tick().run_requests == []
    rewritten = land(lake, "2024-03-02", "part-0", b"rewritten")
    (req,) = t.tick().run_requests or []
    assert (req.partition_key, req.run_key) == ("2024-03-02", f"2024-03-02:{digest([rewritten])}")


def test_events_sensor_first_tick_on_an_empty_instance_requests_every_day(
    lake: LocalObjectStore,
) -> None:
    land(lake, "2024-03-01", "part-0")
    land(lake, "2024-03-02", "part-0")
    t = Ticker(build_landing_events_sensor(), lake)
    assert days_of(t.tick()) == ["2024-03-01", "2024-03-02"]


def test_events_sensor_old_days_wait_for_the_full_rescan(lake: LocalObjectStore) -> None:
    clock = Clock()
    sensor = build_landing_events_sensor(recent_days=1, full_rescan_seconds=3600, clock=clock)
    t = Ticker(sensor, lake)
    old = land(lake, "2024-03-01", "part-0")
    land(lake, "2024-03-05", "part-0")
    assert days_of(t.tick()) == ["2024-03-01", "2024-03-05"]

    late = land(lake, "2024-03-01", "part-1-late")  # outside the 1-day window
    backfilled = land(lake, "2024-03-02", "part-0")  # a whole day landing out of order
    clock.now += 60
    assert t.tick().run_requests == []  # documented trade-off: not seen between full scans
    clock.now += 3600
    full = t.tick()
    assert days_of(full) == ["2024-03-01", "2024-03-02"]
    keys = {r.partition_key: r.run_key for r in full.run_requests or []}
    assert keys["2024-03-01"] == f"2024-03-01:{digest([old, late])}"
    assert keys["2024-03-02"] == f"2024-03-02:{digest([backfilled])}"
    assert [list(r.partition_keys) for r in full.dynamic_partitions_requests or []] == [
        ["2024-03-02"]
    ]


def test_events_sensor_same_files_give_the_same_run_key_after_cursor_loss(
    lake: LocalObjectStore,
) -> None:
    """Run keys depend only on (key, etag): a reset cursor cannot reprocess a file."""
    land(lake, "2024-03-01", "part-0")
    t = Ticker(build_landing_events_sensor(), lake)
    first = [r.run_key for r in t.tick().run_requests or []]
    t.cursor = None
    assert [r.run_key for r in t.tick().run_requests or []] == first


@pytest.mark.slow  # lands 50,000 files
def test_events_sensor_resumes_from_its_cursor_on_a_large_prefix(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    days = [f"2023-{m:02d}-{d:02d}" for m in range(1, 5) for d in range(1, 26)]  # 100 days
    for day in days:
        folder = root / "landing" / "events" / f"date={day}"
        folder.mkdir(parents=True)
        for i in range(500):
            (folder / f"part-{i:04d}.jsonl.gz").write_bytes(b"")
    store = LocalObjectStore(root)
    t = Ticker(build_landing_events_sensor(recent_days=2), store)
    first = t.tick()
    assert len(first.run_requests or []) == 100
    assert len(LISTED) == 50_000

    land(store, "2023-04-26", "part-0000")
    start = time.perf_counter()
    resumed = t.tick()
    seconds = time.perf_counter() - start
    assert days_of(resumed) == ["2023-04-26"]
    # the new file (its day folder is wholly after the cursor, so it is not listed again),
    # plus the re-listed window's other day: 501 of 50,001 objects
    assert len(LISTED) == 1 + 500
    assert set(LISTED) <= {
        "landing/events/date=2023-04-26/part-0000.jsonl.gz",
        *(f"landing/events/date=2023-04-25/part-{i:04d}.jsonl.gz" for i in range(500)),
    }
    assert seconds < 1.0, seconds  # a sanity bound: the real cost is ~500 stats


def test_photos_sensor_new_and_rewritten_images(lake: LocalObjectStore) -> None:
    clock = Clock()
    t = Ticker(build_landing_photos_sensor(full_rescan_seconds=3600, clock=clock), lake)
    assert t.tick().run_requests == []  # nothing landed
    p1 = lake.put_bytes("landing/photos/00000001.jpg", b"a")
    p2 = lake.put_bytes("landing/photos/00000002.jpg", b"b")
    lake.put_bytes("landing/photos/00000002.txt", b"not an image")
    first = t.tick()
    (req,) = first.run_requests or []
    assert req.run_key == f"photos:{digest([p1, p2])}"
    assert set(req.asset_selection or []) == {PHOTOS_KEY, PHOTOS_QUARANTINE_KEY}
    assert t.tick().run_requests == []

    p3 = lake.put_bytes("landing/photos/00000003.png", b"c")
    LISTED.clear()
    (new,) = t.tick().run_requests or []
    assert new.run_key == f"photos:{digest([p1, p2, p3])}"  # incremental == full digest

    p1_new = lake.put_bytes("landing/photos/00000001.jpg", b"rewritten")
    clock.now += 60
    assert t.tick().run_requests == []  # rewrites wait for the full rescan
    clock.now += 3600
    (rescan,) = t.tick().run_requests or []
    assert rescan.run_key == f"photos:{digest([p1_new, p2, p3])}"
    assert t.tick().run_requests == []


def test_photos_sensor_first_tick_skips_an_image_set_already_loaded(
    lake: LocalObjectStore,
) -> None:
    p1 = lake.put_bytes("landing/photos/00000001.jpg", b"a")
    t = Ticker(build_landing_photos_sensor(), lake)
    t.instance.report_runless_asset_event(
        dg.AssetMaterialization(PHOTOS_KEY, metadata={"landing_digest": digest([p1])})
    )
    assert t.tick().run_requests == []  # the manifest was built from these very images
    p2 = lake.put_bytes("landing/photos/00000002.jpg", b"b")
    (req,) = t.tick().run_requests or []  # later ticks as before
    assert req.run_key == f"photos:{digest([p1, p2])}"

    t2 = Ticker(build_landing_photos_sensor(), lake)  # a manifest built before p2 landed
    t2.instance.report_runless_asset_event(
        dg.AssetMaterialization(PHOTOS_KEY, metadata={"landing_digest": digest([p1])})
    )
    (req,) = t2.tick().run_requests or []
    assert req.run_key == f"photos:{digest([p1, p2])}"


def test_dagster_accepts_the_sensor_result_for_a_new_partition(
    data_env: Path, lake: LocalObjectStore
) -> None:
    """Resolved by Dagster as the daemon does: the run targets a partition added in the same
    result, and the run request names the lake assets."""
    from my_data_platform.runner import load_definitions

    info = land(lake, "2024-03-01", "part-0")
    defs = load_definitions()
    sensor = defs.resolve_sensor_def("landing_events_sensor")
    with dg.instance_for_test() as instance:
        ctx = dg.SensorEvaluationContext(
            instance_ref=instance.get_ref(),
            instance=instance,
            resources={"object_store": LocalObjectStoreResource(root=str(lake.root))},
            definitions=defs,
            sensor_name=sensor.name,
        )
        data = sensor.evaluate_tick(ctx)
    (req,) = data.run_requests or []
    assert req.partition_key == "2024-03-01"
    assert req.tags["dagster/partition"] == "2024-03-01"
    assert req.run_key == f"2024-03-01:{digest([info])}"
    assert [list(r.partition_keys) for r in data.dynamic_partitions_requests or []] == [
        ["2024-03-01"]
    ]
