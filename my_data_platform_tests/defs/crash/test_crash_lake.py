"""kill -9 at each lake/events crash point: a day is its previous publish or the whole new one,
never half; a rerun converges with no duplicate and every landed line accounted for."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from my_data_platform.defs.lake.objects import published_day, referenced_lake_keys
from my_data_platform.defs.lake.resources import object_store_from_settings
from my_data_platform.runner import load_definitions, write_instance_config
from my_data_platform.settings import get_settings
from my_data_platform.synth import WorldConfig, generate_world
from my_data_platform_tests.defs.crash.steps import (
    assert_day_complete,
    crash,
    land_more,
    leftover_temp_files,
    run_maintenance,
    run_step,
)

pytestmark = pytest.mark.slow  # child processes killed mid-run

WORLD = WorldConfig(days=2, users=10, photos=20, events_per_day=300, seed=21, corrupt_rate=0.05)


@pytest.fixture
def world(data_env: Path):
    s = get_settings()
    summary = generate_world(WORLD, object_store_from_settings(), s.oltp_url, s.ground_truth_dir)
    write_instance_config(s.dagster_home)
    days = [str(d) for d in summary.days]
    with dg.DagsterInstance.from_config(str(s.dagster_home)) as instance:
        instance.add_dynamic_partitions("event_days", days)
        yield data_env, instance, days


def _orphans(store) -> set[str]:
    return {o.key for o in store.list("lake/")} - referenced_lake_keys(store)


def test_lake_events_crash_points(world) -> None:
    data, instance, (d1, d2) = world
    store = object_store_from_settings()
    defs = load_definitions()
    for stage in ("start", "middle", "end"):
        point = f"lake_events.{stage}"
        # (the days of the run, the n-th reach that dies, the day it dies on)
        reps = [([d1], 1), ([d1], 1), ([d1, d2], 2)]
        for rep, (days, n) in enumerate(reps, 1):
            where = f"{point} rep {rep}"
            land_more(store, d1, f"{stage}{rep}")  # every run has something new to publish
            before = {d: published_day(store, d) for d in days}
            orphans_before = _orphans(store)
            crash("lake", days, point if n == 1 else f"{point}@{n}")
            dead_on = days[n - 1]
            for day in days:
                now = published_day(store, day)
                if day != dead_on or stage == "end":
                    assert now != before[day], where  # a whole new publish
                    assert_day_complete(store, day)
                else:
                    assert now == before[day], where  # untouched
            new_orphans = _orphans(store) - orphans_before
            if stage == "middle":  # the dying day's objects were written, never published
                assert {k.rsplit("/", 2)[-2] for k in new_orphans} == {f"date={dead_on}"}, where
                assert len(new_orphans) == 2, where
            else:
                assert new_orphans == set(), where
            assert leftover_temp_files(data) == [], where
            # the rerun converges: every day whole, nothing lost, nothing twice
            assert run_step(defs, instance, "lake", days).success, where
            for day in days:
                pub = assert_day_complete(store, day)
                assert pub != before[day], where
            assert _orphans(store) == orphans_before | new_orphans, where
    # only the middle crashes left anything behind: two objects each, for maintenance
    assert len(_orphans(store)) == 2 * 3
    report = run_maintenance(defs, instance)
    assert report["lake_leftovers_deleted"] == 2 * 3
    assert _orphans(store) == set() and leftover_temp_files(data) == []
    for day in (d1, d2):
        assert_day_complete(store, day)  # maintenance removed nothing a day needs
