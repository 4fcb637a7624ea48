"""One day of user-activity logs, generated, serialized and gzipped like the landed files.

The hot path of ``mdp seed``: no Python loop touches a row. Notes: ``docs/ingest.md``.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from my_data_platform.synth.lines import (
    EVENT_TYPES,
    LineBuilder,
    TruncatedFile,
    gzip_lines,
    truncated_gzip,
)
from my_data_platform.synth.population import (
    POPULARITY,
    SECONDS_PER_DAY,
    STREAM_EVENT_CORRUPT,
    PopularityParams,
    day_rng,
)
from my_data_platform.synth.sampling import (
    BUCKET_SECONDS,
    Buckets,
    chunk_rng,
    decay,
    eligible_photos,
    event_columns,
    sample_index,
)

if TYPE_CHECKING:
    from my_data_platform.core.objectstore import ObjectStore
    from my_data_platform.synth.config import WorldConfig

__all__ = [
    "BUCKET_SECONDS",
    "EVENT_TYPES",
    "LINE_KINDS",
    "QUARANTINE_REASONS",
    "VALID_KINDS",
    "EventDay",
    "TruncatedFile",
    "day_folder",
    "decay",
    "event_file_key",
    "generate_event_day",
    "sample_index",
    "write_event_day",
]

LATE_WINDOW_SECONDS = 3600
TRUNCATED_PART = 99999
DRIFT_FIELD = ',"app_version":"9.1"'
UNKNOWN_ID_BASE = 900_000_000

# Line-level corruption kinds, in the order their rows are drawn. ``late`` and
# ``schema_drift`` are valid lines; the others must be quarantined by the validator.
LINE_KINDS: tuple[str, ...] = (
    "malformed_json",
    "wrong_type",
    "missing_field",
    "unknown_user",
    "unknown_photo",
    "duplicate",
    "late",
    "schema_drift",
)
VALID_KINDS: frozenset[str] = frozenset({"late", "schema_drift"})
QUARANTINE_REASONS: dict[str, str] = {
    "malformed_json": "malformed_json",
    "wrong_type": "wrong_type:user_id",
    "missing_field": "missing_field:event_type",
    "unknown_user": "unknown_user",
    "unknown_photo": "unknown_photo",
    "duplicate": "duplicate",
    "truncated_file": "truncated_file",
}


@dataclass
class EventDay:
    """One generated day: gzip payloads by landing key, and what went into them."""

    day_index: int
    date: datetime.date
    files: dict[str, bytes]
    events: int
    """Distinct events generated (including late ones and those in the truncated file)."""
    lines: int
    """Lines written over all files: events plus duplicates."""
    corruptions: dict[str, int] = field(default_factory=dict)
    truncated_file: TruncatedFile | None = None

    @property
    def bytes(self) -> int:
        return sum(len(b) for b in self.files.values())


def day_folder(date: datetime.date) -> str:
    return f"landing/events/date={date.isoformat()}"


def event_file_key(date: datetime.date, part: int) -> str:
    return f"{day_folder(date)}/part-{part:05d}.jsonl.gz"


def _split_counts(total: int, kinds: Iterable[str]) -> dict[str, int]:
    kinds = list(kinds)
    base, rem = divmod(total, len(kinds))
    return {k: base + (1 if i < rem else 0) for i, k in enumerate(kinds)}


def _file_slices(n: int, files: int) -> list[slice]:
    return [slice(i * n // files, (i + 1) * n // files) for i in range(files)]


def generate_event_day(
    config: WorldConfig,
    day_index: int,
    photos_df: pl.DataFrame,
    users_df: pl.DataFrame,
    *,
    threads: int = 2,
    params: PopularityParams = POPULARITY,
) -> EventDay:
    """Generate, serialize and gzip one day of events (nothing is written).

    ``photos_df`` may hold photos of any days (only those uploaded before a bucket count), so
    a day's bytes depend only on ``(config, day_index)`` and the photos uploaded so far. The
    day's generator (``[seed, day]``) splits events over buckets; file ``i`` then covers a
    contiguous range of buckets with its own generator, so files are built in parallel and
    the output does not depend on ``threads``.
    """
    date = config.start_date + datetime.timedelta(days=day_index)
    day_start = day_index * SECONDS_PER_DAY
    photos = eligible_photos(photos_df, day_start + SECONDS_PER_DAY)
    rng = np.random.default_rng([config.seed, day_index])
    crng = day_rng(config.seed, day_index, STREAM_EVENT_CORRUPT)
    corrupt = config.corrupt_rate > 0
    kinds = [k for k in LINE_KINDS if day_index > 0 or k != "late"]
    n_bad = round(config.corrupt_rate * config.events_per_day)
    plan = _split_counts(n_bad, kinds) if corrupt else {}

    n_buckets = SECONDS_PER_DAY // BUCKET_SECONDS
    buckets = Buckets(photos, day_start + BUCKET_SECONDS * np.arange(n_buckets), day_start, params)
    counts = buckets.counts(rng, config.events_per_day - plan.get("late", 0))
    files = config.files_per_day
    bounds = [i * n_buckets // files for i in range(files + 1)]
    offsets = np.concatenate([[0], np.cumsum(counts)])[bounds]

    late: dict[str, np.ndarray] | None = None
    if plan.get("late"):
        n_late_b = LATE_WINDOW_SECONDS // BUCKET_SECONDS
        late_b = Buckets(
            photos,
            day_start - LATE_WINDOW_SECONDS + BUCKET_SECONDS * np.arange(n_late_b),
            day_start,
            params,
        )
        late_counts = late_b.counts(crng, plan["late"])
        lidx, lts = late_b.sample(crng, late_counts, 0, n_late_b)
        late = event_columns(crng, photos, users_df, lidx, lts, params, seq0=0)
        plan["late"] = len(lidx)
    n_late = plan.get("late", 0)

    builder = LineBuilder(
        date,
        config.start_date,
        day_start - LATE_WINDOW_SECONDS,
        SECONDS_PER_DAY + LATE_WINDOW_SECONDS,
    )

    def chunk(i: int) -> tuple[dict[str, np.ndarray], pl.Series | bytes]:
        crng_i = chunk_rng(config.seed, day_index, i)
        idx, ts = buckets.sample(crng_i, counts, bounds[i], bounds[i + 1])
        cols = event_columns(
            crng_i, photos, users_df, idx, ts, params, seq0=n_late + int(offsets[i])
        )
        lines = builder.build(cols, slice(0, len(idx)))
        return (cols, lines) if corrupt else ({}, gzip_lines(lines))

    keys = [event_file_key(date, i) for i in range(files)]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = list(pool.map(chunk, range(files)))
        if not corrupt:
            payloads = [r[1] for r in results]
            n = int(offsets[-1])
            return EventDay(day_index, date, dict(zip(keys, payloads, strict=True)), n, n)
        parts = ([late] if late is not None else []) + [r[0] for r in results]
        cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        line_parts = [r[1] for r in results]
        if late is not None:
            line_parts.insert(0, builder.build(late, slice(0, n_late)))
        lines = pl.concat(line_parts)
        lines, order, found, trunc_rows = _corrupt(crng, cols, lines, n_late, plan, builder)
        final = lines.gather(order)
        payloads = list(
            pool.map(
                lambda sl: gzip_lines(final.slice(sl.start, sl.stop - sl.start)),
                _file_slices(len(final), files),
            )
        )
    out = dict(zip(keys, payloads, strict=True))
    truncated = None
    if len(trunc_rows):
        key = event_file_key(date, TRUNCATED_PART)
        out[key], truncated = truncated_gzip(key, lines.gather(trunc_rows))
        found["truncated_file"] = 1
    return EventDay(
        day_index,
        date,
        out,
        events=len(lines),
        lines=len(order) + len(trunc_rows),
        corruptions=found,
        truncated_file=truncated,
    )


def _corrupt(
    rng: np.random.Generator,
    cols: dict[str, np.ndarray],
    lines: pl.Series,
    n_late: int,
    plan: dict[str, int],
    builder: LineBuilder,
) -> tuple[pl.Series, np.ndarray, dict[str, int], np.ndarray]:
    """Apply line-level corruptions to disjoint rows; returns the lines, the output row order
    (with duplicates inserted and truncated-file rows removed), exact counts and the rows that
    go to the truncated file."""
    n = len(lines)
    pool_size = n - n_late
    n_trunc = min(max(n // 200, 4), 2000, pool_size // 4)
    wanted = {k: v for k, v in plan.items() if k != "late"}
    budget = max(0, pool_size - n_trunc) // 2
    if sum(wanted.values()) > budget:  # tiny days: scale every kind down alike
        scale = budget / max(1, sum(wanted.values()))
        wanted = {k: int(v * scale) for k, v in wanted.items()}
    picks = rng.choice(pool_size, sum(wanted.values()) + n_trunc, replace=False) + n_late
    rows: dict[str, np.ndarray] = {}
    off = 0
    for kind, k in wanted.items():
        rows[kind] = np.sort(picks[off : off + k])
        off += k
    trunc_rows = np.sort(picks[off:])

    line = pl.col("line")
    cut = (line.str.len_bytes() - 2).cast(pl.Float64) * (0.3 + 0.6 * pl.col("u"))
    rewrites: dict[str, pl.Expr] = {
        # any proper prefix of a JSON object is invalid JSON
        "malformed_json": pl.concat_str([line.str.slice(0, cut.cast(pl.Int64)), pl.lit("\n")]),
        "wrong_type": line.str.replace(r'"user_id":(\d+)', '"user_id":"$1"'),
        "missing_field": line.str.replace(r'"event_type":"[a-z]+",', ""),
        "schema_drift": pl.concat_str([line.str.strip_suffix("}\n"), pl.lit(DRIFT_FIELD + "}\n")]),
    }
    for kind, expr in rewrites.items():
        r = rows.get(kind)
        if r is not None and len(r):
            sub = pl.DataFrame({"line": lines.gather(r), "u": rng.random(len(r))})
            lines = lines.scatter(r, sub.select(expr).to_series())
    for kind, column in (("unknown_user", "user_id"), ("unknown_photo", "photo_id")):
        r = rows.get(kind)
        if r is not None and len(r):
            sub_cols = {k: v[r] for k, v in cols.items()}
            sub_cols[column] = UNKNOWN_ID_BASE + rng.integers(0, 99_999_999, len(r))
            lines = lines.scatter(r, builder.build(sub_cols, slice(0, len(r))))

    keep = np.ones(n, bool)
    keep[trunc_rows] = False
    order = np.flatnonzero(keep)
    src = rows.get("duplicate", np.zeros(0, np.int64))
    if len(src):
        pos = np.searchsorted(order, src) + 1 + rng.integers(0, 50, len(src))
        order = np.insert(order, np.minimum(pos, len(order)), src)
    counts = {k: len(v) for k, v in rows.items()}
    if n_late:
        counts["late"] = n_late
    return lines, order, counts, trunc_rows


def write_event_day(day: EventDay, store: ObjectStore) -> int:
    """Publish a day's files (each write is atomic); returns the bytes written."""
    for key, data in day.files.items():
        store.put_bytes(key, data)
    return day.bytes
