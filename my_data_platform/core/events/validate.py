"""Validating decoded lines: a canonical-layout regex, the full validation SQL that names each
quarantine reason, and the typed parse of the lines that passed."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from my_data_platform.core.events.contract import (
    EVENT_TYPES,
    EVENTS_SCHEMA,
    FIELDS,
    REQUIRED_FIELDS,
    LandingLimits,
)
from my_data_platform.core.events.decode import DecodedLines, _gather_views, decompress_lines

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


def _check_file(
    name: str, data: bytes, db: duckdb.DuckDBPyConnection, limits: LandingLimits
) -> _Checked:
    """Inflate, split and validate one file.

    Canonical lines (nearly all of a clean day) are recognised by one Rust regex in Polars;
    only the others walk the full validation SQL. Then one typed ``json_transform`` reads
    every line that passed, in line order: a line the full validation accepts has the values
    the typed parse gives it. Both read the lines as string views into the inflated buffer
    and hand back Arrow in the lake's types. ``db`` is a single-threaded in-memory DuckDB
    shared by the workers, each on its own cursor: parallelism comes from running files side
    by side. Lines over the line limit are never parsed: their reason is ``line_too_long``.
    """
    dl = decompress_lines(name, data, limits)
    n = len(dl.lines)
    canonical = pl.Series("line", dl.lines).str.contains(_FAST_RE).fill_null(False).to_numpy()
    canonical = np.array(canonical, dtype=bool)  # writable
    if dl.partial_last and n:
        canonical[-1] = False
    long = dl.long_lines.rid
    to_check = ~canonical
    if long.size:
        canonical[long], to_check[long] = False, False
    con = db.cursor()
    try:
        bad_rid, reasons, extra = _validate(con, dl, np.flatnonzero(to_check))
        if long.size:
            too_long = pa.array(["line_too_long"] * long.size, pa.string())
            bad_rid, reasons = _in_line_order(bad_rid, reasons, long, too_long)
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
