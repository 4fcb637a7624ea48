"""Tests of the landed-day validation: every reason, every file failure, reconciliation."""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import json
import zlib
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from my_data_platform.core.events import (
    _FAST_TS,
    EVENTS_SCHEMA,
    QUARANTINE_SCHEMA,
    IngestResult,
    decompress_lines,
    ingest_day,
)

DAY = dt.date(2026, 1, 1)
USERS = np.array([1, 2, 3], dtype=np.int64)
PHOTOS = np.array([10, 20, 30], dtype=np.int64)


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e-1",
        "event_type": "view",
        "user_id": 1,
        "photo_id": 10,
        "ts": "2026-01-01T13:45:12.345Z",
        "dwell_ms": 1200,
        "client": "ios/5.2.1",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not _ABSENT}


_ABSENT = object()


def line(**overrides: Any) -> str:
    return json.dumps(event(**overrides), separators=(",", ":"))


def gz(*lines: str, trailing_newline: bool = True) -> bytes:
    text = "\n".join(lines) + ("\n" if trailing_newline else "")
    return gzip.compress(text.encode())


def run(files: list[tuple[str, bytes]], users: Any = USERS, photos: Any = PHOTOS) -> IngestResult:
    result = ingest_day(files, DAY, users, photos)
    s = result.stats
    assert s.landed_lines == s.loaded + s.quarantined
    assert result.events.schema == EVENTS_SCHEMA
    assert result.quarantine.schema == QUARANTINE_SCHEMA
    assert result.events.num_rows == s.loaded
    assert result.quarantine.num_rows == s.quarantined + s.file_errors
    assert sum(s.reasons.values()) == s.quarantined
    return result


def quarantine_rows(result: IngestResult) -> list[dict[str, Any]]:
    return result.quarantine.to_pylist()


# One bad line per reason: (raw line, expected reason).
BAD_CASES: list[tuple[str, str]] = [
    ('{"event_id": "x", ', "malformed_json"),
    ("[1, 2, 3]", "malformed_json"),
    ('"just a string"', "malformed_json"),
    (line(event_id=_ABSENT), "missing_field:event_id"),
    (line(event_type=None), "missing_field:event_type"),
    (line(user_id=_ABSENT, client=_ABSENT), "missing_field:user_id"),
    (line(photo_id=_ABSENT), "missing_field:photo_id"),
    (line(ts=None), "missing_field:ts"),
    (line(client=_ABSENT), "missing_field:client"),
    (line(event_id=17), "wrong_type:event_id"),
    (line(event_type=["view"]), "wrong_type:event_type"),
    (line(user_id="1"), "wrong_type:user_id"),
    (line(photo_id=10.5), "wrong_type:photo_id"),
    (line(photo_id=10.0), "wrong_type:photo_id"),
    (line(ts=1767275112), "wrong_type:ts"),
    (line(dwell_ms="12"), "wrong_type:dwell_ms"),
    (line(dwell_ms=True), "wrong_type:dwell_ms"),
    (line(client={"os": "ios"}), "wrong_type:client"),
    (line(event_id=""), "invalid_value:event_id"),
    (line(event_type="purchase"), "invalid_value:event_type"),
    (line(ts="yesterday"), "invalid_value:ts"),
    (line(ts="2026-02-30T00:00:00Z"), "invalid_value:ts"),
    (line(ts="infinity"), "invalid_value:ts"),
    (line(dwell_ms=-1), "invalid_value:dwell_ms"),
    (line(user_id=99), "unknown_user"),
    (line(photo_id=99), "unknown_photo"),
    (line(user_id=99, photo_id=99), "unknown_user"),
    (line(user_id="x", event_type="nope"), "wrong_type:user_id"),
]


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
        }
    ]
    assert result.stats.reasons == {reason: 1}


def test_invalid_utf8_is_malformed_and_raw_keeps_the_bytes_visible() -> None:
    raw = b'{"event_id":"\xff\xfe","event_type":"view"}'
    data = gzip.compress(line(event_id="a").encode() + b"\n" + raw + b"\n")
    result = run([("a.gz", data)])
    (q,) = quarantine_rows(result)
    assert (q["line_no"], q["reason"]) == (2, "malformed_json")
    assert q["raw"] == raw.decode("utf-8", "backslashreplace")
    assert result.stats.loaded == 1


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


def test_blank_lines_are_skipped_but_keep_numbering() -> None:
    data = gz("", line(event_id="a"), "   ", "\t\r", line(event_id="b"), "", trailing_newline=True)
    result = run([("a.gz", data)])
    assert result.stats.landed_lines == 2
    assert result.events.column("line_no").to_pylist() == [2, 5]
    assert result.quarantine.num_rows == 0


def test_crlf_lines_are_loaded() -> None:
    data = gzip.compress(f"{line(event_id='a')}\r\n{line(event_id='b')}\r\n".encode())
    result = run([("a.gz", data)])
    assert result.events.column("event_id").to_pylist() == ["a", "b"]


def test_extra_fields_are_dropped_and_counted() -> None:
    with_extra = json.dumps({**event(event_id="a"), "app_build": "1"})
    spaced = json.dumps(event(event_id="b"), indent=None)  # ", " and ": " separators
    null_dwell = line(event_id="c", dwell_ms=None)
    extra_in_bad = json.dumps({**event(event_id="d", user_id="1"), "zz": 1})
    result = run([("a.gz", gz(with_extra, spaced, null_dwell, extra_in_bad))])
    assert result.stats.extra_field_lines == 2
    assert result.events.column("event_id").to_pylist() == ["a", "b", "c"]
    assert "app_build" not in result.events.column_names


def test_duplicates_first_by_file_order_wins() -> None:
    # Passed out of order: files are processed sorted by name.
    files = [
        ("day/b.jsonl.gz", gz(line(event_id="x", user_id=2), line(event_id="y"))),
        ("day/a.jsonl.gz", gz(line(event_id="z"), line(event_id="x", user_id=1))),
    ]
    result = run(files)
    rows = result.events.select(["event_id", "source_file", "line_no", "user_id"]).to_pylist()
    assert rows == [
        {"event_id": "z", "source_file": "day/a.jsonl.gz", "line_no": 1, "user_id": 1},
        {"event_id": "x", "source_file": "day/a.jsonl.gz", "line_no": 2, "user_id": 1},
        {"event_id": "y", "source_file": "day/b.jsonl.gz", "line_no": 2, "user_id": 1},
    ]
    (q,) = quarantine_rows(result)
    assert (q["source_file"], q["line_no"], q["reason"]) == ("day/b.jsonl.gz", 1, "duplicate")
    assert result.stats.duplicates == 1


def test_invalid_row_does_not_claim_an_event_id() -> None:
    result = run([("a.gz", gz(line(event_id="x", user_id=99), line(event_id="x")))])
    assert result.events.column("line_no").to_pylist() == [2]
    assert [q["reason"] for q in quarantine_rows(result)] == ["unknown_user"]


def test_id_checks_skipped_when_no_known_ids() -> None:
    result = run([("a.gz", gz(line(user_id=12345, photo_id=67890)))], users=None, photos=None)
    assert result.stats.loaded == 1


def test_known_ids_as_arrow_arrays() -> None:
    result = run(
        [("a.gz", gz(line(event_id="a"), line(event_id="b", user_id=2)))],
        users=pa.array([2], pa.int64()),
        photos=pa.array([10], pa.int32()),
    )
    assert result.events.column("event_id").to_pylist() == ["b"]
    assert result.stats.reasons == {"unknown_user": 1}


def test_multi_member_gzip_reads_every_member() -> None:
    data = gz(line(event_id="a")) + gz(line(event_id="b")) + gz(line(event_id="c"))
    result = run([("a.gz", data)])
    assert result.events.column("event_id").to_pylist() == ["a", "b", "c"]
    assert result.events.column("line_no").to_pylist() == [1, 2, 3]
    assert result.stats.file_errors == 0


def test_final_line_without_newline_in_a_clean_file_is_loaded() -> None:
    result = run([("a.gz", gz(line(event_id="a"), line(event_id="b"), trailing_newline=False))])
    assert result.events.column("event_id").to_pylist() == ["a", "b"]


def _truncated(lines: list[str], cut_at_char: int) -> bytes:
    """A gzip file whose stream stops after ``cut_at_char`` bytes of text (flushed there)."""
    text = ("\n".join(lines) + "\n").encode()
    c = zlib.compressobj(wbits=31)
    return c.compress(text[:cut_at_char]) + c.flush(zlib.Z_SYNC_FLUSH)


def test_truncated_gzip_keeps_complete_lines_and_reports_the_file() -> None:
    lines = [line(event_id=f"e{i}") for i in range(3)]
    cut = len(lines[0]) + 1 + len(lines[1]) + 1 + 20  # 20 bytes into the third line
    result = run([("a.gz", _truncated(lines, cut)), ("b.gz", gz(line(event_id="z")))])
    assert result.events.column("event_id").to_pylist() == ["e0", "e1", "z"]
    rows = quarantine_rows(result)
    assert rows[0] | {"landing_date": None} == {
        "landing_date": None,
        "source_file": "a.gz",
        "line_no": 3,
        "raw": lines[2][:20],
        "reason": "truncated_line",
        "detail": None,
    }
    assert rows[1]["source_file"] == "a.gz"
    assert (rows[1]["line_no"], rows[1]["raw"], rows[1]["reason"]) == (None, None, "truncated_file")
    assert rows[1]["detail"]
    s = result.stats
    assert (s.landed_lines, s.loaded, s.quarantined, s.file_errors) == (4, 3, 1, 1)
    assert s.reasons == {"truncated_line": 1}


def test_truncated_exactly_at_a_line_end_has_no_partial_line() -> None:
    lines = [line(event_id=f"e{i}") for i in range(3)]
    cut = len(lines[0]) + 1
    result = run([("a.gz", _truncated(lines, cut))])
    assert result.events.column("event_id").to_pylist() == ["e0"]
    assert [q["reason"] for q in quarantine_rows(result)] == ["truncated_file"]


def test_byte_truncated_gzip_file() -> None:
    data = gz(*[line(event_id=f"e{i}") for i in range(2000)])
    result = run([("a.gz", data[: len(data) // 2])])
    s = result.stats
    assert s.file_errors == 1
    assert 0 < s.loaded < 2000
    assert s.reasons in ({"truncated_line": 1}, {})
    assert result.events.column("line_no").to_pylist() == list(range(1, s.loaded + 1))


def test_corrupt_deflate_stream_keeps_output_before_the_corruption() -> None:
    data = bytearray(gz(*[line(event_id=f"e{i}") for i in range(5000)]))
    mid = len(data) // 2
    data[mid : mid + 64] = b"\xff" * 64
    result = run([("a.gz", bytes(data))])
    assert result.stats.file_errors == 1
    assert result.stats.loaded > 100
    ids = result.events.column("event_id").to_pylist()
    assert ids == [f"e{i}" for i in range(len(ids))]


def test_bad_crc_is_a_file_error_with_all_lines_kept() -> None:
    data = bytearray(gz(line(event_id="a"), line(event_id="b")))
    data[-8] ^= 0xFF
    result = run([("a.gz", bytes(data))])
    assert result.events.column("event_id").to_pylist() == ["a", "b"]
    assert result.stats.file_errors == 1


def test_not_gzip_at_all() -> None:
    result = run([("a.gz", line().encode() + b"\n"), ("b.gz", gz(line(event_id="b")))])
    assert result.events.column("event_id").to_pylist() == ["b"]
    (q,) = quarantine_rows(result)
    assert (q["source_file"], q["line_no"], q["raw"], q["reason"]) == (
        "a.gz", None, None, "truncated_file",
    )  # fmt: skip
    assert q["detail"]
    assert result.stats.landed_lines == 1


def test_trailing_zero_padding_is_tolerated_but_garbage_is_not() -> None:
    padded = run([("a.gz", gz(line(event_id="a")) + b"\0" * 16)])
    assert (padded.stats.loaded, padded.stats.file_errors) == (1, 0)
    garbage = run([("a.gz", gz(line(event_id="a")) + b"garbage")])
    assert (garbage.stats.loaded, garbage.stats.file_errors) == (1, 1)


def test_empty_day_and_empty_file() -> None:
    empty = run([])
    assert (empty.stats.files, empty.stats.landed_lines, empty.events.num_rows) == (0, 0, 0)
    one = run([("a.gz", b""), ("b.gz", gzip.compress(b""))])
    assert (one.stats.files, one.stats.landed_lines, one.stats.file_errors) == (2, 0, 0)


def test_decompress_lines_returns_lines_numbers_and_error() -> None:
    dl = decompress_lines("a.gz", gz("x", "", "  ", "yy", trailing_newline=False))
    assert dl.lines.to_pylist() == ["x", "yy"]
    assert dl.line_no.to_pylist() == [1, 4]
    assert (dl.error, dl.partial_last) == (None, False)
    long_line = "z" * 40
    dl = decompress_lines("b.gz", _truncated([long_line, long_line], 60))
    assert dl.lines.to_pylist() == [long_line, "z" * 19]
    assert dl.error is not None and dl.partial_last


def test_many_files_and_large_batches_stay_in_order() -> None:
    files = [
        (f"f{k:02d}.gz", gz(*[line(event_id=f"{k}-{i}") for i in range(30_000)])) for k in range(3)
    ]
    result = run(files)
    assert result.stats.loaded == 90_000
    src = result.events.column("source_file").to_pylist()
    assert src == sorted(src)
    assert result.events.column("event_id").to_pylist()[29_999:30_001] == ["0-29999", "1-0"]


# --- property test -----------------------------------------------------------------------------

_valid_line = st.builds(
    lambda eid, et, uid, dwell: line(event_id=eid, event_type=et, user_id=uid, dwell_ms=dwell),
    st.text(min_size=1, max_size=6),
    st.sampled_from(["view", "like", "comment", "share"]),
    st.sampled_from([1, 2, 3]),
    st.one_of(st.none(), st.integers(0, 10**6), st.just(_ABSENT)),
)
_invalid_line = st.one_of(
    st.sampled_from([raw for raw, _ in BAD_CASES]),
    st.text(max_size=20),
    st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"").decode("latin-1")),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    files=st.lists(
        st.lists(st.one_of(_valid_line, _invalid_line), max_size=12), min_size=1, max_size=3
    )
)
def test_random_days_reconcile_and_load_each_valid_id_once(files: list[list[str]]) -> None:
    payload = [
        (f"f{i}.gz", gz(*(ln.replace("\n", " ").replace("\r", " ") for ln in lines)))
        for i, lines in enumerate(files)
    ]
    result = run(payload)
    expected: dict[str, tuple[str, int]] = {}
    for i, lines in enumerate(files):
        for no, ln in enumerate(lines, 1):
            cleaned = ln.replace("\n", " ").replace("\r", " ")
            if _is_valid(cleaned):
                expected.setdefault(json.loads(cleaned)["event_id"], (f"f{i}.gz", no))
    got = {
        r["event_id"]: (r["source_file"], r["line_no"])
        for r in result.events.select(["event_id", "source_file", "line_no"]).to_pylist()
    }
    assert got == expected
    assert result.events.num_rows == len(expected)
    non_blank = sum(
        1
        for lines in files
        for ln in lines
        if ln.replace("\n", " ").replace("\r", " ").encode().strip()
    )
    assert result.stats.landed_lines == non_blank


def _is_valid(raw: str) -> bool:
    """A tiny independent oracle for lines built by the strategies above."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return False
    if not isinstance(obj, dict):
        return False
    for k in ("event_id", "event_type", "user_id", "photo_id", "ts", "client"):
        if obj.get(k) is None:
            return False
    ints_ok = all(type(obj[k]) is int for k in ("user_id", "photo_id"))
    strs_ok = all(isinstance(obj[k], str) for k in ("event_id", "event_type", "ts", "client"))
    dwell = obj.get("dwell_ms")
    if not (ints_ok and strs_ok and (dwell is None or type(dwell) is int)):
        return False
    if obj["event_id"] == "" or obj["event_type"] not in ("view", "like", "comment", "share"):
        return False
    try:
        dt.datetime.fromisoformat(obj["ts"])
    except ValueError:
        return False
    if dwell is not None and dwell < 0:
        return False
    return obj["user_id"] in (1, 2, 3) and obj["photo_id"] in (10, 20, 30)


def test_canonical_fast_path_matches_the_full_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines in the canonical layout skip the full SQL: the outputs must be the same as without."""
    from my_data_platform.core import events as events_mod

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


def _dedup_world(seed: int = 7) -> list[tuple[str, bytes]]:
    """Five files whose ids repeat within and across files, with invalid rows mixed in."""
    rng = np.random.default_rng(seed)
    files = []
    for f in range(5):
        lines = []
        for i in range(400):
            eid = f"id-{int(rng.integers(0, 900))}"
            user = 99 if i % 37 == 0 else 1  # an unknown user never claims its id
            lines.append(line(event_id=eid, user_id=user, dwell_ms=f * 1000 + i))
        files.append((f"day/part-{f}.jsonl.gz", gz(*lines)))
    return files


def _first_wins(files: list[tuple[str, bytes]]) -> tuple[list[tuple[str, int]], int]:
    """The loaded (file, line) pairs and the duplicate count, computed the obvious way."""
    seen: set[str] = set()
    loaded, dups = [], 0
    for name, data in sorted(files):
        for no, text in enumerate(gzip.decompress(data).decode().splitlines(), start=1):
            obj = json.loads(text)
            if obj["user_id"] not in USERS:
                continue
            if obj["event_id"] in seen:
                dups += 1
                continue
            seen.add(obj["event_id"])
            loaded.append((name, no))
    return loaded, dups


@pytest.mark.parametrize("hashing", ["real", "three-values", "all-collide"])
def test_duplicates_are_decided_by_the_ids_not_their_hashes(
    monkeypatch: pytest.MonkeyPatch, hashing: str
) -> None:
    """Within and across files, first (file, line) wins; forcing hash collisions (every id
    in one of three hash values, or all in one) changes nothing: strings decide."""
    import my_data_platform.core.events as events_mod

    real = events_mod._sorted_id_hashes
    if hashing == "three-values":
        monkeypatch.setattr(events_mod, "_sorted_id_hashes", lambda h: real(h % np.uint64(3)))
    elif hashing == "all-collide":
        monkeypatch.setattr(events_mod, "_sorted_id_hashes", lambda h: real(np.zeros_like(h)))
    files = _dedup_world()
    result = run(list(reversed(files)))
    expected, dups = _first_wins(files)
    got = list(
        zip(
            result.events.column("source_file").to_pylist(),
            result.events.column("line_no").to_pylist(),
            strict=True,
        )
    )
    assert got == expected
    assert result.stats.duplicates == dups > 300
    assert len(result.events.column("event_id").unique()) == result.stats.loaded
    q = result.quarantine.to_pylist()
    assert sum(r["reason"] == "duplicate" for r in q) == dups
    for name in {r["source_file"] for r in q}:  # each file's quarantine is in line order
        nos = [r["line_no"] for r in q if r["source_file"] == name]
        assert nos == sorted(nos)


def test_loaded_rows_stream_to_the_sink_file_by_file_in_order() -> None:
    files = _dedup_world(seed=3)
    chunks: list[pa.Table] = []
    result = ingest_day(files, DAY, USERS, PHOTOS, sink=chunks.append)
    assert len(chunks) == len(files)
    assert [c.column("source_file")[0].as_py() for c in chunks if c.num_rows] == sorted(
        n for n, _ in files
    )
    assert pa.concat_tables(chunks).equals(result.events)


def test_without_keeping_events_the_sink_gets_every_row_and_the_result_a_preview() -> None:
    files = _dedup_world(seed=3)
    kept = ingest_day(files, DAY, USERS, PHOTOS)
    chunks: list[pa.Table] = []
    result = ingest_day(files, DAY, USERS, PHOTOS, sink=chunks.append, keep_events=False)
    assert result.events is None
    assert pa.concat_tables(chunks).equals(kept.events)
    assert result.stats == kept.stats
    assert result.quarantine.equals(kept.quarantine)
    assert result.preview.num_rows == 5
    assert result.preview.equals(kept.events.slice(0, 5))
    # its own copy: a slice would keep the buffers of the whole file alive
    assert result.preview.get_total_buffer_size() < 4096 < kept.events.get_total_buffer_size()


def test_not_keeping_events_needs_a_sink() -> None:
    with pytest.raises(ValueError, match="needs a sink"):
        ingest_day(_dedup_world(seed=3), DAY, USERS, PHOTOS, keep_events=False)


def test_a_failing_sink_fails_the_day() -> None:
    def broken(_: pa.Table) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        ingest_day(_dedup_world(seed=4), DAY, USERS, PHOTOS, sink=broken)


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


def _recording_reader(calls: list[str], name: str, value: Any) -> Any:
    """A function that returns ``value`` and notes ``name`` in ``calls`` each time."""

    def read() -> Any:
        calls.append(name)
        return value

    return read


def test_files_given_as_readers_are_read_once_each_and_load_the_same() -> None:
    files = _dedup_world(seed=5)
    reads: list[str] = []
    lazy = ingest_day([(n, _recording_reader(reads, n, d)) for n, d in files], DAY, USERS, PHOTOS)
    eager = ingest_day(files, DAY, USERS, PHOTOS)
    assert sorted(reads) == sorted(n for n, _ in files)  # each file read exactly once
    assert lazy.events.equals(eager.events)
    assert lazy.quarantine.equals(eager.quarantine)
    assert lazy.stats == eager.stats


def test_known_ids_given_as_readers_are_read_once_and_a_failing_read_fails_the_day() -> None:
    files = _dedup_world(seed=7)
    calls: list[str] = []
    users, photos = (
        _recording_reader(calls, n, v) for n, v in (("users", USERS), ("photos", PHOTOS))
    )
    lazy = ingest_day(files, DAY, users, photos)
    assert sorted(calls) == ["photos", "users"]
    eager = ingest_day(files, DAY, USERS, PHOTOS)
    assert lazy.events.equals(eager.events) and lazy.stats == eager.stats

    def broken() -> np.ndarray:
        raise RuntimeError("OLTP table 'users' does not exist")

    written: list[pa.Table] = []
    with pytest.raises(RuntimeError, match="OLTP table 'users'"):
        ingest_day(files, DAY, broken, PHOTOS, sink=written.append)
    assert written == []  # nothing reached the lake
