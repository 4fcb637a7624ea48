"""Tiny worlds and hand-made frames with known answers for the feature tests.

Worlds are tiny (a few thousand events), so every feature test module runs in seconds.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from my_data_platform.synth import WorldConfig
from my_data_platform.synth.features_world import EVENTS_POLARS_SCHEMA

UTC = dt.UTC
T = dt.datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
US = dt.timedelta(microseconds=1)
H = dt.timedelta(hours=1)
TINY = WorldConfig(days=2, users=40, photos=200, events_per_day=4000, seed=7)
OBSERVED_UNTIL = dt.datetime.combine(TINY.date_of(TINY.days), dt.time(), tzinfo=UTC)


def make_events(rows: list[tuple[int, str, int, dt.datetime, int | None]]) -> pl.LazyFrame:
    """Events in EVENTS_SCHEMA from ``(photo_id, event_type, user_id, ts, dwell_ms)``."""
    return pl.DataFrame(
        {
            "event_id": [f"h-{i}" for i in range(len(rows))],
            "event_type": [r[1] for r in rows],
            "user_id": [r[2] for r in rows],
            "photo_id": [r[0] for r in rows],
            "ts": [r[3] for r in rows],
            "dwell_ms": [r[4] for r in rows],
            "client": ["ios"] * len(rows),
            "landing_date": [r[3].date() for r in rows],
            "source_file": ["hand"] * len(rows),
            "line_no": list(range(1, len(rows) + 1)),
        },
        schema=EVENTS_POLARS_SCHEMA,
    ).lazy()


def make_photos(rows: list[tuple[int, int, dt.datetime]]) -> pl.LazyFrame:
    return pl.DataFrame(
        {
            "photo_id": [r[0] for r in rows],
            "user_id": [r[1] for r in rows],
            "uploaded_at": [r[2] for r in rows],
            "caption": ["a caption"] * len(rows),
        },
        schema={
            "photo_id": pl.Int64,
            "user_id": pl.Int64,
            "uploaded_at": pl.Datetime("us", "UTC"),
            "caption": pl.String,
        },
    ).lazy()


def queries(rows: list[tuple[int, dt.datetime]]) -> pl.LazyFrame:
    return pl.LazyFrame(
        {"photo_id": [r[0] for r in rows], "as_of": [r[1] for r in rows]},
        schema={"photo_id": pl.Int64, "as_of": pl.Datetime("us", "UTC")},
    )
