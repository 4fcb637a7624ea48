"""The day's ingest: every landed line of a day ends in the loaded events or the quarantine."""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas  # noqa: F401 - pyarrow imports it on its first pa.array(): at import, not mid-ingest
import pyarrow as pa
import pyarrow.compute as pc

from my_data_platform.core.events.contract import (
    DEFAULT_LIMITS,
    EVENTS_SCHEMA,
    QUARANTINE_SCHEMA,
    REQUIRED_FIELDS,
    LandingLimits,
)
from my_data_platform.core.events.decode import DecodedLines, _take_lines
from my_data_platform.core.events.dedup import (
    _Deduplicator,
    _EventIds,
    _Screened,
    _sorted_id_hashes,
)
from my_data_platform.core.events.failures import (
    _describe,
    _file_errors,
    _FileError,
    _name_problem,
    _of_object,
    _read_failure,
)
from my_data_platform.core.events.validate import _check_file, _in_line_order


@dataclass
class IngestStats:
    """Counts for one landing day; ``landed_lines == loaded + quarantined`` always holds."""

    files: int = 0
    landed_lines: int = 0
    loaded: int = 0
    quarantined: int = 0
    duplicates: int = 0
    file_errors: int = 0
    extra_field_lines: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class IngestResult:
    """Validated events, the quarantine (line- and file-level) and the reconciliation counts."""

    events: pa.Table | None
    """Every loaded row; ``None`` when they were only handed to a sink (``keep_events=False``)."""
    quarantine: pa.Table
    stats: IngestStats
    preview: pa.Table
    """The day's first loaded rows (at most ``PREVIEW_ROWS``), a copy of their own."""


PREVIEW_ROWS = 5


class _KnownIds:
    """Membership in a set of ids, through a dense lookup table when the ids allow one."""

    @classmethod
    def of(cls, ids: np.ndarray | pa.Array | pa.ChunkedArray | None) -> _KnownIds | None:
        """The set of ``ids``; None (no check) when no ids are given."""
        if ids is None:
            return None
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks()
        if not isinstance(ids, pa.Array):
            ids = pa.array(np.asarray(ids))
        return cls(ids.cast(pa.int64()))

    def __init__(self, known: pa.Array) -> None:
        self.known = known
        self.table: np.ndarray | None = None
        values = known.drop_null().to_numpy()
        if values.size:
            lo, hi = int(values.min()), int(values.max())
            if hi - lo < max(1 << 16, 8 * values.size):
                self.lo, self.hi = lo, hi
                self.table = np.zeros(hi - lo + 2, dtype=bool)
                self.table[values - lo] = True  # the last slot stays False: misses land there

    def contains(self, ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """``ids`` in the set (nulls are not)."""
        if self.table is None:
            return pc.is_in(ids, value_set=self.known).to_numpy(zero_copy_only=False)
        col = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        lo, hi = self.lo, self.hi
        if col.null_count:
            got = col.fill_null(lo).to_numpy()
            inside = (got >= lo) & (got <= hi) & col.is_valid().to_numpy(zero_copy_only=False)
        else:
            got = col.to_numpy()
            inside = (got >= lo) & (got <= hi)
        with np.errstate(over="ignore"):
            pos = np.where(inside, got - lo, hi - lo + 1)
        return self.table[pos]


Ids = np.ndarray | pa.Array | pa.ChunkedArray | None
"""A set of known ids, or None for no check."""


class _IdSets:
    """The known user and photo ids, given as values or as functions that read them.

    The ingesting thread resolves them once, after the workers have started on the first
    files, so reading them (a database query) overlaps with inflating and parsing; a worker
    that reaches its id checks first waits for them.
    """

    def __init__(self, users: Ids | Callable[[], Ids], photos: Ids | Callable[[], Ids]) -> None:
        self._given = (users, photos)
        self._sets: Future[tuple[_KnownIds | None, _KnownIds | None]] = Future()

    def resolve(self) -> None:
        try:
            users, photos = (g() if callable(g) else g for g in self._given)
            self._sets.set_result((_KnownIds.of(users), _KnownIds.of(photos)))
        except BaseException as exc:
            self._sets.set_exception(exc)
            raise

    def get(self) -> tuple[_KnownIds | None, _KnownIds | None]:
        return self._sets.result()


#: Reasons the id checks give, by code (0: none, the SQL reason stands).
_LATE_REASONS = ("", "unknown_user", "unknown_photo")
_UNKNOWN_USER, _UNKNOWN_PHOTO = 1, 2


def _long_line_columns(lines: DecodedLines, rids: np.ndarray) -> dict[str, pa.Array]:
    """``length``, ``sha256`` and ``offset`` of rows ``rids``: set for the too-long lines."""
    n, long = rids.size, lines.long_lines
    if long.rid.size == 0 or n == 0:
        return {
            "length": pa.nulls(n, pa.int64()),
            "sha256": pa.nulls(n, pa.string()),
            "offset": pa.nulls(n, pa.int64()),
        }
    at = np.minimum(np.searchsorted(long.rid, rids), long.rid.size - 1)
    miss = long.rid[at] != rids
    digests = np.asarray(long.sha256, dtype=object)[at]
    return {
        "length": pa.array(long.length[at], pa.int64(), mask=miss),
        "sha256": pa.array(digests, pa.string(), mask=miss),
        "offset": pa.array(long.offset[at], pa.int64(), mask=miss),
    }


def _quarantine_rows(
    name: str, landing_date: dt.date, lines: DecodedLines, rids: np.ndarray, reason: pa.Array
) -> pa.Table:
    n = rids.size
    return pa.table(
        {
            "landing_date": pa.repeat(pa.scalar(landing_date, pa.date32()), n),
            "source_file": pa.repeat(pa.scalar(name, pa.string()), n),
            "line_no": pa.array(lines.line_no.to_numpy()[rids], pa.int64()),
            "raw": _take_lines(lines.lines, rids),
            "reason": reason,
            "detail": pa.nulls(n, pa.string()),
            **_long_line_columns(lines, rids),
        },
        schema=QUARANTINE_SCHEMA,
    )


def _screen(
    name: str,
    data: bytes | Callable[[], bytes],
    landing_date: dt.date,
    ids: _IdSets,
    db: duckdb.DuckDBPyConnection,
    limits: LandingLimits,
) -> _Screened | _FileError:
    """Everything per file that needs no other file: runs in the worker threads.

    A file that cannot be read or decoded is one ``_FileError``: no file stops the day.
    """
    try:
        raw = data() if callable(data) else data
    except Exception as exc:  # any reason one file cannot be read
        return _read_failure(name, exc)
    try:
        c = _check_file(name, raw, db, limits)
    except Exception as exc:  # a file the checks cannot take, whatever the cause
        return _of_object(name, "undecodable_file", _describe(exc), raw)
    error = None
    if c.lines.error is not None:
        error = _of_object(name, c.lines.error_reason, c.lines.error, raw)
    del raw
    users, photos = ids.get()
    ok = np.ones(c.rid.size, dtype=bool)
    late = np.zeros(c.rid.size, dtype=np.int8)
    for code, column, known in (
        (_UNKNOWN_USER, "user_id", users),
        (_UNKNOWN_PHOTO, "photo_id", photos),
    ):
        if known is None:
            continue
        miss = ok & ~known.contains(c.fields.column(column))
        late[miss] = code
        ok &= ~miss
    fields, valid_rid, id_hash, kept = c.fields, c.rid, c.id_hash, None
    if not ok.all():  # a few rows out of many: slices, not a copy
        kept = np.flatnonzero(ok)
        fields = _without_rows(fields, np.flatnonzero(~ok))
        valid_rid, id_hash = valid_rid[kept], id_hash[kept]
    event_ids = _EventIds(c.fields.column("event_id").combine_chunks(), kept)  # one chunk
    n_good = valid_rid.size
    events = pa.Table.from_arrays(
        [
            *fields.columns,
            pa.repeat(pa.scalar(landing_date, pa.date32()), n_good),
            pa.repeat(pa.scalar(name, pa.string()), n_good),
            pa.array(c.lines.line_no.to_numpy()[valid_rid], pa.int64()),
        ],
        schema=EVENTS_SCHEMA,
    )
    unknown = ~ok
    bad_rid, reason = _in_line_order(
        c.bad_rid,
        c.bad_reason,
        c.rid[unknown],
        pa.array(np.asarray(_LATE_REASONS, dtype=object)[late[unknown]], pa.string()),
    )
    sorted_hashes, order = _sorted_id_hashes(id_hash)
    return _Screened(
        name=name,
        lines=c.lines,
        events=events,
        valid_rid=valid_rid,
        quarantine=_quarantine_rows(name, landing_date, c.lines, bad_rid, reason),
        event_ids=event_ids,
        sorted_hashes=sorted_hashes,
        order=order,
        extra_field_lines=c.extra_field_lines,
        file_error=error,
    )


def _without_rows(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """``table`` less the ascending ``rows``, as zero-copy slices of it (no column is copied
    to drop the few duplicates of a file)."""
    bounds = np.concatenate([[-1], rows, [table.num_rows]]).tolist()
    pieces = [table.slice(a + 1, b - a - 1) for a, b in itertools.pairwise(bounds) if b - a > 1]
    return pa.concat_tables(pieces) if pieces else table.slice(0, 0)


def _settle(s: _Screened, dup: np.ndarray, landing_date: dt.date) -> tuple[pa.Table, pa.Table]:
    """The file's loaded rows and quarantine, once its duplicates (rows of ``s.events``) are
    known: duplicates join the quarantine, in line order, with reason ``duplicate``."""
    if dup.size == 0:
        return s.events, s.quarantine
    dq = _quarantine_rows(
        s.name,
        landing_date,
        s.lines,
        s.valid_rid[dup],
        pa.array(["duplicate"] * dup.size, pa.string()),
    )
    quarantine = pa.concat_tables([s.quarantine, dq])
    quarantine = quarantine.take(pc.sort_indices(quarantine, [("line_no", "ascending")]))
    return _without_rows(s.events, dup), quarantine


def _done(value: _FileError) -> Future[_Screened | _FileError]:
    f: Future[_Screened | _FileError] = Future()
    f.set_result(value)
    return f


EventsSink = Callable[[pa.Table], None]


def ingest_day(
    files: Iterable[tuple[str, bytes | Callable[[], bytes]]],
    landing_date: dt.date,
    known_user_ids: Ids | Callable[[], Ids],
    known_photo_ids: Ids | Callable[[], Ids],
    sink: EventsSink | None = None,
    *,
    keep_events: bool = True,
    limits: LandingLimits = DEFAULT_LIMITS,
) -> IngestResult:
    """Validate and deduplicate one landed day; every landed line is loaded or quarantined.

    Files are processed in name order, so "first occurrence" of an event_id is the same on
    every rerun regardless of the order the object store listed them in. Two worker threads
    validate files side by side; as each file is done (in order) its duplicates are settled
    and its loaded rows go to ``sink`` (for example a Parquet writer), which runs on a thread
    of its own while the next files are still being validated. A failing sink fails the day.
    A file's bytes may be given as a function that reads them: the worker then reads the file
    just before validating it, so reading overlaps validation and only the files in flight
    are held in memory. The known ids may likewise be functions that read them; they are
    called once, while the first files are being validated. With ``keep_events=False`` (only
    with a sink) loaded rows are not kept once handed to the sink, so memory is that of the
    files in flight rather than of the whole day; ``IngestResult.preview`` still shows the
    first of them.

    No single file stops the day: a file with an invalid name (not a valid object key), a
    second file whose name is the same after NFC normalisation, one that cannot be read, is
    over ``limits``, is cut short or cannot be decoded becomes one quarantine record with its
    reason, and the other files load.
    """
    if not keep_events and sink is None:
        raise ValueError("keep_events=False needs a sink: the loaded rows would be lost")
    ordered = sorted(files, key=lambda f: f[0])
    ids = _IdSets(known_user_ids, known_photo_ids)
    dedup = _Deduplicator()
    events_parts: list[pa.Table] = []
    preview: pa.Table | None = None
    quarantine_parts: list[pa.Table] = []
    errors: list[_FileError] = []
    stats = IngestStats(files=len(ordered))
    workers = min(2, os.cpu_count() or 1, max(1, len(ordered)))
    with (
        duckdb.connect(":memory:", config={"threads": 1}) as db,
        ThreadPoolExecutor(max_workers=workers) as pool,
        ThreadPoolExecutor(max_workers=1) as writer,
    ):
        db.execute("SET GLOBAL TimeZone = 'UTC'")  # naive timestamps are read as UTC
        seen: set[str] = set()
        pending = collections.deque(
            _done(problem)
            if (problem := _name_problem(name, seen))
            else pool.submit(_screen, name, data, landing_date, ids, db, limits)
            for name, data in ordered
        )
        del ordered
        try:
            ids.resolve()
        except BaseException:
            pool.shutdown(cancel_futures=True)  # files not started yet are not validated
            raise
        written: list[Future[None]] = []
        while pending:  # a future keeps its result: drop each once consumed
            s = pending.popleft().result()
            if isinstance(s, _FileError):
                errors.append(s)
                continue
            dup = dedup.add(s)
            events, quarantine = _settle(s, dup, landing_date)
            stats.landed_lines += len(s.lines.lines)
            stats.duplicates += int(dup.size)
            stats.extra_field_lines += s.extra_field_lines
            if s.file_error is not None:
                errors.append(s.file_error)
            del s
            for col in REQUIRED_FIELDS:
                assert events.column(col).null_count == 0, f"valid row without {col}"
            stats.loaded += events.num_rows
            if preview is None and events.num_rows:
                # a copy: a slice would keep the whole file's buffers alive
                preview = events.take(np.arange(min(PREVIEW_ROWS, events.num_rows)))
            if keep_events:
                events_parts.append(events)
            quarantine_parts.append(quarantine)
            if sink is not None:
                written.append(writer.submit(sink, events))
            del events
        for w in written:
            w.result()

    events = None
    if keep_events:
        events = pa.concat_tables(events_parts) if events_parts else EVENTS_SCHEMA.empty_table()
        assert events.num_rows == stats.loaded
    lines_q = (
        pa.concat_tables(quarantine_parts) if quarantine_parts else QUARANTINE_SCHEMA.empty_table()
    )
    counts = pc.value_counts(lines_q.column("reason")).to_pylist() if lines_q.num_rows else []
    stats.quarantined = lines_q.num_rows
    stats.file_errors = len(errors)
    stats.reasons = dict(sorted((c["values"], c["counts"]) for c in counts))
    assert stats.landed_lines == stats.loaded + stats.quarantined, "ingest does not reconcile"
    quarantine = pa.concat_tables([lines_q, _file_errors(errors, landing_date)])
    return IngestResult(
        events=events,
        quarantine=quarantine,
        stats=stats,
        preview=EVENTS_SCHEMA.empty_table() if preview is None else preview,
    )
