"""kill -9 at each warehouse/events crash point: the table stays readable with its previous
content or the whole new one (every day of the run together); a rerun converges."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import dagster as dg
import pytest

from my_data_platform.cli.sql import analyst_session
from my_data_platform.defs.lake.objects import published_day
from my_data_platform.defs.lake.resources import object_store_from_settings
from my_data_platform.defs.warehouse.location import location_from_settings
from my_data_platform.runner import load_definitions, write_instance_config
from my_data_platform.settings import get_settings
from my_data_platform.synth import WorldConfig, generate_world
from my_data_platform_tests.defs.crash.steps import (
    crash,
    land_more,
    leftover_temp_files,
    run_maintenance,
    run_step,
)

pytestmark = pytest.mark.slow  # child processes killed mid-run

WORLD = WorldConfig(days=2, users=10, photos=20, events_per_day=300, seed=22, corrupt_rate=0.05)
PER_DAY = (
    "SELECT landing_date::VARCHAR, count(*), count(DISTINCT event_id) FROM warehouse.events "
    "GROUP BY 1 ORDER BY 1"
)


def _per_day() -> dict[str, tuple[int, int]]:
    with analyst_session() as session:  # what an analyst sees
        _, rows = session.run(PER_DAY)
    return {d: (n, u) for d, n, u in rows}


def _quarantined_lines() -> dict[str, int]:
    with analyst_session() as session:
        _, rows = session.run(
            "SELECT landing_date::VARCHAR, count(*) FROM warehouse.events_quarantine "
            "WHERE line_no IS NOT NULL GROUP BY 1"
        )
    return dict(rows)


def _orphan_copies(data: Path) -> set[str]:
    """DuckLake data files of warehouse.events that no snapshot of the catalog names."""
    location = location_from_settings()
    assert location.catalog_file is not None
    con = sqlite3.connect(f"file:{location.catalog_file}?mode=ro", uri=True)
    try:
        named = {Path(p).name for (p,) in con.execute("SELECT path FROM ducklake_data_file")}
    finally:
        con.close()
    folder = Path(location.data_path) / "warehouse" / "events"
    return {p.name for p in folder.glob("*.parquet")} - named


@pytest.fixture
def world(data_env: Path):
    s = get_settings()
    summary = generate_world(WORLD, object_store_from_settings(), s.oltp_url, s.ground_truth_dir)
    write_instance_config(s.dagster_home)
    days = [str(d) for d in summary.days]
    with dg.DagsterInstance.from_config(str(s.dagster_home)) as instance:
        instance.add_dynamic_partitions("event_days", days)
        yield data_env, instance, days


def test_warehouse_events_crash_points(world) -> None:
    data, instance, (d1, d2) = world
    store = object_store_from_settings()
    defs = load_definitions()
    assert run_step(defs, instance, "lake", [d1, d2]).success
    assert run_step(defs, instance, "warehouse", [d1]).success
    orphans = 0
    for stage in ("start", "middle", "end"):
        point = f"warehouse_events.{stage}"
        for rep, days in enumerate([[d2], [d1], [d1, d2]], 1):
            where = f"{point} rep {rep}"
            # new landed files, a new lake publish: the warehouse has something to replace
            for day in days:
                land_more(store, day, f"{stage}{rep}")
            assert run_step(defs, instance, "lake", days).success, where
            lake = {d: published_day(store, d) for d in days}
            before = _per_day()
            copies_before = _orphan_copies(data)
            crash("warehouse_events", days, point)
            after = _per_day()  # readable, whatever the crash left
            loaded = {d: (p.counts["loaded"],) * 2 for d, p in lake.items() if p}
            if stage == "end":  # committed: every day of the run, whole
                assert after == {**before, **loaded}, where
            else:  # every day as it was
                assert after == before, where
            new_copies = _orphan_copies(data) - copies_before
            # the middle crash leaves the lake files it copied into DuckLake's data path
            assert len(new_copies) == (len(days) if stage == "middle" else 0), where
            orphans += len(new_copies)
            assert leftover_temp_files(data) == [], where
            # the rerun: both tables, each day as the lake holds it, nothing twice
            assert run_step(defs, instance, "warehouse", days).success, where
            after = _per_day()
            assert after == {**before, **loaded}, where
            quarantined = _quarantined_lines()
            for day, pub in lake.items():
                assert pub is not None
                assert pub.counts["landed_lines"] == after[day][0] + quarantined[day], where
    assert len(_orphan_copies(data)) == orphans == 1 + 1 + 2  # the middle crash's days
    before = _per_day()
    report = run_maintenance(defs, instance)
    assert report["orphans_deleted"] >= orphans
    assert _orphan_copies(data) == set() and leftover_temp_files(data) == []
    assert _per_day() == before  # maintenance removed nothing the warehouse reads
