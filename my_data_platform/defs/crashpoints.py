"""Named crash points: places where a test can make the process die by SIGKILL.

Crash-safety tests (my_data_platform_tests/defs/crash/) set ``MDP_CRASH_AT=<point>`` or
``<point>@<n>`` in a child process, which then kills itself, with no cleanup of any kind, the
n-th time (default: first) it reaches the point; the test then checks that nothing partial is
visible and that a rerun converges. Unset (always, outside those tests), ``crash_point`` is one
cached-settings lookup and a comparison. docs/ingest.md ("Crash safety") lists what each point
proves.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class CrashPoint:
    name: str
    doc: str


CRASH_POINTS: tuple[CrashPoint, ...] = (
    CrashPoint(
        "lake_events.start",
        "Once per day of a lake/events run, before any of that day's objects is written.",
    ),
    CrashPoint(
        "lake_events.middle",
        "Once per day: the day's events and quarantine objects are written under their new "
        "generation's names, its pointer is not yet published.",
    ),
    CrashPoint(
        "lake_events.end",
        "Once per day: the day's pointer is published and the previous generation deleted; "
        "no materialization of the run is reported yet.",
    ),
    CrashPoint(
        "warehouse_events.start",
        "warehouse/events, before the lake days are resolved or the warehouse is touched.",
    ),
    CrashPoint(
        "warehouse_events.middle",
        "warehouse/events, inside the DuckLake write transaction: the old slice deleted, the "
        "lake files copied into DuckLake's data path and registered, nothing committed.",
    ),
    CrashPoint(
        "warehouse_events.end",
        "warehouse/events, after the DuckLake commit, before the materialization is reported.",
    ),
    CrashPoint(
        "dataset_commit.start",
        "datasets/popularity, after the run branch is created and its objects staged.",
    ),
    CrashPoint(
        "dataset_commit.middle",
        "datasets/popularity, after the branch commit, before the merge into main.",
    ),
    CrashPoint(
        "dataset_commit.end",
        "datasets/popularity, after the merge into main, before the tag and branch delete.",
    ),
    CrashPoint(
        "sensor_tick.start",
        "landing_events_sensor, before it lists or plans anything.",
    ),
    CrashPoint(
        "sensor_tick.middle",
        "landing_events_sensor, after planning, before its run requests and cursor are returned.",
    ),
    CrashPoint(
        "sensor_tick.end",
        "landing_events_sensor, with the result built, just before it is returned.",
    ),
)
"""Every crash point, in pipeline order; ``MDP_CRASH_AT`` must name one of them."""

NAMES = frozenset(p.name for p in CRASH_POINTS)

_reached: Counter[str] = Counter()


def crash_point(name: str) -> None:
    """Die by SIGKILL here if ``MDP_CRASH_AT`` names this point and this is the n-th time this
    process reaches it; otherwise do nothing."""
    from my_data_platform.settings import SettingsError, get_settings

    target = get_settings().crash_at  # cached per process
    if target is None or target[0] != name:
        if target is not None and target[0] not in NAMES:
            raise SettingsError(
                f"MDP_CRASH_AT names {target[0]!r}, which is not a crash point: one of "
                f"{', '.join(sorted(NAMES))}"
            )
        return
    _reached[name] += 1
    if _reached[name] == target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
