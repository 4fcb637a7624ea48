"""Decoding landed files: gzip members, truncation and corruption, blank lines, bad UTF-8."""

from __future__ import annotations

import gzip
import zlib

from my_data_platform.core.events import (
    decompress_lines,
)
from my_data_platform_tests.core.events.landed import (
    gz,
    line,
    quarantine_rows,
    run,
)


def test_invalid_utf8_is_malformed_and_raw_keeps_the_bytes_visible() -> None:
    raw = b'{"event_id":"\xff\xfe","event_type":"view"}'
    data = gzip.compress(line(event_id="a").encode() + b"\n" + raw + b"\n")
    result = run([("a.gz", data)])
    (q,) = quarantine_rows(result)
    assert (q["line_no"], q["reason"]) == (2, "malformed_json")
    assert q["raw"] == raw.decode("utf-8", "backslashreplace")
    assert result.stats.loaded == 1


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
        "length": None,
        "sha256": None,
        "offset": None,
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


def test_plain_json_lines_are_read_by_content_whatever_the_name_says() -> None:
    # Issue 15: a plain file used to be gunzipped and recorded as truncated (silent loss).
    plain = line(event_id="p").encode() + b"\n"
    result = run(
        [("a.gz", plain), ("b.jsonl", line(event_id="q").encode()), ("c.jsonl", gz(line()))]
    )
    assert result.events.column("event_id").to_pylist() == ["p", "q", "e-1"]
    assert quarantine_rows(result) == []
    assert result.stats.landed_lines == 3


def test_trailing_zero_padding_is_tolerated_but_garbage_is_not() -> None:
    padded = run([("a.gz", gz(line(event_id="a")) + b"\0" * 16)])
    assert (padded.stats.loaded, padded.stats.file_errors) == (1, 0)
    garbage = run([("a.gz", gz(line(event_id="a")) + b"garbage")])
    assert (garbage.stats.loaded, garbage.stats.file_errors) == (1, 1)


def test_decompress_lines_returns_lines_numbers_and_error() -> None:
    dl = decompress_lines("a.gz", gz("x", "", "  ", "yy", trailing_newline=False))
    assert dl.lines.to_pylist() == ["x", "yy"]
    assert dl.line_no.to_pylist() == [1, 4]
    assert (dl.error, dl.partial_last) == (None, False)
    long_line = "z" * 40
    dl = decompress_lines("b.gz", _truncated([long_line, long_line], 60))
    assert dl.lines.to_pylist() == [long_line, "z" * 19]
    assert dl.error is not None and dl.partial_last
