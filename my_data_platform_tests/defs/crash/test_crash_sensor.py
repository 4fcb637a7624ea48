"""kill -9 at each landing_events_sensor crash point: a tick that dies changes nothing (the
daemon stores the cursor and submits the runs only from a returned result), and the next tick
requests every changed day once, none that is already loaded."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from my_data_platform.defs.lake.objects import event_day, landing_digest
from my_data_platform.defs.lake.resources import object_store_from_settings
from my_data_platform.runner import load_definitions, write_instance_config
from my_data_platform.settings import get_settings
from my_data_platform.synth import WorldConfig, generate_world
from my_data_platform_tests.defs.crash.steps import crash, land_more, run_step, tick

pytestmark = pytest.mark.slow  # child processes killed mid-tick

WORLD = WorldConfig(days=3, users=10, photos=20, events_per_day=100, seed=23)


def _digests(store) -> dict[str, str]:
    by_day: dict[str, list] = {}
    for o in store.list("landing/events/"):
        if (day := event_day(o.key)) is not None:
            by_day.setdefault(day, []).append(o)
    return {d: landing_digest(objs) for d, objs in sorted(by_day.items())}


def test_sensor_tick_crash_points(data_env: Path) -> None:
    s = get_settings()
    store = object_store_from_settings()
    summary = generate_world(WORLD, store, s.oltp_url, s.ground_truth_dir)
    days = [str(d) for d in summary.days]
    write_instance_config(s.dagster_home)
    cursor_file = data_env / "cursor.json"
    defs = load_definitions()
    with dg.DagsterInstance.from_config(str(s.dagster_home)) as instance:
        instance.add_dynamic_partitions("event_days", days[:1])
        assert run_step(defs, instance, "lake", days[:1]).success  # loaded before any tick
        loaded = {days[0]: _digests(store)[days[0]]}  # day -> digest it was loaded from
        for stage in ("start", "middle", "end"):
            point = f"sensor_tick.{stage}"
            for rep in (1, 2, 3):
                where = f"{point} rep {rep}"
                if rep == 1:
                    cursor_file.unlink(missing_ok=True)  # a first tick: no cursor
                elif rep == 2:
                    land_more(store, days[1], f"{stage}{rep}")  # a late file
                cursor = cursor_file.read_text() if cursor_file.exists() else None
                partitions = instance.get_dynamic_partitions("event_days")
                crash("sensor", [str(cursor_file)], point)
                # nothing was stored: the cursor and the partitions are as they were
                assert (cursor_file.read_text() if cursor_file.exists() else None) == cursor
                assert instance.get_dynamic_partitions("event_days") == partitions, where
                # the next tick, as the daemon makes it
                result = tick(instance, cursor)
                digests = _digests(store)
                known = json.loads(cursor)["days"] if cursor else loaded
                expected = {f"{d}:{g}" for d, g in digests.items() if known.get(d) != g}
                got = [r.run_key for r in result.run_requests or []]
                assert sorted(got) == sorted(expected), where  # no day lost, none twice
                assert not {f"{d}:{g}" for d, g in loaded.items()} & set(got), where
                for req in result.dynamic_partitions_requests or []:
                    instance.add_dynamic_partitions(
                        req.partitions_def_name, list(req.partition_keys)
                    )
                assert result.cursor is not None
                cursor_file.write_text(result.cursor)
                # the daemon launches the runs; the lake loads the days
                for req in result.run_requests or []:
                    day = req.partition_key
                    assert day is not None
                    assert run_step(defs, instance, "lake", [day]).success, where
                    loaded[day] = digests[day]
        # every landed day ends loaded from exactly the files landed now
        assert loaded == _digests(store)
