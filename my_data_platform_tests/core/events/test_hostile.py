"""Hostile landed files (issue 15): limits, per-file failures, content sniffing, names, and the
same quarantine for the same input."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from typing import Any

import pyarrow as pa
import pytest

from my_data_platform.core.duck import quote_ident
from my_data_platform.core.events import LandingLimits, ingest_day
from my_data_platform.core.events.contract import RAW_PREFIX_BYTES
from my_data_platform.core.objectstore import InvalidKeyError, ObjectNotFoundError, validate_key
from my_data_platform.core.versioning.base import looks_like_commit_id, validate_ref_name
from my_data_platform_tests.core.events.landed import DAY, PHOTOS, USERS, gz, line, run

SMALL = LandingLimits(max_inflated_bytes=64 << 10, max_line_bytes=1000)


def _run(files: list[tuple[str, Any]], limits: LandingLimits = SMALL) -> Any:
    result = ingest_day(files, DAY, USERS, PHOTOS, limits=limits)
    s = result.stats
    assert s.landed_lines == s.loaded + s.quarantined  # reconciliation holds for every attack
    assert result.quarantine.num_rows == s.quarantined + s.file_errors
    return result


def _rows(result: Any, *cols: str) -> list[tuple[Any, ...]]:
    return [tuple(r[c] for c in cols) for r in result.quarantine.to_pylist()]


def test_a_long_line_keeps_a_prefix_its_length_digest_and_offset() -> None:
    first = line(event_id="ok-1")
    huge = '{"event_id":"ab' + "é" * 3000 + '"}'  # 6000+ bytes: the cut falls inside a char
    result = _run([("a.gz", gz(first, huge, line(event_id="ok-2")))])
    assert result.events.column("event_id").to_pylist() == ["ok-1", "ok-2"]
    ((no, raw, reason, length, digest, offset),) = _rows(
        result, "line_no", "raw", "reason", "length", "sha256", "offset"
    )
    full = huge.encode()
    assert (no, reason, length, offset) == (2, "line_too_long", len(full), len(first) + 1)
    assert digest == hashlib.sha256(full).hexdigest()
    assert full[:RAW_PREFIX_BYTES].decode("utf-8", "backslashreplace") == raw
    assert raw.startswith('{"event_id":"abéé') and raw.endswith("\\xc3")  # the cut, escaped


def test_a_huge_event_id_under_the_default_limit_is_never_parsed() -> None:
    huge = line(event_id="x" * (2 << 20))  # 2 MiB: over the default 1 MiB line limit
    result = run([("a.gz", gz(huge, line(event_id="ok")))])
    assert result.events.column("event_id").to_pylist() == ["ok"]
    ((raw, reason, length),) = _rows(result, "raw", "reason", "length")
    assert (reason, length, len(raw)) == ("line_too_long", len(huge), RAW_PREFIX_BYTES)


def test_lines_under_the_limit_are_kept_whole() -> None:
    bad = '{"event_id": ' + '"y' * 400  # malformed, 801 bytes: under the 1000-byte limit
    result = _run([("a.gz", gz(bad))])
    assert _rows(result, "raw", "reason", "length") == [(bad, "malformed_json", None)]


@pytest.mark.parametrize(
    "bomb",
    [
        pytest.param(gzip.compress(b"\0" * (1 << 20)), id="one-member"),
        pytest.param(b"".join(gzip.compress(b"\n" * (8 << 10)) for _ in range(64)), id="members"),
        pytest.param(line().encode() * 4000, id="plain"),
    ],
)
def test_a_file_over_the_inflated_limit_is_one_row_and_the_rest_loads(bomb: bytes) -> None:
    result = _run([("a.gz", bomb), ("b.gz", gz(line(event_id="b")))])
    assert result.events.column("event_id").to_pylist() == ["b"]
    ((name, no, raw, reason, length, digest),) = _rows(
        result, "source_file", "line_no", "raw", "reason", "length", "sha256"
    )
    assert (name, no, raw, reason) == ("a.gz", None, None, "file_too_large")
    assert (length, digest) == (len(bomb), hashlib.sha256(bomb).hexdigest())
    assert result.stats.landed_lines == 1 and result.stats.file_errors == 1


def test_content_decides_gzip_or_plain_whatever_the_name() -> None:
    plain, packed = line(event_id="p").encode(), gz(line(event_id="g"))
    result = _run([("a.jsonl", plain), ("b.jsonl", packed), ("c.jsonl.gz", plain)])
    assert result.events.column("event_id").to_pylist() == ["p", "g"]
    assert result.stats.duplicates == 1  # c.jsonl.gz repeats a's event: it was read, as plain


def _raising(exc: BaseException) -> Any:
    def read() -> bytes:
        raise exc

    return read


def test_every_per_file_failure_is_one_row_and_the_others_load() -> None:
    ok = gz(line(event_id="ok"))
    files = [
        ("a/denied.gz", _raising(PermissionError(13, "Permission denied", "/secret/path"))),
        ("a/gone.gz", _raising(ObjectNotFoundError("'a/gone.gz' not found"))),
        ("a/odd.gz", _raising(RuntimeError("cannot read <_io.BytesIO object at 0x7f3a2b1c0d90>"))),
        ("a/bad\udcffname.gz", ok),  # a byte that is not UTF-8, as os.scandir gives it
        ("a/ctl\x07.gz", ok),
        ("a/newline.gz\n", ok),
        ("a/ok.gz", ok),
        ("a/corrupt.gz", b"\x1f\x8b" + b"\xff" * 40),
    ]
    result = _run(files)
    assert result.events.column("event_id").to_pylist() == ["ok"]
    assert _rows(result, "source_file", "reason", "detail") == [
        ("a/bad\\udcffname.gz", "invalid_name", "not a valid object key"),
        ("a/corrupt.gz", "truncated_file", "corrupt gzip data at byte 3: "
         "Error -3 while decompressing data: unknown compression method"),
        ("a/ctl\x07.gz", "invalid_name", "not a valid object key"),
        ("a/denied.gz", "permission_denied", "PermissionError: Permission denied"),
        ("a/gone.gz", "unreadable_file", "the object vanished after it was listed"),
        ("a/newline.gz\n", "invalid_name", "not a valid object key"),
        ("a/odd.gz", "unreadable_file", "RuntimeError: cannot read <_io.BytesIO object>"),
    ]  # fmt: skip


def test_utf8_names_load_and_an_nfc_twin_is_quarantined() -> None:
    composed, decomposed = "día/café.gz", "día/cafe\u0301.gz"
    result = _run(
        [
            (composed, gz(line(event_id="c"))),
            (decomposed, gz(line(event_id="d"))),
            ("día/日本.gz", gz(line(event_id="j"))),
        ]
    )
    # the second in name order ("e" + U+0301 sorts before "é") is the duplicate
    assert sorted(result.events.column("event_id").to_pylist()) == ["d", "j"]
    assert _rows(result, "source_file", "reason") == [(composed, "duplicate_name")]
    assert set(result.events.column("source_file").to_pylist()) == {decomposed, "día/日本.gz"}


def _hostile_day() -> list[tuple[str, Any]]:
    truncated = zlib.compressobj(wbits=31)
    cut = truncated.compress((line() + "\n" + line(event_id="z")).encode())
    return [
        ("h/bomb.gz", gzip.compress(b"\0" * (1 << 20), mtime=0)),
        ("h/long.gz", gz(line(event_id="x" * 5000), line(event_id="k"), "not json")),
        ("h/cut.gz", cut + truncated.flush(zlib.Z_SYNC_FLUSH)),
        ("h/odd.gz", _raising(ValueError("bad <object object at 0xdeadbeef>"))),
        ("h/denied.gz", _raising(PermissionError(13, "Permission denied", "/x"))),
        ("h/x\udcff.gz", b""),
        ("h/plain.jsonl", line(event_id="k").encode()),
    ]


def test_the_same_hostile_day_gives_the_same_quarantine() -> None:
    # built twice: equal bytes (gzip headers carry no time), new exceptions
    first, second = _run(_hostile_day()), _run(_hostile_day())
    assert first.quarantine.num_rows == 9
    assert first.quarantine.equals(second.quarantine)
    assert first.events.equals(second.events)
    assert not any("0x" in (d or "") for d in first.quarantine.column("detail").to_pylist())


@pytest.mark.parametrize(
    "key",
    ["a/b.gz\n", "a/b.gz\r", "a\n/b.gz", "a/b\x00.gz", "a/\x85b.gz", "a/b\u202e.gz", "a/\udcff"],
)
def test_keys_with_control_characters_or_a_trailing_newline_are_refused(key: str) -> None:
    with pytest.raises(InvalidKeyError):
        validate_key(key)


@pytest.mark.parametrize("key", ["día/café.jsonl.gz", "a/日本 語.gz", "a/cafe\u0301.gz"])
def test_utf8_keys_are_valid_as_they_are(key: str) -> None:
    assert validate_key(key) == key


def test_quarantine_columns_for_ordinary_lines_are_null() -> None:
    result = _run([("a.gz", gz("nope"))])
    q = result.quarantine
    assert q.column("length").null_count == q.column("offset").null_count == 1
    assert q.schema.field("sha256").type == pa.string()


@pytest.mark.parametrize(
    "check",
    [
        pytest.param(validate_ref_name, id="versioning-ref"),
        pytest.param(quote_ident, id="duckdb-identifier"),
    ],
)
def test_refs_and_identifiers_ending_in_a_newline_are_refused(check: Any) -> None:
    assert check("main") in ("main", '"main"')
    with pytest.raises(ValueError):
        check("main\n")


def test_a_commit_id_with_a_trailing_newline_is_not_a_commit_id() -> None:
    assert looks_like_commit_id("a" * 64)
    assert not looks_like_commit_id("a" * 64 + "\n")
