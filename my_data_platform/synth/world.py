"""``mdp seed``: a deterministic synthetic photo-sharing world, landed like production data.

OLTP tables, JPEG images and gzip JSON Lines event logs, plus the ground truth that only tests and
model evaluation read, in the object store under ``synthetic/truth/``
(``core/synthetic_truth.py``), so a step on any worker finds it. Notes: ``docs/ingest.md``,
``docs/storage.md``.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from my_data_platform.core.fsutil import atomic_path
from my_data_platform.core.objectstore import ObjectStore
from my_data_platform.core.synthetic_truth import (
    CORRUPTIONS_PARQUET,
    PHOTOS_PARQUET,
    TRUTH_FILES,
    TRUTH_PREFIX,
    WORLD_JSON,
    has_truth,
    read_truth_bytes,
    read_world,
    truth_key,
)
from my_data_platform.synth import oltp
from my_data_platform.synth.annotators import vendor_annotations
from my_data_platform.synth.config import WorldConfig
from my_data_platform.synth.events import (
    LINE_KINDS,
    QUARANTINE_REASONS,
    VALID_KINDS,
    EventDay,
    generate_event_day,
    write_event_day,
)
from my_data_platform.synth.images import broken_payload, encode_jpeg, render_images
from my_data_platform.synth.population import (
    CLASSES,
    PHOTO_DB_COLUMNS,
    POPULARITY,
    POPULARITY_DESCRIPTION,
    STREAM_IMAGES,
    USER_DB_COLUMNS,
    day_rng,
    make_photos_day,
    make_users,
)

logger = logging.getLogger(__name__)

__all__ = [
    "EventDay",
    "Progress",
    "WorldConfig",
    "WorldExistsError",
    "WorldSummary",
    "append_days",
    "generate_event_day",
    "generate_world",
    "read_world",
]

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages: users, photos, images, events."""

LANDING_PREFIX = "landing/"
FORMAT_VERSION = 1
_IMAGE_BATCH = 512
IMAGE_KINDS = ("image_truncated", "image_not_an_image")


@dataclass
class WorldSummary:
    """What one ``generate_world`` / ``append_days`` call wrote."""

    days: list[datetime.date]
    users: int
    photos: int
    """Photos inserted by this call."""
    events: int
    """Event lines written, including corrupted ones, duplicates and the truncated files'."""
    bytes_written: int
    """Event log and image bytes put into the object store."""
    corruptions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    images: int = 0
    event_files: int = 0
    annotations: int = 0
    """Vendor annotations written to ``photo_annotations``."""


class WorldExistsError(RuntimeError):
    """A world is already there (landing keys, OLTP rows or ground truth); pass force=True."""


def generate_world(
    config: WorldConfig,
    store: ObjectStore,
    oltp_url: str,
    ground_truth_dir: Path | None = None,
    progress: Progress | None = None,
    force: bool = False,
) -> WorldSummary:
    """Create a fresh world of ``config.days`` days; with ``force`` replace an existing one.

    The truth goes to ``store`` under ``synthetic/truth/``; ``ground_truth_dir``, when given,
    also receives a copy, for people and tests to read (no pipeline step reads it)."""
    started = time.perf_counter()
    gt = Path(ground_truth_dir) if ground_truth_dir is not None else None
    engine = oltp.make_engine(oltp_url)
    try:
        existing = _what_exists(store, engine, gt)
        if existing:
            if not force:
                raise WorldExistsError(
                    f"a world already exists ({', '.join(existing)}); use force=True to replace it"
                )
            logger.info("replacing the existing world (%s)", ", ".join(existing))
            removed = store.delete_prefix(LANDING_PREFIX)
            logger.info("deleted %d landing objects from %s", removed, store.describe())
            store.delete_prefix(TRUTH_PREFIX)
            for name in TRUTH_FILES if gt is not None else ():
                (gt / name).unlink(missing_ok=True)
        oltp.recreate(engine)
        users = make_users(config.users, config.seed, config.start_date)
        _emit(progress, "users", 0, 1)
        oltp.insert_frame(engine, oltp.users_table, users, USER_DB_COLUMNS)
        _emit(progress, "users", 1, 1)
        summary = _generate_days(
            config, range(config.days), users, store, engine, gt, progress, previous=None
        )
    finally:
        engine.dispose()
    summary.users = config.users
    summary.seconds = time.perf_counter() - started
    return summary


def append_days(
    n: int,
    store: ObjectStore,
    oltp_url: str,
    ground_truth_dir: Path | None = None,
    progress: Progress | None = None,
) -> WorldSummary:
    """Generate days ``[last + 1, last + n]`` of the world described by ``world.json`` in
    ``store`` (``ground_truth_dir``: as for :func:`generate_world`)."""
    if n < 1:
        raise ValueError("append_days needs n >= 1")
    started = time.perf_counter()
    gt = Path(ground_truth_dir) if ground_truth_dir is not None else None
    previous = read_world(store)
    config = WorldConfig.from_json(previous["config"])
    first = max(d["day_index"] for d in previous["day_stats"]) + 1
    users = make_users(config.users, config.seed, config.start_date)
    engine = oltp.make_engine(oltp_url)
    try:
        oltp.ensure_tables(engine)
        summary = _generate_days(
            config, range(first, first + n), users, store, engine, gt, progress, previous
        )
    finally:
        engine.dispose()
    summary.users = config.users
    summary.seconds = time.perf_counter() - started
    return summary


def all_photos(
    config: WorldConfig, day_indices: Iterable[int], users: pl.DataFrame
) -> pl.DataFrame:
    """Photos (public and hidden columns) of the given days, regenerated from the seed."""
    frames = [
        make_photos_day(
            seed=config.seed,
            day_index=d,
            total_photos=config.photos,
            initial_days=config.days,
            start_date=config.start_date,
            users=users,
            corrupt_rate=config.corrupt_rate,
        ).with_columns(pl.lit(d, dtype=pl.Int32).alias("day_index"))
        for d in day_indices
    ]
    return pl.concat(frames)


def _emit(progress: Progress | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)


def _what_exists(store: ObjectStore, engine: Any, gt: Path | None) -> list[str]:
    found = []
    if has_truth(store):
        found.append(f"ground truth in {store.describe()}")
    if gt is not None and (gt / WORLD_JSON).exists():
        found.append(f"ground truth in {gt}")
    if next(iter(store.list(LANDING_PREFIX)), None) is not None:
        found.append(f"landing objects in {store.describe()}")
    if oltp.has_rows(engine):
        found.append("OLTP rows")
    return found


def _generate_days(
    config: WorldConfig,
    days: range,
    users: pl.DataFrame,
    store: ObjectStore,
    engine: Any,
    gt: Path | None,
    progress: Progress | None,
    previous: dict[str, Any] | None,
) -> WorldSummary:
    photos = all_photos(config, range(days.stop), users)
    new_photos = photos.filter(pl.col("day_index") >= days.start)
    logger.info("inserting %d photos for %d day(s)", new_photos.height, len(days))
    oltp.insert_frame(
        engine,
        oltp.photos_table,
        new_photos,
        PHOTO_DB_COLUMNS,
        progress=lambda done, total: _emit(progress, "photos", done, total),
    )

    image_bytes = _write_images(config, days, new_photos, store, progress)
    n_annotations = _write_annotations(config, days, new_photos, engine)

    corruption_rows: list[dict[str, Any]] = []
    day_stats: list[dict[str, Any]] = []
    truncated: list[dict[str, Any]] = []
    lines = event_bytes = event_files = 0
    _emit(progress, "events", 0, len(days))
    for i, d in enumerate(days):
        t0 = time.perf_counter()
        day = generate_event_day(config, d, photos, users)
        written = write_event_day(day, store)
        logger.info(
            "events %s: %d lines, %d bytes in %.2fs",
            day.date,
            day.lines,
            written,
            time.perf_counter() - t0,
        )
        lines += day.lines
        event_bytes += written
        event_files += len(day.files)
        day_photos = new_photos.filter(pl.col("day_index") == d)
        statuses = day_photos["image_status"]
        day_counts = dict(day.corruptions)
        day_counts["image_truncated"] = int((statuses == "truncated").sum())
        day_counts["image_not_an_image"] = int((statuses == "not_an_image").sum())
        for kind, count in day_counts.items():
            if count == 0 and kind.startswith("image_"):
                continue
            t = day.truncated_file if kind == "truncated_file" else None
            corruption_rows.append(
                {
                    "day": day.date,
                    "kind": kind,
                    "count": count,
                    "key": t.key if t else None,
                    "lines_written": t.lines_written if t else None,
                    "lines_readable": t.lines_readable if t else None,
                }
            )
        if day.truncated_file:
            info = dataclasses.asdict(day.truncated_file)
            truncated.append({"day": day.date.isoformat(), **info})
        day_stats.append(
            {
                "day_index": d,
                "date": day.date.isoformat(),
                "events": day.events,
                "lines": day.lines,
                "files": sorted(day.files),
                "bytes": written,
                "photos": day_photos.height,
                "corruptions": day_counts,
            }
        )
        _emit(progress, "events", i + 1, len(days))

    _write_ground_truth(config, store, gt, photos, corruption_rows, day_stats, truncated, previous)
    totals: dict[str, int] = {}
    for row in corruption_rows:
        totals[row["kind"]] = totals.get(row["kind"], 0) + row["count"]
    return WorldSummary(
        days=[config.date_of(d) for d in days],
        users=users.height,
        photos=new_photos.height,
        events=lines,
        bytes_written=event_bytes + image_bytes,
        corruptions=totals,
        images=new_photos.height,
        event_files=event_files,
        annotations=n_annotations,
    )


def _write_annotations(
    config: WorldConfig, days: range, new_photos: pl.DataFrame, engine: Any
) -> int:
    """The simulated labelling vendor's answers and gold items for the new days' photos."""
    total = 0
    for d in days:
        ann, gold = vendor_annotations(config.seed, d, new_photos.filter(pl.col("day_index") == d))
        total += oltp.insert_frame(engine, oltp.annotations_table, ann, oltp.ANNOTATION_COLUMNS)
        oltp.insert_frame(engine, oltp.gold_table, gold, oltp.GOLD_COLUMNS)
    logger.info("vendor annotations: %d for %d day(s)", total, len(days))
    return total


def _write_images(
    config: WorldConfig,
    days: range,
    photos: pl.DataFrame,
    store: ObjectStore,
    progress: Progress | None,
) -> int:
    """Render, encode and put every photo of ``days``; broken ones as the truth says."""
    total, done, written = photos.height, 0, 0
    _emit(progress, "images", 0, total)
    for d in days:
        day = photos.filter(pl.col("day_index") == d)
        rng = day_rng(config.seed, d, STREAM_IMAGES)
        for start in range(0, day.height, _IMAGE_BATCH):
            batch = day.slice(start, _IMAGE_BATCH)
            pixels = render_images(
                rng, batch["image_class"].to_numpy(), batch["quality"].to_numpy()
            )
            for px, pid, key, status in zip(
                pixels, batch["photo_id"], batch["object_key"], batch["image_status"], strict=True
            ):
                data = broken_payload(encode_jpeg(px), status, pid)
                store.put_bytes(key, data)
                written += len(data)
            done += batch.height
            _emit(progress, "images", done, total)
    return written


def _put_truth(store: ObjectStore, gt: Path | None, name: str, data: bytes) -> None:
    """One truth file into the store, and into the local copy when there is one."""
    store.put_bytes(truth_key(name), data)
    if gt is not None:
        with atomic_path(gt / name) as tmp:
            tmp.write_bytes(data)


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf)
    return buf.getvalue()


def _write_ground_truth(
    config: WorldConfig,
    store: ObjectStore,
    gt: Path | None,
    photos: pl.DataFrame,
    corruption_rows: list[dict[str, Any]],
    day_stats: list[dict[str, Any]],
    truncated: list[dict[str, Any]],
    previous: dict[str, Any] | None,
) -> None:
    truth = photos.select(
        "photo_id",
        "user_id",
        "uploaded_at",
        pl.col("day_index"),
        pl.col("image_class").alias("image_class_id"),
        pl.col("image_class")
        .replace_strict(list(range(len(CLASSES))), list(CLASSES), return_dtype=pl.String)
        .alias("image_class"),
        "quality",
        "hot_words",
        "cold_words",
        "latent_score",
        "expected_rate",
        "image_status",
    )
    _put_truth(store, gt, PHOTOS_PARQUET, _parquet_bytes(truth))

    schema = {
        "day": pl.Date,
        "kind": pl.String,
        "count": pl.Int64,
        "key": pl.String,
        "lines_written": pl.Int64,
        "lines_readable": pl.Int64,
    }
    new = pl.DataFrame(corruption_rows, schema=schema)
    old = read_truth_bytes(store, CORRUPTIONS_PARQUET) if previous is not None else None
    if old is not None:
        new = pl.concat([pl.read_parquet(io.BytesIO(old)).cast(schema), new])  # type: ignore[arg-type]
    _put_truth(store, gt, CORRUPTIONS_PARQUET, _parquet_bytes(new.sort("day", "kind")))

    prev_stats = list(previous["day_stats"]) if previous else []
    prev_trunc = list(previous["truncated_files"]) if previous else []
    all_stats = prev_stats + day_stats
    world = {
        "format_version": FORMAT_VERSION,
        "config": config.to_json(),
        "days": [s["date"] for s in all_stats],
        "day_stats": all_stats,
        "classes": list(CLASSES),
        "popularity": POPULARITY.to_json(),
        "popularity_description": POPULARITY_DESCRIPTION,
        "corruption_kinds": [*LINE_KINDS, "truncated_file", *IMAGE_KINDS],
        "valid_corruption_kinds": sorted(VALID_KINDS),
        "quarantine_reasons": QUARANTINE_REASONS,
        "truncated_files": prev_trunc + truncated,
    }
    # world.json last: its presence is what marks a world as complete and existing
    text = json.dumps(world, indent=2, sort_keys=False) + "\n"
    _put_truth(store, gt, WORLD_JSON, text.encode())
