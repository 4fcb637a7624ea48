"""Validation and deduplication of one landed day of activity logs.

Landed files are gzip JSON Lines. Every landed line ends either in ``lake/events`` or in
``lake/events_quarantine`` with a reason, so a partition always reconciles
(landed = loaded + quarantined). The path is vectorized end to end: each file is inflated in C
(ISA-L), its line boundaries are found with numpy and the lines become an Arrow ``string_view``
array that points into the inflated buffer without copying. One Polars regex marks the lines in
the contract's canonical layout; the others go through the full validation SQL in DuckDB, which
names each reason; then one typed DuckDB ``json_transform`` parses every line that passed. The id
checks are dense lookup tables and the first-wins deduplication works on sorted 64-bit hashes,
with the strings deciding.
"""

from __future__ import annotations

import codecs
import collections
import datetime as dt
import itertools
import os
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

import duckdb
import numpy as np
import pandas  # noqa: F401 - pyarrow imports it on its first pa.array(): at import, not mid-ingest
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

    events: pa.Table | None
    """Every loaded row; ``None`` when they were only handed to a sink (``keep_events=False``)."""
    quarantine: pa.Table
    stats: IngestStats
    preview: pa.Table
    """The day's first loaded rows (at most ``PREVIEW_ROWS``), a copy of their own."""


PREVIEW_ROWS = 5


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
    long = lens > _INLINE
    every = bool(long.all())
    rows = slice(None) if every else np.flatnonzero(long)
    s = starts[rows]
    if s.size:
        # the 4-byte prefix of every long string in one gather: a uint32 at every byte offset
        at = np.ndarray((buf.size - 3,), dtype="<u4", buffer=buf, strides=(1,))
        views[rows, 1] = at[s].view(np.int32)
        views[rows, 2] = first_buffer + (s // _SEGMENT)
        views[rows, 3] = s % _SEGMENT
    short = np.empty(0, dtype=np.intp) if every else np.flatnonzero(~long)
    if short.size:
        raw = views.view(np.uint8).reshape(n, 16)
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


def _newlines(buf: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """Positions of the newlines in ``buf``, compared a cache-sized chunk at a time."""
    hits = np.empty(min(chunk, buf.size), dtype=bool)
    found = []
    for at in range(0, buf.size, chunk):
        part = buf[at : at + chunk]
        np.equal(part, 10, out=hits[: part.size])
        found.append(np.flatnonzero(hits[: part.size]) + at)
    return np.concatenate(found) if found else np.empty(0, dtype=np.intp)


def decompress_lines(name: str, data: bytes) -> DecodedLines:
    """Inflate one landed file and cut it into its non-blank lines, zero-copy.

    ``name`` identifies the file to callers that log per file. A file that stops early still
    yields every line that was inflated; the error says why it stopped and ``partial_last``
    marks a cut line.
    """
    text, error = _inflate(data)
    buf = np.frombuffer(text, dtype=np.uint8)
    ends = _newlines(buf)
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
    if line_no.size < keep.size:
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
    is its first character. Valid rows are recognised by one short conjunction; only rows that
    fail it walk the ordered reason checks. It gives each line's reason (null when valid) and
    whether it carries keys outside the contract; a valid line's values come from the typed
    parse (``_FAST_SQL``), which reads them exactly as these checks do.
    """
    raw = ",\n        ".join(f"j.{f}::VARCHAR AS r_{f}" for f in FIELDS)
    is_str = {f: f"starts_with(r_{f}, '\"')" for f in _STRING_FIELDS}
    is_int = {f: f"regexp_full_match(r_{f}, '-?[0-9]+')" for f in _INT_FIELDS}
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
    CASE WHEN pre IS NOT NULL THEN false
         WHEN ok AND strlen(line) = {required_len} + {canon} + {dwell_len} THEN false
         ELSE NOT list_has_all({_KEYS_LIST}, json_keys(line))
    END AS extra
FROM checked
"""  # noqa: S608


_SQL = _validation_sql()


#: The typed fields of an event, as both paths give them (``EVENTS_SCHEMA``'s first columns).
_FIELDS_SCHEMA = pa.schema([EVENTS_SCHEMA.field(f).with_nullable(True) for f in FIELDS])


def _run_sql(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table, sql: str) -> pa.Table:
    """``sql`` over ``table`` (registered as ``name``), as Arrow.

    A relation's ``to_arrow_table`` builds Arrow straight from the query's chunks; a
    statement's result (``execute``) would first copy every chunk, strings included, into a
    buffer for streaming: 15% more for the typed parse of a file.
    """
    con.register(name, table)
    try:
        return con.sql(sql).to_arrow_table(1 << 22)
    finally:
        con.unregister(name)


#: Lines that match this exactly are in the canonical layout of the event contract (the keys in
#: contract order, no whitespace, no escapes, printable ASCII strings, ints short enough for
#: int64, a strict ISO timestamp): for them every check of ``_SQL`` but the timestamp cast is
#: known to pass, so they only need the typed parse (``_FAST_SQL``). Everything else, and a
#: canonical line whose timestamp does not exist, goes through the full ``_SQL`` first, with
#: its exact reasons.
_FAST_STR = r"[ !#-\[\]-~]"
_FAST_INT = r"-?(?:0|[1-9][0-9]{0,17})"
#: The timestamps a canonical line may carry; Arrow casts them (see ``_timestamps``).
_FAST_TS = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
_FAST_RE = (
    r'^\{"event_id":"' + _FAST_STR + r'+","event_type":"(?:' + "|".join(EVENT_TYPES) + r')",'
    r'"user_id":' + _FAST_INT + r',"photo_id":' + _FAST_INT + r","
    r'"ts":"' + _FAST_TS + r'"'
    r'(?:,"dwell_ms":(?:null|0|[1-9][0-9]{0,17}))?'
    r',"client":"' + _FAST_STR + r'*"\}$'
)
_FAST_STRUCT = (
    '{"event_id": "VARCHAR", "event_type": "VARCHAR", "user_id": "BIGINT", "photo_id": "BIGINT", '
    '"ts": "VARCHAR", "dwell_ms": "BIGINT", "client": "VARCHAR"}'
)
#: The typed parse. ``id_hash`` is the deduplication's hash of each event_id (equal ids,
#: equal hashes; the converse is checked), computed while the id is at hand.
_FAST_SQL = f"""
SELECT j.event_id, j.event_type, j.user_id, j.photo_id, j.ts, j.dwell_ms, j.client,
    hash(j.event_id) AS id_hash
FROM (SELECT json_transform(line, '{_FAST_STRUCT}') AS j FROM fast)
"""  # noqa: S608
_TS_SQL = "SELECT TRY_CAST(ts AS TIMESTAMPTZ) AS ts FROM stamps"
_UTC = pa.timestamp("us", tz="UTC")


def _timestamps(con: duckdb.DuckDBPyConnection, text: pa.ChunkedArray) -> pa.ChunkedArray:
    """ISO-8601 text as UTC instants; null where the instant does not exist.

    Arrow's cast accepts a subset of what DuckDB's ``TIMESTAMPTZ`` cast does and agrees with it
    there (a property test holds it to that) at a fraction of the cost. When it refuses any
    value, the column goes through DuckDB's cast, the one the full validation uses.
    """
    try:
        return text.cast(_UTC)
    except pa.ArrowInvalid:
        return _run_sql(con, "stamps", pa.table({"ts": text}), _TS_SQL).column("ts").cast(_UTC)


def _gather_views(lines: pa.Array, rids: np.ndarray) -> pa.Array:
    """Rows ``rids`` of a string_view array, still string_view and sharing its buffers.

    Arrow has no take kernel for string_view, but a view is just 16 bytes pointing into a
    buffer: gather the views and keep the buffers.
    """
    if rids.size == len(lines):
        return lines
    bufs = lines.buffers()
    # One 16-byte item per view: take() copies fixed-size items, where indexing rows of an
    # (n, 4) int32 array makes one memcpy call per row (5x slower).
    views = np.frombuffer(bufs[1], dtype="V16")[lines.offset :]
    picked = views.take(rids)
    return pa.Array.from_buffers(
        pa.string_view(), rids.size, [None, pa.py_buffer(picked), *bufs[2:]]
    )


def _take_lines(lines: pa.Array, rids: np.ndarray) -> pa.Array:
    """Rows ``rids`` of a string_view array, as plain strings."""
    if rids.size == 0:
        return pa.array([], pa.string())
    return _gather_views(lines, rids).cast(pa.string())


@dataclass
class _Checked:
    """One file through the SQL checks: every line is either in ``rid`` or in ``bad_rid``."""

    lines: DecodedLines
    rid: np.ndarray
    """Ascending indices into ``lines`` of the lines that passed."""
    fields: pa.Table
    """Their typed values, one row per ``rid``, in ``_FIELDS_SCHEMA``."""
    id_hash: np.ndarray
    """uint64, the hash of each one's event_id (``_FAST_SQL``)."""
    bad_rid: np.ndarray
    """Ascending indices of the lines that failed."""
    bad_reason: pa.Array
    extra_field_lines: int


def _check_file(name: str, data: bytes, db: duckdb.DuckDBPyConnection) -> _Checked:
    """Inflate, split and validate one file.

    Canonical lines (nearly all of a clean day) are recognised by one Rust regex in Polars;
    only the others walk the full validation SQL. Then one typed ``json_transform`` reads
    every line that passed, in line order: a line the full validation accepts has the values
    the typed parse gives it. Both read the lines as string views into the inflated buffer
    and hand back Arrow in the lake's types. ``db`` is a single-threaded in-memory DuckDB
    shared by the workers, each on its own cursor: parallelism comes from running files side
    by side.
    """
    dl = decompress_lines(name, data)
    n = len(dl.lines)
    canonical = pl.Series("line", dl.lines).str.contains(_FAST_RE).fill_null(False).to_numpy()
    canonical = np.array(canonical, dtype=bool)  # writable
    if dl.partial_last and n:
        canonical[-1] = False
    con = db.cursor()
    try:
        bad_rid, reasons, extra = _validate(con, dl, np.flatnonzero(~canonical))
        passed = np.ones(n, dtype=bool)
        passed[bad_rid] = False
        rid = np.flatnonzero(passed)
        parsed = _run_sql(con, "fast", pa.table({"line": _gather_views(dl.lines, rid)}), _FAST_SQL)
        ts = _timestamps(con, parsed.column("ts"))
        if ts.null_count:  # canonical, but the instant does not exist: the exact reasons
            cast = ts.is_valid().to_numpy(zero_copy_only=False)
            more_rid, more_reasons, _ = _validate(con, dl, rid[~cast])
            rid, parsed, ts = rid[cast], parsed.filter(pa.array(cast)), ts.filter(pa.array(cast))
            bad_rid, reasons = _in_line_order(bad_rid, reasons, more_rid, more_reasons)
    finally:
        con.close()
    fields = pa.Table.from_arrays(
        [
            ts if f == "ts" else parsed.column(f).cast(t)
            for f, t in zip(FIELDS, _FIELDS_SCHEMA.types, strict=True)
        ],
        schema=_FIELDS_SCHEMA,
    )
    id_hash = parsed.column("id_hash").to_numpy()
    return _Checked(dl, rid, fields, id_hash, bad_rid, reasons, extra)


def _in_line_order(
    rid: np.ndarray, reason: pa.Array, more_rid: np.ndarray, more_reason: pa.Array
) -> tuple[np.ndarray, pa.Array]:
    """Two ascending runs of failed lines and their reasons, merged into one in line order."""
    rids = np.concatenate([rid, more_rid])
    reasons = pa.concat_arrays([reason, more_reason])
    if rid.size and more_rid.size:
        order = np.argsort(rids, kind="stable")
        rids, reasons = rids[order], reasons.take(pa.array(order))
    return rids, reasons


def _validate(
    con: duckdb.DuckDBPyConnection, dl: DecodedLines, rid: np.ndarray
) -> tuple[np.ndarray, pa.Array, int]:
    """The full validation of lines ``rid`` (ascending): the ones that fail, their reasons,
    and how many lines carry keys outside the contract."""
    if rid.size == 0:
        return rid, pa.array([], pa.string()), 0
    last = len(dl.lines) - 1
    lines = pa.table(
        {
            "rid": pa.array(rid, pa.int64()),
            "line": _gather_views(dl.lines, rid),
            "partial": pa.array(dl.partial_last & (rid == last), pa.bool_()),
        }
    )
    checked = _run_sql(con, "lines", lines, _SQL)
    failed = checked.column("reason").is_valid().to_numpy(zero_copy_only=False)
    reasons = checked.column("reason").filter(pa.array(failed)).combine_chunks()
    extra = int(pc.sum(checked.column("extra")).as_py() or 0)
    return checked.column("rid").to_numpy()[failed], reasons.cast(pa.string()), extra


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


@dataclass
class _Screened:
    """One file validated and id-checked: all that is left is the cross-file duplicate check.

    ``events`` holds the lines that passed every check so far, in line order, in
    ``EVENTS_SCHEMA``; ``sorted_hashes`` are their event_ids' hashes in ascending order, and
    ``order`` the row of ``events`` each one belongs to.
    """

    name: str
    lines: DecodedLines
    events: pa.Table
    valid_rid: np.ndarray
    """Each row of ``events``: its index in ``lines``."""
    quarantine: pa.Table
    """The lines that failed a check, in line order, in ``QUARANTINE_SCHEMA``."""
    event_ids: _EventIds
    sorted_hashes: np.ndarray
    order: np.ndarray
    extra_field_lines: int


@dataclass
class _EventIds:
    """The event_ids of a file's loaded rows, for the duplicate checks to take rows from.

    They stay in the one piece the typed parse made (``values``), which may hold rows the id
    checks dropped since: ``rows`` maps each loaded row to its place there (None: the same).
    The loaded rows themselves are slices around the dropped ones, so taking from their
    column would walk hundreds of chunks, and copying it would cost more than the takes.
    """

    values: pa.Array
    rows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.values) if self.rows is None else self.rows.size

    def take(self, rows: np.ndarray) -> pa.Array:
        return self.values.take(pa.array(rows if self.rows is None else self.rows[rows]))


#: Low bits of a packed (hash, row) word that hold the row; the hash's low 40 bits sit above.
_ROW_BITS = 24
_ROW_MASK = np.uint64((1 << _ROW_BITS) - 1)


def _sorted_id_hashes(id_hash: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The hashes (40 bits of them) in ascending order, and the row of each.

    Hash and row are packed into one word (the hash above ``_ROW_BITS``) so that a plain sort,
    far faster than an argsort, orders both.
    """
    hashes = id_hash << np.uint64(_ROW_BITS)
    if hashes.size > 1 << _ROW_BITS:  # too many rows to pack
        order = np.argsort(hashes, kind="stable")
        return hashes[order], order
    packed = hashes | np.arange(hashes.size, dtype=np.uint64)
    packed.sort()
    return packed & ~_ROW_MASK, (packed & _ROW_MASK).astype(np.intp)


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
    data: bytes | Callable[[], bytes],
    landing_date: dt.date,
    ids: _IdSets,
    db: duckdb.DuckDBPyConnection,
) -> _Screened:
    """Everything per file that needs no other file: runs in the worker threads."""
    c = _check_file(name, data() if callable(data) else data, db)
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
    )


class _Deduplicator:
    """First-wins duplicate detection over files fed in order, one file at a time.

    A row is a duplicate when its event_id appeared in an earlier valid row (file order, then
    line order). Hashes narrow the search and strings decide, so a collision never drops an
    event. Every hash seen so far is kept sorted, split by its top bits into buckets small
    enough to stay in cache: a new file's sorted hashes are looked up in and merged into each
    bucket, and only rows whose hash is already there (the duplicates, and the rare
    collision) are compared with the earlier files' ids.
    """

    _BUCKET_BITS = 6

    def __init__(self) -> None:
        self._seen = [np.empty(0, dtype=np.uint64) for _ in range(1 << self._BUCKET_BITS)]
        self._edges = np.arange(1, 1 << self._BUCKET_BITS, dtype=np.uint64) << np.uint64(
            64 - self._BUCKET_BITS
        )
        self._files: list[tuple[np.ndarray, np.ndarray, _EventIds]] = []

    def add(self, s: _Screened) -> np.ndarray:
        """The rows of ``s.events`` that are duplicates, ascending."""
        ids = s.event_ids
        ordered = s.sorted_hashes
        dup = self._within(s.order, ordered, ids)
        hit = np.zeros(ordered.size, dtype=bool)
        bounds = [0, *np.searchsorted(ordered, self._edges).tolist(), ordered.size]
        for bucket, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            mine, seen = ordered[lo:hi], self._seen[bucket]
            if seen.size and mine.size:
                at = np.minimum(np.searchsorted(seen, mine), seen.size - 1)
                hit[lo:hi] = seen[at] == mine
            merged = np.concatenate([seen, mine])
            merged.sort(kind="stable")  # two sorted runs: one merge pass
            self._seen[bucket] = merged
        if hit.any():
            dup |= self._earlier(s.order[hit], ordered[hit], ids)
        self._files.append((ordered, s.order, ids))
        return np.flatnonzero(dup)

    @staticmethod
    def _within(order: np.ndarray, ordered: np.ndarray, ids: _EventIds) -> np.ndarray:
        dup = np.zeros(ordered.size, dtype=bool)
        same = ordered[1:] == ordered[:-1]
        if not same.any():
            return dup
        in_group = np.zeros(ordered.size, dtype=bool)
        in_group[1:] |= same
        in_group[:-1] |= same
        rows = np.sort(order[in_group])  # rows that share a hash with another, in line order
        first = pl.Series(ids.take(rows)).is_first_distinct().to_numpy()
        dup[rows[~first]] = True
        return dup

    def _earlier(self, cand: np.ndarray, want: np.ndarray, ids: _EventIds) -> np.ndarray:
        """Which rows ``cand`` (with sorted hashes ``want``) repeat an id of an earlier file."""
        dup = np.zeros(len(ids), dtype=bool)
        mine = pl.Series(ids.take(cand))
        for sorted_hashes, order, their_ids in self._files:
            lo = np.searchsorted(sorted_hashes, want, side="left")
            hi = np.searchsorted(sorted_hashes, want, side="right")
            n = hi - lo
            if not n.any():
                continue
            which = np.repeat(np.arange(cand.size), n)  # index into cand, one per earlier match
            at = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
            theirs = pl.Series(their_ids.take(order[at]))
            equal = (mine.gather(which) == theirs).to_numpy()
            dup[cand[which[equal]]] = True
        return dup


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
    files: Iterable[tuple[str, bytes | Callable[[], bytes]]],
    landing_date: dt.date,
    known_user_ids: Ids | Callable[[], Ids],
    known_photo_ids: Ids | Callable[[], Ids],
    sink: EventsSink | None = None,
    *,
    keep_events: bool = True,
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
    """
    if not keep_events and sink is None:
        raise ValueError("keep_events=False needs a sink: the loaded rows would be lost")
    ordered = sorted(files, key=lambda f: f[0])
    ids = _IdSets(known_user_ids, known_photo_ids)
    dedup = _Deduplicator()
    events_parts: list[pa.Table] = []
    preview: pa.Table | None = None
    quarantine_parts: list[pa.Table] = []
    errors: list[tuple[str, str]] = []
    stats = IngestStats(files=len(ordered))
    workers = min(2, os.cpu_count() or 1, max(1, len(ordered)))
    with (
        duckdb.connect(":memory:", config={"threads": 1}) as db,
        ThreadPoolExecutor(max_workers=workers) as pool,
        ThreadPoolExecutor(max_workers=1) as writer,
    ):
        db.execute("SET GLOBAL TimeZone = 'UTC'")  # naive timestamps are read as UTC
        pending = collections.deque(
            pool.submit(_screen, name, data, landing_date, ids, db) for name, data in ordered
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
            dup = dedup.add(s)
            events, quarantine = _settle(s, dup, landing_date)
            stats.landed_lines += len(s.lines.lines)
            stats.duplicates += int(dup.size)
            stats.extra_field_lines += s.extra_field_lines
            if s.lines.error is not None:
                errors.append((s.name, s.lines.error))
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
