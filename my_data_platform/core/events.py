"""Validation and deduplication of one landed day of activity logs.

Landed files are gzip JSON Lines. Every landed line ends either in ``lake/events`` or in
``lake/events_quarantine`` with a reason, so a partition always reconciles
(landed = loaded + quarantined). The path is vectorized end to end: each file is inflated in C
(ISA-L), its line boundaries are found with numpy and the lines become an Arrow ``string_view``
array that points into the inflated buffer without copying; DuckDB then parses and validates all
lines in one SQL pass, and Polars applies the id checks and the first-wins deduplication.
"""

from __future__ import annotations

import codecs
import datetime as dt
import os
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from isal import isal_zlib

__all__ = [
    "EVENTS_SCHEMA",
    "EVENT_TYPES",
    "QUARANTINE_SCHEMA",
    "DecodedLines",
    "EventsSink",
    "IngestResult",
    "IngestStats",
    "decompress_lines",
    "ingest_day",
]

EVENT_TYPES: tuple[str, ...] = ("view", "like", "comment", "share")
REQUIRED_FIELDS: tuple[str, ...] = ("event_id", "event_type", "user_id", "photo_id", "ts", "client")
#: Every key of the event contract, in the order used for wrong_type / invalid_value.
FIELDS: tuple[str, ...] = (
    "event_id", "event_type", "user_id", "photo_id", "ts", "dwell_ms", "client",
)  # fmt: skip

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("photo_id", pa.int64(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("dwell_ms", pa.int64()),
        pa.field("client", pa.string(), nullable=False),
        pa.field("landing_date", pa.date32(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("line_no", pa.int64(), nullable=False),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("landing_date", pa.date32(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("line_no", pa.int64()),
        pa.field("raw", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
    ]
)

#: Bytes that ``bytes.strip()`` removes: a line made only of these is blank.
_WS = np.zeros(256, dtype=bool)
_WS[list(b" \t\n\r\x0b\x0c")] = True
_INLINE = 12  # Arrow string_view stores strings up to 12 bytes inside the view itself
_SEGMENT = 1 << 30  # one variadic buffer per GiB keeps every view offset inside int32
_SAFE_CHUNK = 1 << 16


class DecodedLines(NamedTuple):
    """The non-blank lines of one landed file, as inflated before any error."""

    lines: pa.Array
    """string_view, without the newline; invalid UTF-8 appears backslash-escaped."""
    line_no: pa.Array
    """int64, 1-based positions in the inflated file (blank lines keep their numbers)."""
    error: str | None
    """Why the file could not be inflated to its end; ``None`` for a clean file."""
    partial_last: bool
    """The last line was cut by the error, so it is not a complete record."""


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

    events: pa.Table
    quarantine: pa.Table
    stats: IngestStats


# ---------------------------------------------------------------------------------------------
# Inflating and splitting


def _inflate_careful(data: bytes) -> tuple[bytes, str | None]:
    """Inflate with stdlib zlib, keeping every byte produced before a corrupt spot.

    Only used after the fast path failed. Input goes in small chunks with a snapshot before
    each, and the failing chunk is replayed byte by byte, so the output stops exactly where
    the stream broke.
    """
    out: list[bytes] = []
    view = memoryview(data)
    pos, size = 0, len(data)
    while pos < size:
        if not any(view[pos:]):  # zero padding after the last member, as gzip accepts
            break
        d = zlib.decompressobj(wbits=31)
        while not d.eof:
            if pos >= size:
                return b"".join(out), "truncated: compressed stream ended before end of member"
            chunk = view[pos : pos + _SAFE_CHUNK]
            snapshot = d.copy()
            try:
                out.append(d.decompress(chunk))
                pos += len(chunk)
            except zlib.error:
                d = snapshot
                for i in range(len(chunk)):
                    try:
                        out.append(d.decompress(chunk[i : i + 1]))
                    except zlib.error as exc:
                        return b"".join(out), f"corrupt gzip data at byte {pos + i}: {exc}"
                    if d.eof:
                        pos += i + 1
                        break
                else:  # pragma: no cover - the chunk failed as a whole but not byte by byte
                    pos += len(chunk)
        pos -= len(d.unused_data)
    return b"".join(out), None


def _inflate(data: bytes) -> tuple[bytes, str | None]:
    """Inflate a possibly multi-member gzip file; return the bytes and the error, if any."""
    if not data:
        return b"", None
    try:
        d = isal_zlib.decompressobj(wbits=31)
        out = d.decompress(data)
        if d.eof and not d.unused_data:
            return out, None
    except isal_zlib.error:
        pass
    # Multi-member, padded, truncated or corrupt: the exact but slower path.
    return _inflate_careful(data)


def _blank_mask(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Lines made only of whitespace, found without touching ordinary lines twice."""
    lens = ends - starts
    blank = lens == 0
    if buf.size == 0:
        return blank
    cand = np.flatnonzero(~blank & _WS[buf[np.minimum(starts, buf.size - 1)]])
    if cand.size:
        ws = np.empty(buf.size + 1, dtype=bool)
        np.take(_WS, buf, out=ws[:-1])
        ws[-1] = False
        bounds = np.empty(cand.size * 2, dtype=np.int64)
        bounds[0::2] = starts[cand]
        bounds[1::2] = ends[cand]
        blank[cand] = np.logical_and.reduceat(ws, bounds)[0::2]
    return blank


def _bad_utf8_lines(data: bytes, ends: np.ndarray) -> np.ndarray:
    """Indices of lines that are not valid UTF-8 (a newline never sits inside a sequence)."""
    whole = pa.LargeStringArray.from_buffers(
        1, pa.py_buffer(np.array([0, len(data)], dtype=np.int64)), pa.py_buffer(data)
    )
    try:
        whole.validate(full=True)
        return np.empty(0, dtype=np.int64)
    except pa.ArrowInvalid:
        pass
    bad: list[int] = []
    view = memoryview(data)
    pos = 0
    while pos < len(data):
        try:
            codecs.utf_8_decode(view[pos:], "strict", True)
            break
        except UnicodeDecodeError as exc:
            line = int(np.searchsorted(ends, pos + exc.start, side="left"))
            bad.append(line)
            pos = int(ends[line]) + 1 if line < ends.size else len(data)
    return np.asarray(bad, dtype=np.int64)


def _string_views(
    buf: np.ndarray, starts: np.ndarray, lens: np.ndarray, first_buffer: int
) -> np.ndarray:
    """Arrow string_view structs (16 bytes each) for slices of ``buf``."""
    n = starts.size
    views = np.zeros((n, 4), dtype=np.int32)
    views[:, 0] = lens
    raw = views.view(np.uint8).reshape(n, 16)
    long = np.flatnonzero(lens > _INLINE)
    if long.size:
        s = starts[long]
        for k in range(4):
            raw[long, 4 + k] = buf[s + k]
        views[long, 2] = first_buffer + (s // _SEGMENT)
        views[long, 3] = s % _SEGMENT
    short = np.flatnonzero(lens <= _INLINE)
    if short.size:
        idx = starts[short, None] + np.arange(_INLINE)
        np.minimum(idx, max(buf.size - 1, 0), out=idx)
        inline = buf[idx] if buf.size else np.zeros(idx.shape, np.uint8)
        inline[np.arange(_INLINE)[None, :] >= lens[short, None]] = 0
        raw[short, 4:16] = inline
    return views


def _lines_array(data: bytes, starts: np.ndarray, lens: np.ndarray, bad: np.ndarray) -> pa.Array:
    """A string_view array over ``data``; lines in ``bad`` point at an escaped copy instead."""
    buf = np.frombuffer(data, dtype=np.uint8)
    segments = max(1, -(-len(data) // _SEGMENT))
    whole = pa.py_buffer(data)
    buffers = [whole.slice(k * _SEGMENT) for k in range(segments)]
    views = _string_views(buf, starts, lens, 0)
    if bad.size:
        fixed = [
            data[starts[i] : starts[i] + lens[i]].decode("utf-8", "backslashreplace").encode()
            for i in bad
        ]
        extra = b"".join(fixed)
        flens = np.fromiter((len(f) for f in fixed), dtype=np.int64, count=len(fixed))
        fstarts = np.concatenate(([0], np.cumsum(flens)[:-1])).astype(np.int64)
        views[bad] = _string_views(
            np.frombuffer(extra, dtype=np.uint8), fstarts, flens, len(buffers)
        )
        buffers += [pa.py_buffer(extra)[k * _SEGMENT :] for k in range(-(-len(extra) // _SEGMENT))]
    return pa.Array.from_buffers(
        pa.string_view(), starts.size, [None, pa.py_buffer(views), *buffers]
    )


def decompress_lines(name: str, data: bytes) -> DecodedLines:
    """Inflate one landed file and cut it into its non-blank lines, zero-copy.

    ``name`` identifies the file to callers that log per file. A file that stops early still
    yields every line that was inflated; the error says why it stopped and ``partial_last``
    marks a cut line.
    """
    text, error = _inflate(data)
    buf = np.frombuffer(text, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    has_tail = buf.size > 0 and (ends.size == 0 or ends[-1] != buf.size - 1)
    if has_tail:
        ends = np.append(ends, buf.size)
    starts = np.empty_like(ends)
    if ends.size:
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    keep = ~_blank_mask(buf, starts, ends)
    partial_last = bool(error is not None and has_tail and keep[-1])
    bad = _bad_utf8_lines(text, ends)
    line_no = np.flatnonzero(keep) + 1
    starts, ends = starts[keep], ends[keep]
    if bad.size:
        bad = np.searchsorted(line_no, bad[keep[bad]] + 1)
    lines = _lines_array(text, starts, ends - starts, bad)
    return DecodedLines(lines, pa.array(line_no, pa.int64()), error, partial_last)


# ---------------------------------------------------------------------------------------------
# Validation in one SQL pass

_KEYS_LIST = "[" + ", ".join(f"'{f}'" for f in FIELDS) + "]"
_STRUCT = "{" + ", ".join(f'"{f}": "JSON"' for f in FIELDS) + "}"
_STRING_FIELDS = ("event_id", "event_type", "ts", "client")
_INT_FIELDS = ("user_id", "photo_id", "dwell_ms")
_TS_PATTERN = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?"


def _validation_sql() -> str:
    """The validation query; every dynamic piece is a module constant, never input data.

    Each field comes out of one ``json_transform`` as its minified JSON text, so its JSON type
    is its first character. Valid rows (nearly all of them) are recognised by one short
    conjunction; only rows that fail it walk the ordered reason checks, which keeps the per-row
    cost of a clean day low.
    """
    raw = ",\n        ".join(f"j.{f}::VARCHAR AS r_{f}" for f in FIELDS)
    is_str = {f: f"starts_with(r_{f}, '\"')" for f in _STRING_FIELDS}
    is_int = {f: f"regexp_full_match(r_{f}, '-?[0-9]+')" for f in _INT_FIELDS}
    unescaped = {
        f: f"CASE WHEN contains(r_{f}, '\\') THEN json_extract_string(r_{f}, '$') "
        f"ELSE r_{f}[2:-2] END"
        for f in ("event_id", "client")
    }
    types = ", ".join(f"'\"{t}\"'" for t in EVENT_TYPES)
    ts_ok = f"regexp_full_match(r_ts, '\"{_TS_PATTERN}\"') AND ts_utc IS NOT NULL"
    ok = " AND ".join(
        [
            "pre IS NULL",
            is_str["event_id"],
            "r_event_id <> '\"\"'",
            f"r_event_type IN ({types})",
            is_int["user_id"],
            "user_id IS NOT NULL",
            is_int["photo_id"],
            "photo_id IS NOT NULL",
            ts_ok,
            "(r_dwell_ms IS NULL OR (regexp_full_match(r_dwell_ms, '[0-9]+') "
            "AND dwell_ms IS NOT NULL))",
            is_str["client"],
        ]
    )
    missing = "\n            ".join(
        f"WHEN r_{f} IS NULL THEN 'missing_field:{f}'" for f in REQUIRED_FIELDS
    )
    wrong = "\n            ".join(
        f"WHEN {'r_dwell_ms IS NOT NULL AND ' if f == 'dwell_ms' else ''}"
        f"NOT {is_str[f] if f in is_str else is_int[f]} THEN 'wrong_type:{f}'"
        for f in FIELDS
    )
    invalid = "\n            ".join(
        [
            "WHEN r_event_id = '\"\"' THEN 'invalid_value:event_id'",
            f"WHEN r_event_type NOT IN ({types}) THEN 'invalid_value:event_type'",
            "WHEN user_id IS NULL THEN 'invalid_value:user_id'",
            "WHEN photo_id IS NULL THEN 'invalid_value:photo_id'",
            f"WHEN NOT ({ts_ok}) THEN 'invalid_value:ts'",
            "WHEN r_dwell_ms IS NOT NULL AND (dwell_ms IS NULL OR dwell_ms < 0) "
            "THEN 'invalid_value:dwell_ms'",
        ]
    )
    # A valid line whose length equals the minimal serialization of its keys has no room for
    # another key (each field's text is exact for strings without escapes and for int64s);
    # every other line pays for json_keys.
    required_len = sum(len(f) + 3 for f in REQUIRED_FIELDS) + len(REQUIRED_FIELDS) + 1
    canon = " + ".join(f"strlen(r_{f})" for f in REQUIRED_FIELDS)
    dwell_len = (
        f"CASE WHEN r_dwell_ms IS NULL THEN 0 ELSE strlen(r_dwell_ms) + {len('dwell_ms') + 4} END"
    )
    ws = "' ' || chr(9) || chr(10) || chr(13)"
    return f"""
WITH parsed AS (
    SELECT rid, line,
        CASE WHEN partial THEN 'truncated_line'
             WHEN NOT json_valid(line) THEN 'malformed_json'
             WHEN NOT (starts_with(line, '{{') OR starts_with(ltrim(line, {ws}), '{{'))
                THEN 'malformed_json'
        END AS pre,
        CASE WHEN pre IS NULL THEN json_transform(line, '{_STRUCT}') END AS j
    FROM lines
), fields AS (
    SELECT rid, line, pre,
        {raw}
    FROM parsed
), typed AS (
    SELECT *,
        TRY_CAST(r_user_id AS BIGINT) AS user_id,
        TRY_CAST(r_photo_id AS BIGINT) AS photo_id,
        TRY_CAST(r_dwell_ms AS BIGINT) AS dwell_ms,
        TRY_CAST(r_ts[2:-2] AS TIMESTAMPTZ) AS ts_utc
    FROM fields
), checked AS (
    SELECT *, coalesce({ok}, false) AS ok FROM typed
)
SELECT rid,
    CASE WHEN ok THEN NULL
        WHEN pre IS NOT NULL THEN pre
            {missing}
            {wrong}
            {invalid}
    END AS reason,
    CASE WHEN ok THEN {unescaped["event_id"]} END AS event_id,
    CASE WHEN ok THEN r_event_type[2:-2] END AS event_type,
    user_id, photo_id, ts_utc, dwell_ms,
    CASE WHEN ok THEN {unescaped["client"]} END AS client,
    CASE WHEN pre IS NOT NULL THEN false
         WHEN ok AND strlen(line) = {required_len} + {canon} + {dwell_len} THEN false
         ELSE NOT list_has_all({_KEYS_LIST}, json_keys(line))
    END AS extra
FROM checked
"""  # noqa: S608


_SQL = _validation_sql()


#: Lines that match this exactly are in the canonical layout of the event contract (the keys in
#: contract order, no whitespace, no escapes, printable ASCII strings, ints short enough for
#: int64, a strict ISO timestamp): for them every check of ``_SQL`` but the timestamp cast is
#: known to pass, so they only need one typed parse (``_FAST_SQL``). Everything else, and a fast
#: line whose timestamp does not cast, goes through the full ``_SQL`` with its exact reasons.
_FAST_STR = r"[ !#-\[\]-~]"
_FAST_INT = r"-?(?:0|[1-9][0-9]{0,17})"
_FAST_RE = (
    r'^\{"event_id":"' + _FAST_STR + r'+","event_type":"(?:' + "|".join(EVENT_TYPES) + r')",'
    r'"user_id":' + _FAST_INT + r',"photo_id":' + _FAST_INT + r","
    r'"ts":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?'
    r'(?:Z|[+-][0-9]{2}:[0-9]{2})"'
    r'(?:,"dwell_ms":(?:null|0|[1-9][0-9]{0,17}))?'
    r',"client":"' + _FAST_STR + r'*"\}$'
)
_FAST_STRUCT = (
    '{"event_id": "VARCHAR", "event_type": "VARCHAR", "user_id": "BIGINT", "photo_id": "BIGINT", '
    '"ts": "VARCHAR", "dwell_ms": "BIGINT", "client": "VARCHAR"}'
)
_FAST_SQL = f"""
SELECT rid, NULL::VARCHAR AS reason, j.event_id, j.event_type, j.user_id, j.photo_id,
    TRY_CAST(j.ts AS TIMESTAMPTZ) AS ts_utc, j.dwell_ms, j.client, false AS extra
FROM (SELECT rid, json_transform(line, '{_FAST_STRUCT}') AS j FROM fast)
"""  # noqa: S608


def _run_sql(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table, sql: str) -> pa.Table:
    con.register(name, table)
    try:
        result = con.execute(sql).arrow()
        return result.read_all() if isinstance(result, pa.RecordBatchReader) else result
    finally:
        con.unregister(name)


def _check_file(name: str, data: bytes) -> tuple[DecodedLines, pa.Table]:
    """Inflate, split and validate one file; the result rows are in line order.

    Canonical lines (nearly all of a clean day) are recognised by one Rust regex in Polars and
    parsed once by a typed ``json_transform``; only the others walk the full validation SQL.
    One single-threaded DuckDB connection per file, with two files in flight: DuckDB scans an
    in-memory Arrow table on one thread, so parallelism comes from running files side by side.
    """
    dl = decompress_lines(name, data)
    n = len(dl.lines)
    lines = pl.Series("line", dl.lines)
    fast = lines.str.contains(_FAST_RE).fill_null(False).to_numpy()
    if dl.partial_last:
        fast[-1] = False
    fast_rid = np.flatnonzero(fast)
    con = duckdb.connect(":memory:", config={"threads": 1})
    try:
        con.execute("SET TimeZone = 'UTC'")  # naive timestamps are read as UTC
        parts = []
        if fast_rid.size:
            fast_in = pa.table(
                {"rid": pa.array(fast_rid), "line": lines.filter(pl.Series(fast)).to_arrow()}
            )
            done = _run_sql(con, "fast", fast_in, _FAST_SQL)
            del fast_in
            no_ts = done.column("ts_utc").is_null()
            if no_ts.null_count or pc.any(no_ts).as_py():
                fast[done.column("rid").filter(no_ts).to_numpy()] = False
                done = done.filter(pc.invert(no_ts))
            parts.append(pl.from_arrow(done))
        slow_rid = np.flatnonzero(~fast)
        if slow_rid.size or not parts:
            slow_in = pa.table(
                {
                    "rid": pa.array(slow_rid, pa.int64()),
                    "line": lines.gather(slow_rid).to_arrow(),
                    "partial": pa.array(dl.partial_last & (slow_rid == n - 1), pa.bool_()),
                }
            )
            parts.append(pl.from_arrow(_run_sql(con, "lines", slow_in, _SQL)))
    finally:
        con.close()
    checked = pl.concat(parts, how="vertical_relaxed") if len(parts) > 1 else parts[0]
    if len(parts) > 1:
        checked = checked.sort("rid")
    return dl, checked.to_arrow()


# ---------------------------------------------------------------------------------------------
# The day


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
        got = col.fill_null(lo).to_numpy()
        inside = (got >= lo) & (got <= hi) & col.is_valid().to_numpy(zero_copy_only=False)
        with np.errstate(over="ignore"):
            pos = np.where(inside, got - lo, hi - lo + 1)
        return self.table[pos]


def _take_lines(lines: pa.Array, rids: np.ndarray) -> pa.Array:
    """Rows ``rids`` of a string_view array, as plain strings.

    Arrow has no take kernel for string_view, but a view is just 16 bytes pointing into a
    buffer: gather the views and keep the buffers.
    """
    if rids.size == 0:
        return pa.array([], pa.string())
    bufs = lines.buffers()
    views = np.frombuffer(bufs[1], dtype=np.int32).reshape(-1, 4)[lines.offset :]
    picked = np.ascontiguousarray(views[rids])
    out = pa.Array.from_buffers(
        pa.string_view(), rids.size, [None, pa.py_buffer(picked), *bufs[2:]]
    )
    return out.cast(pa.string())


#: Reasons the id checks give, by code (0: none, the SQL reason stands).
_LATE_REASONS = ("", "unknown_user", "unknown_photo")
_UNKNOWN_USER, _UNKNOWN_PHOTO = 1, 2
_EVENT_COLUMNS = ["event_id", "event_type", "user_id", "photo_id", "ts_utc", "dwell_ms", "client"]


@dataclass
class _Screened:
    """One file validated and id-checked: all that is left is the cross-file duplicate check.

    ``events`` holds the lines that passed every check so far, in line order, in
    ``EVENTS_SCHEMA``; ``hashes`` are their event_ids' hashes, aligned with them.
    """

    name: str
    lines: DecodedLines
    events: pa.Table
    valid_rid: np.ndarray
    """Each row of ``events``: its index in ``lines``."""
    quarantine: pa.Table
    """The lines that failed a check, in line order, in ``QUARANTINE_SCHEMA``."""
    hashes: np.ndarray
    order: np.ndarray
    """A stable argsort of ``hashes``."""
    extra_field_lines: int


def _id_hashes(event_ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash per event_id (equal ids, equal hashes; the converse is checked)."""
    return pl.Series(event_ids).hash().to_numpy()


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
        },
        schema=QUARANTINE_SCHEMA,
    )


def _screen(
    name: str,
    data: bytes,
    landing_date: dt.date,
    users: _KnownIds | None,
    photos: _KnownIds | None,
) -> _Screened:
    """Everything per file that needs no other file: runs in the worker threads."""
    dl, checked = _check_file(name, data)
    valid = checked.column("reason").is_null().to_numpy(zero_copy_only=False)
    late = np.zeros(valid.size, dtype=np.int8)
    for code, column, known in (
        (_UNKNOWN_USER, "user_id", users),
        (_UNKNOWN_PHOTO, "photo_id", photos),
    ):
        if known is None:
            continue
        miss = valid & ~known.contains(checked.column(column))
        late[miss] = code
        valid &= ~miss
    valid_rid = np.flatnonzero(valid)
    good = checked.select(_EVENT_COLUMNS).filter(pa.array(valid))
    n_good = good.num_rows
    events = pa.table(
        {
            "event_id": good.column("event_id"),
            "event_type": good.column("event_type"),
            "user_id": good.column("user_id"),
            "photo_id": good.column("photo_id"),
            "ts": good.column("ts_utc").cast(pa.timestamp("us", tz="UTC")),
            "dwell_ms": good.column("dwell_ms"),
            "client": good.column("client"),
            "landing_date": pa.repeat(pa.scalar(landing_date, pa.date32()), n_good),
            "source_file": pa.repeat(pa.scalar(name, pa.string()), n_good),
            "line_no": pa.array(dl.line_no.to_numpy()[valid_rid], pa.int64()),
        }
    ).cast(EVENTS_SCHEMA)
    bad = np.flatnonzero(~valid)
    sql_reason = checked.column("reason").take(pa.array(bad)).cast(pa.string())
    late_bad = late[bad]
    late_reason = pa.array(np.asarray(_LATE_REASONS, dtype=object)[late_bad], pa.string())
    reason = pc.if_else(pa.array(late_bad > 0), late_reason, sql_reason)
    hashes = _id_hashes(events.column("event_id"))
    return _Screened(
        name=name,
        lines=dl,
        events=events,
        valid_rid=valid_rid,
        quarantine=_quarantine_rows(name, landing_date, dl, bad, reason),
        hashes=hashes,
        order=np.argsort(hashes, kind="stable"),
        extra_field_lines=int(pc.sum(checked.column("extra")).as_py() or 0),
    )


class _Deduplicator:
    """First-wins duplicate detection over files fed in order, one file at a time.

    A row is a duplicate when its event_id appeared in an earlier valid row (file order, then
    line order). Hashes narrow the search and strings decide, so a collision never drops an
    event. A bitmap of the hashes seen so far lets nearly every row of a new file skip the
    lookup in the earlier files (each file keeps its hashes sorted), so adding a file costs
    about the same whatever came before it.
    """

    _BITS = 26

    def __init__(self) -> None:
        self._seen = np.zeros(1 << self._BITS, dtype=bool)
        self._files: list[tuple[np.ndarray, np.ndarray, pa.ChunkedArray]] = []

    def _slots(self, hashes: np.ndarray) -> np.ndarray:
        return (hashes >> np.uint64(64 - self._BITS)).astype(np.intp)

    def add(self, s: _Screened) -> np.ndarray:
        """The rows of ``s.events`` that are duplicates, ascending."""
        ids = s.events.column("event_id")
        ordered = s.hashes[s.order]
        slots = self._slots(s.hashes)
        dup = self._within(s.order, ordered, ids) | self._earlier(s.hashes, slots, ids)
        self._seen[slots] = True
        self._files.append((ordered, s.order, ids))
        return np.flatnonzero(dup)

    @staticmethod
    def _within(order: np.ndarray, ordered: np.ndarray, ids: pa.ChunkedArray) -> np.ndarray:
        dup = np.zeros(ordered.size, dtype=bool)
        same = ordered[1:] == ordered[:-1]
        if not same.any():
            return dup
        in_group = np.zeros(ordered.size, dtype=bool)
        in_group[1:] |= same
        in_group[:-1] |= same
        rows = np.sort(order[in_group])  # rows that share a hash with another, in line order
        first = pl.Series(ids.take(pa.array(rows))).is_first_distinct().to_numpy()
        dup[rows[~first]] = True
        return dup

    def _earlier(self, hashes: np.ndarray, slots: np.ndarray, ids: pa.ChunkedArray) -> np.ndarray:
        dup = np.zeros(hashes.size, dtype=bool)
        cand = np.flatnonzero(self._seen[slots])
        if cand.size == 0:
            return dup
        want = hashes[cand]
        mine = pl.Series(ids.take(pa.array(cand)))
        for sorted_hashes, order, their_ids in self._files:
            lo = np.searchsorted(sorted_hashes, want, side="left")
            hi = np.searchsorted(sorted_hashes, want, side="right")
            n = hi - lo
            if not n.any():
                continue
            which = np.repeat(np.arange(cand.size), n)  # index into cand, one per earlier match
            at = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
            theirs = pl.Series(their_ids.take(pa.array(order[at])))
            equal = (mine.gather(which) == theirs).to_numpy()
            dup[cand[which[equal]]] = True
        return dup


def _settle(s: _Screened, dup: np.ndarray, landing_date: dt.date) -> tuple[pa.Table, pa.Table]:
    """The file's loaded rows and quarantine, once its duplicates (rows of ``s.events``) are
    known: duplicates join the quarantine, in line order, with reason ``duplicate``."""
    if dup.size == 0:
        return s.events, s.quarantine
    keep = np.ones(s.events.num_rows, dtype=bool)
    keep[dup] = False
    dq = _quarantine_rows(
        s.name,
        landing_date,
        s.lines,
        s.valid_rid[dup],
        pa.array(["duplicate"] * dup.size, pa.string()),
    )
    quarantine = pa.concat_tables([s.quarantine, dq])
    quarantine = quarantine.take(pc.sort_indices(quarantine, [("line_no", "ascending")]))
    return s.events.filter(pa.array(keep)), quarantine


def _file_errors(errors: list[tuple[str, str]], landing_date: dt.date) -> pa.Table:
    """One quarantine record per file that could not be read to its end."""
    return pa.table(
        {
            "landing_date": pa.repeat(pa.scalar(landing_date, pa.date32()), len(errors)),
            "source_file": pa.array([n for n, _ in errors], pa.string()),
            "line_no": pa.nulls(len(errors), pa.int64()),
            "raw": pa.nulls(len(errors), pa.string()),
            "reason": pa.array(["truncated_file"] * len(errors), pa.string()),
            "detail": pa.array([e for _, e in errors], pa.string()),
        },
        schema=QUARANTINE_SCHEMA,
    )


EventsSink = Callable[[pa.Table], None]


def ingest_day(
    files: Iterable[tuple[str, bytes]],
    landing_date: dt.date,
    known_user_ids: np.ndarray | pa.Array | None,
    known_photo_ids: np.ndarray | pa.Array | None,
    sink: EventsSink | None = None,
) -> IngestResult:
    """Validate and deduplicate one landed day; every landed line is loaded or quarantined.

    Files are processed in name order, so "first occurrence" of an event_id is the same on
    every rerun regardless of the order the object store listed them in. Two worker threads
    validate files side by side; as each file is done (in order) its duplicates are settled
    and its loaded rows go to ``sink`` (for example a Parquet writer), which runs on a thread
    of its own while the next files are still being validated. A failing sink fails the day.
    """
    ordered = sorted(files, key=lambda f: f[0])
    users, photos = _KnownIds.of(known_user_ids), _KnownIds.of(known_photo_ids)
    dedup = _Deduplicator()
    events_parts: list[pa.Table] = []
    quarantine_parts: list[pa.Table] = []
    errors: list[tuple[str, str]] = []
    stats = IngestStats(files=len(ordered))
    workers = min(2, os.cpu_count() or 1, max(1, len(ordered)))
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        ThreadPoolExecutor(max_workers=1) as writer,
    ):
        pending = [
            pool.submit(_screen, name, data, landing_date, users, photos) for name, data in ordered
        ]
        del ordered
        written: list[Future[None]] = []
        for future in pending:
            s = future.result()
            dup = dedup.add(s)
            events, quarantine = _settle(s, dup, landing_date)
            stats.landed_lines += len(s.lines.lines)
            stats.duplicates += int(dup.size)
            stats.extra_field_lines += s.extra_field_lines
            if s.lines.error is not None:
                errors.append((s.name, s.lines.error))
            del s
            events_parts.append(events)
            quarantine_parts.append(quarantine)
            if sink is not None:
                written.append(writer.submit(sink, events))
        for w in written:
            w.result()

    events = pa.concat_tables(events_parts) if events_parts else EVENTS_SCHEMA.empty_table()
    lines_q = (
        pa.concat_tables(quarantine_parts) if quarantine_parts else QUARANTINE_SCHEMA.empty_table()
    )
    for col in ("event_id", "event_type", "user_id", "photo_id", "ts", "client"):
        assert events.column(col).null_count == 0, f"valid row without {col}"
    counts = pc.value_counts(lines_q.column("reason")).to_pylist() if lines_q.num_rows else []
    stats.loaded = events.num_rows
    stats.quarantined = lines_q.num_rows
    stats.file_errors = len(errors)
    stats.reasons = dict(sorted((c["values"], c["counts"]) for c in counts))
    assert stats.landed_lines == stats.loaded + stats.quarantined, "ingest does not reconcile"
    quarantine = pa.concat_tables([lines_q, _file_errors(errors, landing_date)])
    return IngestResult(events=events, quarantine=quarantine, stats=stats)
