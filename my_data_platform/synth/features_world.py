"""The synthetic world as Polars frames, for feature tests, benchmarks and label calibration.

The same events as ``generate_event_day`` (same sampling code and random streams), straight in
``EVENTS_SCHEMA`` without the gzip round trip. Notes: ``docs/features.md``.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from my_data_platform.core.events import EVENTS_SCHEMA
from my_data_platform.synth.config import WorldConfig
from my_data_platform.synth.events import EVENT_TYPES, event_file_key
from my_data_platform.synth.population import (
    CLIENTS,
    POPULARITY,
    SECONDS_PER_DAY,
    make_users,
)
from my_data_platform.synth.sampling import (
    BUCKET_SECONDS,
    Buckets,
    chunk_rng,
    eligible_photos,
    event_columns,
)
from my_data_platform.synth.world import all_photos

__all__ = ["EVENTS_POLARS_SCHEMA", "event_day_frame", "world_frames", "world_tables"]

#: ``EVENTS_SCHEMA`` as a Polars schema (what ``pl.scan_parquet`` of ``lake/events`` yields).
EVENTS_POLARS_SCHEMA: pl.Schema = pl.DataFrame(EVENTS_SCHEMA.empty_table()).schema


def world_tables(config: WorldConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(photos, users)`` with hidden generator columns (needed by ``event_day_frame``)."""
    users = make_users(config.users, config.seed, config.start_date)
    photos = all_photos(config, range(config.days), users)
    return photos, users


def event_day_frame(
    config: WorldConfig, day_index: int, photos: pl.DataFrame, users: pl.DataFrame
) -> pl.DataFrame:
    """One day of clean events in ``EVENTS_SCHEMA``, drawn exactly like ``generate_event_day``.

    Only clean worlds are supported: corruption changes the line order and content, which
    belongs to the ingestion tests, not to the features.
    """
    if config.corrupt_rate > 0:
        raise ValueError("event_day_frame only draws clean worlds (corrupt_rate == 0)")
    date = config.date_of(day_index)
    day_start = day_index * SECONDS_PER_DAY
    eligible = eligible_photos(photos, day_start + SECONDS_PER_DAY)
    rng = np.random.default_rng([config.seed, day_index])
    n_buckets = SECONDS_PER_DAY // BUCKET_SECONDS
    starts = day_start + BUCKET_SECONDS * np.arange(n_buckets)
    buckets = Buckets(eligible, starts, day_start, POPULARITY)
    counts = buckets.counts(rng, config.events_per_day)
    files = config.files_per_day
    bounds = [i * n_buckets // files for i in range(files + 1)]
    offsets = np.concatenate([[0], np.cumsum(counts)])[bounds]
    origin = dt.datetime.combine(config.start_date, dt.time(), tzinfo=dt.UTC)
    frames = []
    for i in range(files):
        crng = chunk_rng(config.seed, day_index, i)
        idx, ts = buckets.sample(crng, counts, bounds[i], bounds[i + 1])
        cols = event_columns(crng, eligible, users, idx, ts, POPULARITY, seq0=int(offsets[i]))
        n = len(idx)
        frames.append(
            pl.DataFrame(
                {
                    "seq": cols["seq"] + 1_000_000_000,
                    "etype": cols["etype"],
                    "user_id": cols["user_id"],
                    "photo_id": cols["photo_id"],
                    "ts_ms": cols["ts"],
                    "dwell_ms": cols["dwell"],
                    "client": cols["client"],
                    "line_no": np.arange(1, n + 1, dtype=np.int64),
                }
            ).with_columns(source_file=pl.lit(event_file_key(date, i)))
        )
    df = pl.concat(frames)
    return df.select(
        event_id=pl.lit(f"e{date:%Y%m%d}-") + pl.col("seq").cast(pl.String).str.slice(1),
        event_type=pl.col("etype").replace_strict(
            list(range(len(EVENT_TYPES))), list(EVENT_TYPES), return_dtype=pl.String
        ),
        user_id=pl.col("user_id"),
        photo_id=pl.col("photo_id"),
        ts=pl.lit(origin) + pl.duration(milliseconds=pl.col("ts_ms")),
        dwell_ms=pl.when(pl.col("dwell_ms") >= 0).then(pl.col("dwell_ms")),
        client=pl.col("client").replace_strict(
            list(range(len(CLIENTS))), list(CLIENTS), return_dtype=pl.String
        ),
        landing_date=pl.lit(date),
        source_file=pl.col("source_file"),
        line_no=pl.col("line_no"),
    ).cast(dict(EVENTS_POLARS_SCHEMA))  # type: ignore[arg-type]


def world_frames(config: WorldConfig) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """``(events, photos, users)`` of a clean world, with the public columns only.

    photos: photo_id, user_id, uploaded_at, caption; users: user_id, joined_at,
    follower_count -- the columns the warehouse tables expose.
    """
    photos, users = world_tables(config)
    events = pl.concat([event_day_frame(config, d, photos, users) for d in range(config.days)])
    return (
        events,
        photos.select("photo_id", "user_id", "uploaded_at", "caption"),
        users.select("user_id", "joined_at", "follower_count"),
    )
