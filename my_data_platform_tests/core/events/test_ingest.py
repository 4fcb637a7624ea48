"""The day: id checks, reconciliation, file order, sinks and readers."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from my_data_platform.core.events import (
    ingest_day,
)
from my_data_platform_tests.core.events.landed import (
    _ABSENT,
    BAD_CASES,
    DAY,
    PHOTOS,
    USERS,
    _dedup_world,
    gz,
    line,
    run,
)


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


def test_empty_day_and_empty_file() -> None:
    empty = run([])
    assert (empty.stats.files, empty.stats.landed_lines, empty.events.num_rows) == (0, 0, 0)
    one = run([("a.gz", b""), ("b.gz", gzip.compress(b""))])
    assert (one.stats.files, one.stats.landed_lines, one.stats.file_errors) == (2, 0, 0)


def test_many_files_and_large_batches_stay_in_order() -> None:
    files = [
        (f"f{k:02d}.gz", gz(*[line(event_id=f"{k}-{i}") for i in range(30_000)])) for k in range(3)
    ]
    result = run(files)
    assert result.stats.loaded == 90_000
    src = result.events.column("source_file").to_pylist()
    assert src == sorted(src)
    assert result.events.column("event_id").to_pylist()[29_999:30_001] == ["0-29999", "1-0"]


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
