"""The synthetic world behind ``mdp seed`` (pure Python, no Dagster)."""

from my_data_platform.synth.config import WorldConfig
from my_data_platform.synth.events import EventDay, generate_event_day, write_event_day
from my_data_platform.synth.world import (
    WorldExistsError,
    WorldSummary,
    append_days,
    generate_world,
    read_world,
)

__all__ = [
    "EventDay",
    "WorldConfig",
    "WorldExistsError",
    "WorldSummary",
    "append_days",
    "generate_event_day",
    "generate_world",
    "read_world",
    "write_event_day",
]
