"""A landing day publishes as one pointer put: generations, legacy days, failures, references."""

import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from my_data_platform.core.objectstore import ObjectStore
from my_data_platform.defs.features.inputs import scan_lake_events
from my_data_platform.defs.lake.assets import lake_events
from my_data_platform.defs.lake.objects import (
    PHOTOS_MANIFEST_OBJECT,
    PublishedDayError,
    lake_events_pointer,
    legacy_lake_events_object,
    legacy_lake_events_quarantine_object,
    new_generation,
    published_day,
    published_days,
    referenced_lake_keys,
)
from my_data_platform.defs.lake.resources import (
    LocalObjectStoreResource,
    object_store_from_settings,
)
from my_data_platform.defs.sources.resources import OLTPResource
from my_data_platform.settings import get_settings
from my_data_platform.synth import WorldConfig, generate_world


def _world(days: int = 1) -> list[str]:
    s = get_settings()
    summary = generate_world(
        WorldConfig(days=days, users=10, photos=20, events_per_day=300, seed=7),
        object_store_from_settings(),
        s.oltp_url,
        s.ground_truth_dir,
    )
    return [str(d) for d in summary.days]


def _run(
    data_env: Path, instance: dg.DagsterInstance, day: str, oltp_url: str | None = None
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [lake_events],
        instance=instance,
        partition_key=day,
        raise_on_error=False,
        resources={
            "object_store": LocalObjectStoreResource(root=str(data_env / "lake")),
            "oltp": OLTPResource(url=oltp_url or get_settings().oltp_url),
        },
    )


def _day_objects(store: ObjectStore, day: str) -> set[str]:
    return {
        o.key
        for prefix in ("lake/events/", "lake/events_quarantine/")
        for o in store.list(f"{prefix}date={day}/")
    }


def test_a_republish_swaps_the_pointer_and_drops_the_old_generation(data_env: Path) -> None:
    store = object_store_from_settings()
    (day,) = _world()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("event_days", [day])
        first = _run(data_env, instance, day)
        assert first.success
        one = published_day(store, day)
        assert one is not None and one.generation is not None
        # the day is exactly its three objects, and the pointer's record is the run's
        assert _day_objects(store, day) == set(one.keys)
        record = json.loads(store.get_bytes(lake_events_pointer(day)))
        assert record["run_id"] == first.run_id and record["version"] == 1
        (md,) = [
            m.metadata
            for m in first.asset_materializations_for_node("lake_events")
            if m.asset_key == dg.AssetKey(["lake", "events"])
        ]
        assert record["landing_digest"] == md["landing_digest"].value
        assert (
            record["counts"]["loaded"]
            == md["loaded"].value
            == pq.read_metadata(store.uri(one.events_key)).num_rows
        )
        assert record["counts"]["landed_lines"] == (
            record["counts"]["loaded"] + record["counts"]["quarantined"]
        )
        first_events = pq.read_table(store.uri(one.events_key))
        second = _run(data_env, instance, day)
        assert second.success
    two = published_day(store, day)
    assert two is not None and two.generation is not None
    assert two.generation > one.generation  # generations sort by time
    assert _day_objects(store, day) == set(two.keys)  # the previous one was deleted
    assert pq.read_table(store.uri(two.events_key)).equals(first_events)  # same files, same rows
    assert scan_lake_events(store).collect().height == two.counts["loaded"]


def test_a_day_that_fails_stays_as_it_was(data_env: Path) -> None:
    """An error while the day is being ingested publishes nothing and leaves no new object."""
    store = object_store_from_settings()
    (day,) = _world()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("event_days", [day])
        assert _run(data_env, instance, day).success
        before = published_day(store, day)
        objects = _day_objects(store, day)
        broken = f"sqlite:///{data_env / 'no' / 'such' / 'oltp.sqlite'}"
        assert not _run(data_env, instance, day, oltp_url=broken).success
    assert published_day(store, day) == before
    assert _day_objects(store, day) == objects


def _legacy_day(store: ObjectStore, day: str) -> pa.Table:
    """A day as releases before the pointer wrote it: two fixed-name objects."""
    (today,) = [d for d in published_days(store).values() if d.day == day]
    events = pq.read_table(store.uri(today.events_key))
    quarantine = pq.read_table(store.uri(today.quarantine_key))
    for key in today.keys:
        store.delete(key)
    with store.writing(legacy_lake_events_quarantine_object(day), suffix=".parquet") as p:
        pq.write_table(quarantine, p)
    with store.writing(legacy_lake_events_object(day), suffix=".parquet") as p:
        pq.write_table(events, p)
    return events


def test_a_legacy_day_is_read_until_it_is_published_again(data_env: Path) -> None:
    store = object_store_from_settings()
    days = _world(days=2)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("event_days", days)
        for day in days:
            assert _run(data_env, instance, day).success
        legacy = _legacy_day(store, days[0])
        old = published_day(store, days[0])
        assert old is not None and old.generation is None and old.pointer_key is None
        assert old.events_key == legacy_lake_events_object(days[0])
        both = published_days(store)
        assert sorted(both) == days and both[days[1]].generation is not None
        assert set(scan_lake_events(store).collect()["event_id"]) >= set(
            legacy["event_id"].to_pylist()
        )
        assert referenced_lake_keys(store) >= {
            legacy_lake_events_object(days[0]),
            legacy_lake_events_quarantine_object(days[0]),
        }
        assert _run(data_env, instance, days[0]).success
    new = published_day(store, days[0])
    assert new is not None and new.generation is not None
    assert _day_objects(store, days[0]) == set(new.keys)  # the legacy objects were removed
    assert pq.read_table(store.uri(new.events_key))["event_id"] == legacy["event_id"]


def test_referenced_keys_are_what_readers_reach(data_env: Path) -> None:
    store = object_store_from_settings()
    (day,) = _world()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("event_days", [day])
        assert _run(data_env, instance, day).success
    published = published_day(store, day)
    assert published is not None
    # a crashed run's generation, and objects outside the generation-managed prefixes
    orphan = f"lake/events/date={day}/events-{new_generation('deadbeef-crashed')}.parquet"
    store.put_bytes(orphan, b"PAR1")
    store.put_bytes("lake/features/labels.parquet", b"PAR1")
    referenced = referenced_lake_keys(store)
    assert referenced == set(published.keys) | {
        PHOTOS_MANIFEST_OBJECT,
        "lake/photos_quarantine/quarantine.parquet",
        "lake/features/labels.parquet",
    }
    assert {o.key for o in store.list("lake/")} - referenced == {orphan}


def test_a_malformed_pointer_is_an_error_naming_it(data_env: Path) -> None:
    store = object_store_from_settings()
    day = "2026-01-05"
    store.put_bytes(lake_events_pointer(day), b'{"version": 1, "events": "elsewhere"}')
    with pytest.raises(PublishedDayError, match=r"lake/events/date=2026-01-05/_published\.json"):
        published_day(store, day)
    store.put_bytes(
        lake_events_pointer(day),
        json.dumps(
            {
                "version": 1,
                "generation": "g",
                "events": "lake/events/date=2026-01-06/events-g.parquet",
                "quarantine": "lake/events_quarantine/date=2026-01-05/quarantine-g.parquet",
            }
        ).encode(),
    )
    with pytest.raises(PublishedDayError, match="outside day 2026-01-05"):
        published_day(store, day)
