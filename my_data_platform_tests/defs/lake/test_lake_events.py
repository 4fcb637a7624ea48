"""lake/events over a partition range (a single-run backfill's run) and the runs `mdp run` makes."""

import gzip
import json
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from my_data_platform.defs.lake.assets import lake_events
from my_data_platform.defs.lake.objects import published_day
from my_data_platform.defs.lake.resources import (
    LocalObjectStoreResource,
    object_store_from_settings,
)
from my_data_platform.defs.sources.resources import OLTPResource
from my_data_platform.runner import _day_batches
from my_data_platform.settings import get_settings
from my_data_platform.synth import WorldConfig, generate_world


def _one_day(events_per_day: int, seed: int) -> str:
    """A small world of one landed day in the data dir; returns the day."""
    s = get_settings()
    summary = generate_world(
        WorldConfig(days=1, users=10, photos=20, events_per_day=events_per_day, seed=seed),
        object_store_from_settings(),
        s.oltp_url,
        s.ground_truth_dir,
    )
    return str(summary.days[0])


def _materialize_lake_events(data_env: Path, partitions: list[str], **kwargs: Any) -> Any:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("event_days", partitions)
        return dg.materialize(
            [lake_events],
            instance=instance,
            resources={
                "object_store": LocalObjectStoreResource(root=str(data_env / "lake")),
                "oltp": OLTPResource(url=get_settings().oltp_url),
            },
            **kwargs,
        )


def test_a_range_with_a_day_without_files_fails_before_writing_anything(data_env: Path) -> None:
    store = object_store_from_settings()
    day = _one_day(events_per_day=200, seed=1)
    result = _materialize_lake_events(
        data_env,
        [day, "2030-01-01"],
        tags={ASSET_PARTITION_RANGE_START_TAG: day, ASSET_PARTITION_RANGE_END_TAG: "2030-01-01"},
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message
    assert "landing/events/date=2030-01-01/" in message and day not in message
    assert published_day(store, day) is None  # the good day was not written either
    assert list(store.list("lake/")) == []


def test_mdp_run_groups_days_into_partition_ranges() -> None:
    """A run covers a range of the dynamic partitions, which are ordered by when they were
    added: days that landed out of order, or a partition with no files, split the runs."""
    order = ["2024-03-01", "2024-03-03", "2030-01-01", "2024-03-02", "2024-03-04"]
    days = ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"]  # landed, sorted
    assert _day_batches(days, order, None) == [
        ["2024-03-01", "2024-03-03"],
        ["2024-03-02", "2024-03-04"],
    ]
    assert _day_batches(days, days, None) == [days]  # the usual case: one run
    assert _day_batches(days, days, 1) == [[d] for d in days]  # no backfill policy
    assert _day_batches(days, days, 3) == [days[:3], days[3:]]  # multi_run(3)


def test_the_lake_file_is_laid_out_for_readers(data_env: Path) -> None:
    """Delta-encoded integers, dictionaries where values repeat, and min/max statistics on
    the columns whose ranges can skip row groups (not on event_type/client: every row group
    holds all their values)."""
    day = _one_day(events_per_day=500, seed=2)
    result = _materialize_lake_events(data_env, [day], partition_key=day)
    assert result.success
    published = published_day(object_store_from_settings(), day)
    assert published is not None
    meta = pq.ParquetFile(data_env / "lake" / published.events_key).metadata
    assert meta.num_rows > 400
    group = meta.row_group(0)
    columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    assert "DELTA_BINARY_PACKED" in columns["ts"].encodings
    assert "RLE_DICTIONARY" in columns["event_type"].encodings
    assert "RLE_DICTIONARY" not in columns["event_id"].encodings
    with_min_max = {n for n, c in columns.items() if c.statistics and c.statistics.has_min_max}
    assert {"event_id", "user_id", "photo_id", "ts", "landing_date", "source_file"} <= with_min_max
    assert not {"event_type", "client"} & with_min_max


def _renamed_events(data: bytes, prefix: str) -> bytes:
    """The landed lines of ``data`` with every event_id prefixed, so they are new events."""
    out = []
    for raw in gzip.decompress(data).splitlines():
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("event_id"), str):
            event["event_id"] = prefix + event["event_id"]
            out.append(json.dumps(event, ensure_ascii=False))
    return ("\n".join(out) + "\n").encode()


def test_hostile_landed_files_are_quarantined_and_the_day_still_loads(data_env: Path) -> None:
    """Issue 15 against a real local store: content decides gzip or plain, UTF-8 names load,
    a non-UTF-8 name, an NFC twin, a bomb and a long line each become a quarantine row."""
    day = _one_day(events_per_day=300, seed=3)
    landing = data_env / "lake" / "landing" / "events" / f"date={day}"
    original = sorted(landing.iterdir())[0]
    data = original.read_bytes()
    (landing / "plain.jsonl.gz").write_bytes(_renamed_events(data, "p-"))  # not gzip at all
    # the same name in two Unicode forms: the decomposed one sorts first and loads, by its
    # exact key; the composed one is its NFC twin
    (landing / "día-u\u0308.jsonl").write_bytes(gzip.compress(_renamed_events(data, "u-")))
    (landing / "día-\u00fc.jsonl").write_bytes(gzip.compress(_renamed_events(data, "twin-")))
    os.close(os.open(bytes(landing) + b"/bad\xff.jsonl.gz", os.O_CREAT | os.O_WRONLY, 0o644))
    (landing / "bomb.jsonl.gz").write_bytes(gzip.compress(b"\n" * (3 << 20)))
    (landing / "huge.jsonl").write_bytes(b"x" * ((2 << 20) + 1))  # stored over the limit: unread
    (landing / "long.jsonl.gz").write_bytes(gzip.compress(b'{"event_id":"' + b"x" * 20_000))
    store = LocalObjectStoreResource(
        root=str(data_env / "lake"),
        landing_max_inflated_bytes=2 << 20,
        landing_max_line_bytes=10_000,
    )
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("event_days", [day])
        result = dg.materialize(
            [lake_events],
            instance=instance,
            partition_key=day,
            resources={"object_store": store, "oltp": OLTPResource(url=get_settings().oltp_url)},
        )
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.passed
    published = published_day(object_store_from_settings(), day)
    assert published is not None
    events = pq.read_table(data_env / "lake" / published.events_key).to_pylist()
    ids = [e["event_id"] for e in events]
    plain = sum(i.startswith("p-") for i in ids)
    assert plain > 10 and sum(i.startswith("u-") for i in ids) == plain
    assert not any(i.startswith("twin-") for i in ids)
    prefix = f"landing/events/date={day}/"
    assert {e["source_file"] for e in events if e["event_id"].startswith("u-")} == {
        prefix + "día-u\u0308.jsonl"
    }
    quarantine = pq.read_table(data_env / "lake" / published.quarantine_key)
    rows = {(r["source_file"].removeprefix(prefix), r["reason"]) for r in quarantine.to_pylist()}
    assert {
        ("bad\\udcff.jsonl.gz", "invalid_name"),
        ("bomb.jsonl.gz", "file_too_large"),
        ("huge.jsonl", "file_too_large"),
        ("día-\u00fc.jsonl", "duplicate_name"),
        ("long.jsonl.gz", "line_too_long"),
    } <= rows
