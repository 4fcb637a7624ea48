"""Validation: every quarantine reason, typed values, the canonical fast path."""

from __future__ import annotations

import datetime as dt
import functools
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from my_data_platform.core.events import (
    ingest_day,
)
from my_data_platform.core.events.validate import _FAST_TS
from my_data_platform_tests.core.events.landed import (
    _ABSENT,
    BAD_CASES,
    DAY,
    PHOTOS,
    event,
    gz,
    line,
    quarantine_rows,
    run,
)


@pytest.mark.parametrize(("raw", "reason"), BAD_CASES, ids=[r for _, r in BAD_CASES])
def test_each_reason_is_quarantined_with_its_line(raw: str, reason: str) -> None:
    good = line(event_id="ok-1")
    result = run([("day/a.jsonl.gz", gz(good, raw, line(event_id="ok-2")))])
    assert result.stats.loaded == 2
    assert result.events.column("event_id").to_pylist() == ["ok-1", "ok-2"]
    assert result.events.column("line_no").to_pylist() == [1, 3]
    assert quarantine_rows(result) == [
        {
            "landing_date": DAY,
            "source_file": "day/a.jsonl.gz",
            "line_no": 2,
            "raw": raw,
            "reason": reason,
            "detail": None,
            "length": None,
            "sha256": None,
            "offset": None,
        }
    ]
    assert result.stats.reasons == {reason: 1}


def test_valid_row_values_and_utc_conversion() -> None:
    lines = [
        line(event_id="a", ts="2026-01-01T13:45:12.345+02:00", dwell_ms=_ABSENT),
        line(event_id="b", ts="2026-01-01T13:45:12.345Z", dwell_ms=None),
        line(event_id="c", ts="2026-01-01T13:45:12-05:30", dwell_ms=0),
        line(event_id='d\u00e9\\"q', event_type="share", user_id=3, photo_id=30, client="web"),
    ]
    result = run([("a.gz", gz(*lines))])
    rows = result.events.to_pylist()
    utc = dt.UTC
    assert [r["ts"] for r in rows] == [
        dt.datetime(2026, 1, 1, 11, 45, 12, 345000, tzinfo=utc),
        dt.datetime(2026, 1, 1, 13, 45, 12, 345000, tzinfo=utc),
        dt.datetime(2026, 1, 1, 19, 15, 12, tzinfo=utc),
        dt.datetime(2026, 1, 1, 13, 45, 12, 345000, tzinfo=utc),
    ]
    assert [r["dwell_ms"] for r in rows] == [None, None, 0, 1200]
    assert rows[3] | {"ts": None} == {
        "event_id": 'd\u00e9\\"q',
        "event_type": "share",
        "user_id": 3,
        "photo_id": 30,
        "ts": None,
        "dwell_ms": 1200,
        "client": "web",
        "landing_date": DAY,
        "source_file": "a.gz",
        "line_no": 4,
    }


def test_extra_fields_are_dropped_and_counted() -> None:
    with_extra = json.dumps({**event(event_id="a"), "app_build": "1"})
    spaced = json.dumps(event(event_id="b"), indent=None)  # ", " and ": " separators
    null_dwell = line(event_id="c", dwell_ms=None)
    extra_in_bad = json.dumps({**event(event_id="d", user_id="1"), "zz": 1})
    result = run([("a.gz", gz(with_extra, spaced, null_dwell, extra_in_bad))])
    assert result.stats.extra_field_lines == 2
    assert result.events.column("event_id").to_pylist() == ["a", "b", "c"]
    assert "app_build" not in result.events.column_names


def test_canonical_fast_path_matches_the_full_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines in the canonical layout skip the full SQL: the outputs must be the same as without."""
    from my_data_platform.core.events import validate as events_mod

    ts_values = [
        "2026-01-01T00:00:00Z", "2026-01-01T23:59:59.5Z", "2026-01-01T12:00:00.123456Z",
        "2026-01-01T12:00:00+02:00", "2026-01-01T01:00:00-05:30", "2026-02-30T00:00:00Z",
        "2026-13-01T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T23:59:60Z",
        "0000-01-01T00:00:00Z", "2026-01-01T00:00:00+25:00", "2024-02-29T00:00:00.000Z",
        "2025-02-29T00:00:00Z", "2026-01-01 00:00:00Z", "2026-01-01T00:00Z",
    ]  # fmt: skip
    lines = [line(event_id=f"ts-{i}", ts=ts) for i, ts in enumerate(ts_values)]
    lines += [
        line(event_id="neg", user_id=-1),
        line(event_id="zero", user_id=0, photo_id=-0),
        line(event_id="big", user_id=999_999_999_999_999_999, photo_id=10),
        line(event_id="huge", user_id=9_223_372_036_854_775_807),
        line(event_id="over", user_id=9_223_372_036_854_775_808),
        line(event_id="nodwell", dwell_ms=_ABSENT),
        line(event_id="nulldwell", dwell_ms=None),
        line(event_id="negdwell", dwell_ms=-5),
        line(event_id="zerodwell", dwell_ms=0),
        line(event_id="emptyclient", client=""),
        line(event_id=""),
        line(event_id="caf\u00e9", client="\u00fcber"),
        json.dumps(event(event_id="uni\u00e9"), separators=(",", ":"), ensure_ascii=False),
        line(event_id='q"uote', client="back\\slash"),
        line(event_id="badtype", event_type="VIEW"),
        line(event_id="e-1"),
        line(event_id="e-1", user_id=2),
        '{"event_id":"e-1","event_type":"view","user_id":1,"photo_id":10,'
        '"ts":"2026-01-01T00:00:00Z","client":"x"} ',
        '{"event_type":"view","event_id":"order","user_id":1,"photo_id":10,'
        '"ts":"2026-01-01T00:00:00Z","client":"x"}',
        '{"event_id":"dupkey","event_id":"dupkey2","event_type":"view","user_id":1,'
        '"photo_id":10,"ts":"2026-01-01T00:00:00Z","client":"x"}',
        '{"event_id":"float","event_type":"view","user_id":1.0,"photo_id":10,'
        '"ts":"2026-01-01T00:00:00Z","client":"x"}',
        '{"event_id":"lead0","event_type":"view","user_id":01,"photo_id":10,'
        '"ts":"2026-01-01T00:00:00Z","client":"x"}',
        line(event_id="cut", ts="2026-01-01T00:00:00Z")[:-1],
    ]
    import polars as pl

    assert pl.Series(lines).str.contains(events_mod._FAST_RE).sum() >= 20  # fast path exercised
    files = [("a.jsonl.gz", gz(*lines)), ("b.jsonl.gz", gz(*reversed(lines)))]
    users = np.array([-1, 0, 1, 2, 999_999_999_999_999_999, 9_223_372_036_854_775_807])
    fast = ingest_day(files, DAY, users, PHOTOS)
    monkeypatch.setattr(events_mod, "_FAST_RE", r"^NEVER MATCHES A LANDED LINE$")
    full = ingest_day(files, DAY, users, PHOTOS)
    assert fast.stats == full.stats
    assert fast.events.equals(full.events)
    assert fast.quarantine.equals(full.quarantine)


@functools.cache
def _duckdb() -> Any:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def _duckdb_micros(values: list[str]) -> list[int | None]:
    rows = (
        _duckdb()
        .execute(
            "SELECT epoch_us(TRY_CAST(v AS TIMESTAMPTZ)) FROM unnest(?::VARCHAR[]) t(v)", [values]
        )
        .fetchall()
    )
    return [r[0] for r in rows]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.from_regex(_FAST_TS, fullmatch=True),  # any digits in every slot
            # plausible instants, so that most examples do exist
            st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)).map(
                lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            ),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_arrow_accepts_only_timestamps_duckdb_reads_the_same(values: list[str]) -> None:
    """The canonical path casts timestamps with Arrow; every value Arrow accepts must be one
    DuckDB's cast (the full validation's) accepts, as the same instant."""
    duck = _duckdb_micros(values)
    for value, expected in zip(values, duck, strict=True):
        try:
            got = pa.array([value]).cast(pa.timestamp("us", tz="UTC"))[0].value
        except pa.ArrowInvalid:
            continue  # refused: the whole column then goes through DuckDB's cast
        assert got == expected, value


def test_a_canonical_line_whose_instant_does_not_exist_is_quarantined_exactly() -> None:
    good = [line(event_id=f"e-{i}") for i in range(5)]
    bad = line(event_id="e-bad", ts="2026-02-30T10:00:00Z")  # canonical layout, no such day
    result = run([("day/a.jsonl.gz", gz(*good[:2], bad, *good[2:]))])
    assert result.events.column("event_id").to_pylist() == [f"e-{i}" for i in range(5)]
    assert result.events.column("line_no").to_pylist() == [1, 2, 4, 5, 6]
    q = result.quarantine.to_pylist()
    assert [(r["line_no"], r["reason"], r["raw"]) for r in q] == [(3, "invalid_value:ts", bad)]
