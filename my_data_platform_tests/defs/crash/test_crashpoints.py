"""MDP_CRASH_AT: how it is parsed, and that a crash point kills exactly on the n-th reach."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from my_data_platform.defs.crashpoints import CRASH_POINTS, NAMES, crash_point
from my_data_platform.settings import SettingsError, get_settings, reset_settings
from my_data_platform_tests.defs.crash.steps import REPO_ROOT


def test_every_point_is_named_once_and_described() -> None:
    assert len(NAMES) == len(CRASH_POINTS) == 12
    stages = {p.name.rsplit(".", 1)[1] for p in CRASH_POINTS}
    assert stages == {"start", "middle", "end"}
    assert all(p.doc.strip() for p in CRASH_POINTS)


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("lake_events.middle", ("lake_events.middle", 1)),
        ("sensor_tick.end@3", ("sensor_tick.end", 3)),
    ],
)
def test_the_setting_is_parsed(
    data_env: Path, monkeypatch: pytest.MonkeyPatch, value: str, parsed: tuple
) -> None:
    monkeypatch.setenv("MDP_CRASH_AT", value)
    reset_settings()
    assert get_settings().crash_at == parsed


@pytest.mark.parametrize("value", ["lake_events.start@0", "lake_events.start@x", "@2"])
def test_a_malformed_setting_names_the_variable(
    data_env: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("MDP_CRASH_AT", value)
    reset_settings()
    with pytest.raises(SettingsError, match="MDP_CRASH_AT"):
        get_settings()


def test_an_unknown_point_is_refused_where_a_point_is_reached(
    data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDP_CRASH_AT", "lake_events.midle")
    reset_settings()
    with pytest.raises(SettingsError, match=r"'lake_events\.midle', which is not a crash point"):
        crash_point("lake_events.start")


def test_unset_it_does_nothing(data_env: Path) -> None:
    assert get_settings().crash_at is None
    for point in CRASH_POINTS:
        crash_point(point.name)


def test_it_kills_on_the_nth_reach_only(data_env: Path) -> None:
    script = (
        "from my_data_platform.defs.crashpoints import crash_point\n"
        "for i in range(1, 4):\n"
        "    crash_point('lake_events.middle')\n"
        "    crash_point('lake_events.end')\n"
        "    print(i, flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "MDP_CRASH_AT": "lake_events.middle@2"}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.split() == ["1"]  # survived the first reach, died at the second
