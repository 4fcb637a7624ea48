"""One day of user-activity logs: sampled with numpy, serialized with Polars, gzipped with ISA-L.

This is the hot path of ``mdp seed`` (millions of lines per day), so no Python loop touches a
row: loops run over 15-minute buckets, corruption kinds and files only.

* Sampling. The day is cut into 96 buckets. A bucket's events go to photos uploaded before the
  bucket starts, with weights ``expected_rate * decay(age)`` (``searchsorted`` over cumulative
  weights), so every event is strictly after its photo's upload. Timestamps inside a bucket are
  sorted uniform order statistics (normalized exponential spacings), so lines come out in time
  order without a sort.
* Serialization. Each line is one ``concat_str`` of pre-rendered fragments: constant JSON glue,
  gathered lookup tables (event type, client, the ``ts`` second and millisecond) and integer
  casts. Every line ends with ``\\n``, so the Arrow data buffer of the string column *is* the
  file body and goes to the compressor without another copy.
* Compression. ``isal.igzip`` at level 1 (standard gzip, ``mtime=0`` for byte-identical
  output), one task per file in a thread pool; both Polars and ISA-L release the GIL.
"""

from __future__ import annotations

import datetime
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import isal.isal_zlib
import numpy as np
import polars as pl
import pyarrow as pa

from my_data_platform.synth.population import (
    CLIENTS,
    POPULARITY,
    SECONDS_PER_DAY,
    STREAM_CHUNKS,
    STREAM_EVENT_CORRUPT,
    PopularityParams,
    day_rng,
)

if TYPE_CHECKING:
    from my_data_platform.core.objectstore import ObjectStore
    from my_data_platform.synth.world import WorldConfig

EVENT_TYPES: tuple[str, ...] = ("view", "like", "comment", "share")
BUCKET_SECONDS = 900
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

_COMPRESS_LEVEL = 1


@dataclass(frozen=True)
class TruncatedFile:
    """The one cut-off gzip file of a corrupted day.

    The file is compressed with a full flush after ``lines_readable`` lines and cut exactly
    at that flush point, so every gzip reader recovers exactly those complete lines (and then
    fails on the missing end of stream); the remaining lines are lost.
    """

    key: str
    lines_written: int
    lines_readable: int
    bytes_full: int
    bytes_kept: int


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


def decay(age_hours: np.ndarray, params: PopularityParams = POPULARITY) -> np.ndarray:
    """Relative engagement intensity of a photo ``age_hours`` after upload."""
    w = params.decay_slow_weight
    return (1 - w) * np.exp(-age_hours / params.decay_fast_hours) + w * np.exp(
        -age_hours / params.decay_slow_hours
    )


def _diurnal(starts_s: np.ndarray) -> np.ndarray:
    """Activity by time of day: low at night, peak around 20:00 UTC."""
    hour = (starts_s % SECONDS_PER_DAY + BUCKET_SECONDS / 2) / 3600.0
    return 0.55 + 0.45 * np.cos(2 * np.pi * (hour - 20.0) / 24.0)


@dataclass
class _Photos:
    """Photos eligible for one day, as plain arrays sorted by upload time."""

    photo_id: np.ndarray
    upload_s: np.ndarray
    rate: np.ndarray
    quality: np.ndarray


class _Buckets:
    """Photo weights of consecutive 15-minute buckets, without an ``exp`` per bucket.

    ``rate * decay(t - upload)`` is a sum of two exponentials, so it factors into a per-photo
    term (computed once per day, relative to ``t0`` so nothing overflows) times a per-bucket
    term: a bucket's weights are then two multiply-adds over the eligible prefix.
    """

    def __init__(
        self, photos: _Photos, starts_s: np.ndarray, t0_s: int, params: PopularityParams
    ) -> None:
        self.photos = photos
        self.starts_s = starts_s
        self.eligible = np.searchsorted(photos.upload_s, starts_s, side="left")
        rel_h = (photos.upload_s - t0_s) / 3600.0
        w = params.decay_slow_weight
        self.fast = photos.rate * (1 - w) * np.exp(rel_h / params.decay_fast_hours)
        self.slow = photos.rate * w * np.exp(rel_h / params.decay_slow_hours)
        mid_h = (starts_s + BUCKET_SECONDS / 2 - t0_s) / 3600.0
        self.f = np.exp(-mid_h / params.decay_fast_hours)
        self.g = np.exp(-mid_h / params.decay_slow_hours)
        cf = np.concatenate([[0.0], np.cumsum(self.fast)])
        cs = np.concatenate([[0.0], np.cumsum(self.slow)])
        self.totals = cf[self.eligible] * self.f + cs[self.eligible] * self.g

    def counts(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Events per bucket: the diurnal curve, damped while few photos exist (the first
        hours of a world), so early photos are not flooded."""
        top = self.totals.max() if len(self.totals) else 0.0
        if n == 0 or top <= 0:
            return np.zeros(len(self.starts_s), np.int64)
        share = _diurnal(self.starts_s) * self.totals / (self.totals + 0.1 * top)
        return rng.multinomial(n, share / share.sum())

    def sample(
        self, rng: np.random.Generator, counts: np.ndarray, b0: int, b1: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(photo index, ts in ms since start_date) for the events of buckets ``[b0, b1)``.

        Photos come from sorted uniform queries (a cache-friendly ``searchsorted``, ~8x faster
        than random ones), shuffled within the bucket; timestamps are sorted uniforms, so rows
        come out in time order without a sort.
        """
        n = int(counts[b0:b1].sum())
        nb = b1 - b0
        photo_spacing = rng.standard_exponential(n + nb)
        ts_spacing = rng.standard_exponential(n + nb)
        idx = np.empty(n, np.int64)
        ts = np.empty(n, np.int64)
        bucket_ms = BUCKET_SECONDS * 1000
        off = 0
        for j, b in enumerate(range(b0, b1)):
            k = int(counts[b])
            if k == 0:
                continue
            e = self.eligible[b]
            cum = np.cumsum(self.fast[:e] * self.f[b] + self.slow[:e] * self.g[b])
            sl = slice(off, off + k)
            spacing = slice(off + j, off + j + k + 1)
            q = _sorted_uniforms(photo_spacing[spacing]) * cum[-1]
            idx[sl] = np.minimum(np.searchsorted(cum, q, side="right"), e - 1)
            rng.shuffle(idx[sl])
            frac_ms = (_sorted_uniforms(ts_spacing[spacing]) * bucket_ms).astype(np.int64)
            ts[sl] = self.starts_s[b] * 1000 + np.minimum(frac_ms, bucket_ms - 1)
            off += k
        return idx, ts


def _sorted_uniforms(spacing: np.ndarray) -> np.ndarray:
    """``len(spacing) - 1`` sorted U(0, 1) draws: normalized exponential spacings, O(n)."""
    c = np.cumsum(spacing)
    return c[:-1] / c[-1]


def sample_index(cum: np.ndarray, u: np.ndarray, guide_size: int = 1 << 17) -> np.ndarray:
    """``searchsorted(cum, u * cum[-1], "right")`` for many unsorted ``u``, ~3x faster.

    A guide table maps each of ``guide_size`` equal slices of the total weight to its first
    candidate; a few vectorized passes then step forward to the exact answer.
    """
    total = cum[-1]
    guide = np.searchsorted(cum, np.arange(guide_size) * (total / guide_size), side="right")
    x = u * total
    idx = guide[np.minimum((u * guide_size).astype(np.int64), guide_size - 1)]
    last = len(cum) - 1
    np.minimum(idx, last, out=idx)
    todo = np.flatnonzero(cum[idx] <= x)
    while len(todo):
        todo = todo[idx[todo] < last]
        idx[todo] += 1
        todo = todo[cum[idx[todo]] <= x[todo]]
    return idx


def _split_counts(total: int, kinds: Iterable[str]) -> dict[str, int]:
    kinds = list(kinds)
    base, rem = divmod(total, len(kinds))
    return {k: base + (1 if i < rem else 0) for i, k in enumerate(kinds)}


class _LineBuilder:
    """Renders event columns into JSON lines (each ending in ``\\n``) for one day."""

    def __init__(
        self, date: datetime.date, origin: datetime.date, first_second: int, n_seconds: int
    ) -> None:
        self.id_prefix = '{"event_id":"e' + date.strftime("%Y%m%d") + "-"
        self.first_second = first_second
        start = datetime.datetime.combine(origin, datetime.time()) + datetime.timedelta(
            seconds=first_second
        )
        # one pre-rendered ``,"ts":"YYYY-MM-DDTHH:MM:SS`` per second of the window
        self.ts_table = pl.datetime_range(
            start, start + datetime.timedelta(seconds=n_seconds - 1), "1s", eager=True
        ).dt.strftime(',"ts":"%Y-%m-%dT%H:%M:%S')
        self.types = pl.Series(
            [f'","event_type":"{t}","user_id":' for t in EVENT_TYPES], dtype=pl.String
        )
        self.ms_table = pl.Series([f'.{i:03d}Z","dwell_ms":' for i in range(1000)], dtype=pl.String)
        self.clients = pl.Series([f',"client":"{c}"}}\n' for c in CLIENTS], dtype=pl.String)

    def build(self, cols: dict[str, np.ndarray], sl: slice) -> pl.Series:
        """Lines for rows ``sl`` of the columns (``seq`` numbers the event ids)."""
        ts = cols["ts"][sl]
        dwell = cols["dwell"][sl]
        df = pl.DataFrame(
            {
                "seq": cols["seq"][sl] + 1_000_000_000,
                "user_id": cols["user_id"][sl],
                "photo_id": cols["photo_id"][sl],
                "dwell": pl.Series(dwell).set(pl.Series(dwell < 0), None),
            }
        )
        return df.select(
            pl.concat_str(
                [
                    pl.lit(self.id_prefix),
                    pl.col("seq").cast(pl.String).str.slice(1),
                    pl.lit(self.types.gather(cols["etype"][sl])),
                    pl.col("user_id").cast(pl.String),
                    pl.lit(',"photo_id":'),
                    pl.col("photo_id").cast(pl.String),
                    pl.lit(self.ts_table.gather(ts // 1000 - self.first_second)),
                    pl.lit(self.ms_table.gather(ts % 1000)),
                    pl.col("dwell").cast(pl.String).fill_null("null"),
                    pl.lit(self.clients.gather(cols["client"][sl])),
                ]
            ).alias("line")
        ).to_series()


def _gzip_lines(lines: pl.Series) -> bytes:
    """Gzip the lines (each ends in ``\\n``) as one file body.

    The body is compressed in ONE call: ISA-L's output depends on how the input is split
    across calls, and Polars' buffer layout (hence the chunks) varies from run to run, so
    feeding chunks made the same world compress to different bytes now and then.
    """
    co = isal.isal_zlib.compressobj(_COMPRESS_LEVEL, isal.isal_zlib.DEFLATED, 31)
    body = b"".join(_body_chunks(lines))
    return co.compress(body) + co.flush()


def _body_chunks(lines: pl.Series) -> list[memoryview]:
    """The concatenated lines as a few zero-copy slices of Polars' string buffers.

    ``concat_str`` writes its rows back to back into a handful of data buffers, so the
    string-view export (no copy) already holds the file body; we only check that every row
    sits right after the previous one. Gathered or scattered series fail the check and take
    the copying large-string export instead.
    """
    if len(lines) == 0:
        return []
    if lines.null_count():
        raise ValueError("event lines must not be null")
    arr = lines.to_arrow(compat_level=pl.CompatLevel.newest())
    if arr.type == pa.string_view():
        bufs = arr.buffers()
        views = np.frombuffer(bufs[1], np.uint32).reshape(-1, 4)[arr.offset : arr.offset + len(arr)]
        lens = views[:, 0].astype(np.int64)
        bidx = views[:, 2].astype(np.int64)
        off = views[:, 3].astype(np.int64)
        same = bidx[1:] == bidx[:-1]
        if lens.min() > 12 and np.all(~same | (off[1:] == off[:-1] + lens[:-1])):
            starts = np.concatenate([[0], np.flatnonzero(~same) + 1])
            ends = np.concatenate([starts[1:], [len(lens)]]) - 1
            return [
                memoryview(bufs[2 + bidx[s]])[off[s] : off[e] + lens[e]]
                for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
            ]
    large = lines.to_arrow(compat_level=pl.CompatLevel.oldest())
    offsets = np.frombuffer(large.buffers()[1], np.int64)
    offsets = offsets[large.offset : large.offset + len(large) + 1]
    return [memoryview(large.buffers()[2])[int(offsets[0]) : int(offsets[-1])]]


def _truncated_file(key: str, lines: pl.Series) -> tuple[bytes, TruncatedFile]:
    """Compress ``lines`` with a full flush halfway and keep only the bytes before the flush."""
    body = b"".join(_body_chunks(lines))
    readable = len(lines) // 2
    cut = 0
    if readable:
        cut = int(lines.head(readable).str.len_bytes().sum())
    co = zlib.compressobj(6, zlib.DEFLATED, 31)
    kept = co.compress(body[:cut]) + co.flush(zlib.Z_FULL_FLUSH)
    full = kept + co.compress(body[cut:]) + co.flush()
    recovered = zlib.decompressobj(31).decompress(kept)
    if recovered != body[:cut]:  # pragma: no cover - zlib guarantees this at a full flush
        raise RuntimeError("truncated file does not decompress to its readable lines")
    info = TruncatedFile(
        key=key,
        lines_written=len(lines),
        lines_readable=recovered.count(b"\n"),
        bytes_full=len(full),
        bytes_kept=len(kept),
    )
    return kept, info


def _eligible_photos(photos_df: pl.DataFrame, until_s: int) -> _Photos:
    upload_s = photos_df["upload_s"].to_numpy()
    if len(upload_s) > 1 and np.any(np.diff(upload_s) < 0):
        photos_df = photos_df.sort("upload_s", "photo_id")
        upload_s = photos_df["upload_s"].to_numpy()
    k = int(np.searchsorted(upload_s, until_s, side="left"))
    return _Photos(
        photo_id=photos_df["photo_id"].to_numpy()[:k],
        upload_s=upload_s[:k],
        rate=photos_df["expected_rate"].to_numpy()[:k],
        quality=photos_df["quality"].to_numpy()[:k],
    )


def _event_columns(
    rng: np.random.Generator,
    photos: _Photos,
    users_df: pl.DataFrame,
    idx: np.ndarray,
    ts: np.ndarray,
    params: PopularityParams,
    seq0: int,
) -> dict[str, np.ndarray]:
    """Who did what: user, type, dwell and client for sampled (photo, ts) pairs."""
    n = len(idx)
    act = users_df["activity"].to_numpy()
    cum = np.cumsum(act)
    uidx = sample_index(cum, rng.random(n))

    q = photos.quality
    boost = np.exp(params.engagement_quality_slope * q)
    p = np.stack([params.like_base * boost, params.comment_base * boost, params.share_base * boost])
    p *= np.minimum(1.0, params.engagement_max_share / p.sum(axis=0))
    c1 = 1.0 - p.sum(axis=0)
    c2 = c1 + p[0]
    c3 = c2 + p[1]
    u = rng.random(n)
    etype = (u >= c1[idx]).astype(np.uint32)
    etype += u >= c2[idx]
    etype += u >= c3[idx]

    z = rng.standard_normal(n, dtype=np.float32)
    log_dwell = np.float32(np.log(params.dwell_median_ms)) + np.float32(params.dwell_log_sd) * z
    log_dwell += (params.dwell_quality_coef * q).astype(np.float32)[idx]
    dwell = np.exp(log_dwell).astype(np.int64)
    dwell[etype != 0] = -1

    pref = users_df["client_code"].to_numpy().astype(np.uint32)
    x = rng.integers(0, 20, n, dtype=np.uint8).astype(np.uint32)
    client = np.where(x < 17, pref[uidx], x - 17)
    return {
        "seq": np.arange(seq0, seq0 + n, dtype=np.int64),
        "etype": etype,
        "user_id": users_df["user_id"].to_numpy()[uidx],
        "photo_id": photos.photo_id[idx],
        "ts": ts,
        "dwell": dwell,
        "client": client,
    }


def _file_slices(n: int, files: int) -> list[slice]:
    return [slice(i * n // files, (i + 1) * n // files) for i in range(files)]


def _chunk_rng(seed: int, day_index: int, chunk: int) -> np.random.Generator:
    return np.random.default_rng([seed, day_index, STREAM_CHUNKS, chunk])


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
    photos = _eligible_photos(photos_df, day_start + SECONDS_PER_DAY)
    rng = np.random.default_rng([config.seed, day_index])
    crng = day_rng(config.seed, day_index, STREAM_EVENT_CORRUPT)
    corrupt = config.corrupt_rate > 0
    kinds = [k for k in LINE_KINDS if day_index > 0 or k != "late"]
    n_bad = round(config.corrupt_rate * config.events_per_day)
    plan = _split_counts(n_bad, kinds) if corrupt else {}

    n_buckets = SECONDS_PER_DAY // BUCKET_SECONDS
    buckets = _Buckets(photos, day_start + BUCKET_SECONDS * np.arange(n_buckets), day_start, params)
    counts = buckets.counts(rng, config.events_per_day - plan.get("late", 0))
    files = config.files_per_day
    bounds = [i * n_buckets // files for i in range(files + 1)]
    offsets = np.concatenate([[0], np.cumsum(counts)])[bounds]

    late: dict[str, np.ndarray] | None = None
    if plan.get("late"):
        n_late_b = LATE_WINDOW_SECONDS // BUCKET_SECONDS
        late_b = _Buckets(
            photos,
            day_start - LATE_WINDOW_SECONDS + BUCKET_SECONDS * np.arange(n_late_b),
            day_start,
            params,
        )
        late_counts = late_b.counts(crng, plan["late"])
        lidx, lts = late_b.sample(crng, late_counts, 0, n_late_b)
        late = _event_columns(crng, photos, users_df, lidx, lts, params, seq0=0)
        plan["late"] = len(lidx)
    n_late = plan.get("late", 0)

    builder = _LineBuilder(
        date,
        config.start_date,
        day_start - LATE_WINDOW_SECONDS,
        SECONDS_PER_DAY + LATE_WINDOW_SECONDS,
    )

    def chunk(i: int) -> tuple[dict[str, np.ndarray], pl.Series | bytes]:
        crng_i = _chunk_rng(config.seed, day_index, i)
        idx, ts = buckets.sample(crng_i, counts, bounds[i], bounds[i + 1])
        cols = _event_columns(
            crng_i, photos, users_df, idx, ts, params, seq0=n_late + int(offsets[i])
        )
        lines = builder.build(cols, slice(0, len(idx)))
        return (cols, lines) if corrupt else ({}, _gzip_lines(lines))

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
                lambda sl: _gzip_lines(final.slice(sl.start, sl.stop - sl.start)),
                _file_slices(len(final), files),
            )
        )
    out = dict(zip(keys, payloads, strict=True))
    truncated = None
    if len(trunc_rows):
        key = event_file_key(date, TRUNCATED_PART)
        out[key], truncated = _truncated_file(key, lines.gather(trunc_rows))
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
    builder: _LineBuilder,
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
