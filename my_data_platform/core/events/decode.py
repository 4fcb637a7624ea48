"""Decoding a landed file: inflate the gzip (ISA-L, then an exact fallback) or take plain JSON
Lines as they are (told apart by the gzip magic bytes, not the name), within the landing limits;
find the line boundaries with numpy and expose the lines as a zero-copy Arrow ``string_view``
array."""

from __future__ import annotations

import codecs
import hashlib
import zlib
from typing import NamedTuple

import numpy as np
import pyarrow as pa
from isal import isal_zlib

from my_data_platform.core.events.contract import (
    DEFAULT_LIMITS,
    RAW_PREFIX_BYTES,
    LandingLimits,
)

#: Bytes that ``bytes.strip()`` removes: a line made only of these is blank.
_WS = np.zeros(256, dtype=bool)
_WS[list(b" \t\n\r\x0b\x0c")] = True
_INLINE = 12  # Arrow string_view stores strings up to 12 bytes inside the view itself
_SEGMENT = 1 << 30  # one variadic buffer per GiB keeps every view offset inside int32
_SAFE_CHUNK = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b"
TRUNCATED_FILE = "truncated_file"
FILE_TOO_LARGE = "file_too_large"


class LongLines(NamedTuple):
    """Lines over ``max_line_bytes``: in ``DecodedLines.lines`` only a prefix of each is kept."""

    rid: np.ndarray
    """Ascending indices into ``DecodedLines.lines``."""
    length: np.ndarray
    """int64, each line's full length in bytes."""
    offset: np.ndarray
    """int64, each line's byte offset in the inflated file."""
    sha256: list[str]
    """Each line's sha256, hex."""


_NO_LONG_LINES = LongLines(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), [])


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
    error_reason: str = TRUNCATED_FILE
    """The quarantine reason of ``error``: ``truncated_file`` or ``file_too_large``."""
    long_lines: LongLines = _NO_LONG_LINES


class _TooLarge(Exception):
    """The file inflates past the limit."""


def _too_large(limit: int) -> str:
    return f"inflates to more than {limit} bytes (MDP_LANDING_MAX_INFLATED_BYTES)"


def _inflate_careful(data: bytes, limit: int) -> tuple[bytes, str | None]:
    """Inflate with stdlib zlib, keeping every byte produced before a corrupt spot.

    Only used after the fast path failed. Input goes in small chunks with a snapshot before
    each, and the failing chunk is replayed byte by byte, so the output stops exactly where
    the stream broke. Raises ``_TooLarge`` once the output passes ``limit`` (one chunk
    inflates to 64 MiB at most, so that is as far as it overshoots).
    """
    out: list[bytes] = []
    total = 0
    view = memoryview(data)
    pos, size = 0, len(data)
    while pos < size:
        if total > limit:
            raise _TooLarge
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
                total += len(out[-1])
                if total > limit:
                    raise _TooLarge
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


def _inflate(data: bytes, limit: int) -> tuple[bytes, str | None]:
    """Inflate a possibly multi-member gzip file; return the bytes and the error, if any.

    Never holds more than about ``limit`` inflated bytes: raises ``_TooLarge`` past it.
    """
    if not data:
        return b"", None
    try:
        d = isal_zlib.decompressobj(wbits=31)
        out = d.decompress(data, limit + 1)
        if len(out) > limit:
            raise _TooLarge
        if d.eof and not d.unused_data:
            return out, None
        del out
    except isal_zlib.error:
        pass
    # Multi-member, padded, truncated or corrupt: the exact but slower path.
    return _inflate_careful(data, limit)


def _content(data: bytes, limit: int) -> tuple[bytes, str | None]:
    """The file's JSON Lines text: gzip is recognised by its magic bytes, whatever the name."""
    if data[:2] == _GZIP_MAGIC:
        return _inflate(data, limit)
    if len(data) > limit:
        raise _TooLarge
    return data, None


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


def _long_lines(text: bytes, starts: np.ndarray, lens: np.ndarray, limit: int) -> LongLines:
    rid = np.flatnonzero(lens > limit)
    if rid.size == 0:
        return _NO_LONG_LINES
    view = memoryview(text)
    s, n = starts[rid].astype(np.int64), lens[rid].astype(np.int64)
    digests = [hashlib.sha256(view[a : a + b]).hexdigest() for a, b in zip(s, n, strict=True)]
    return LongLines(rid, n, s, digests)


def decompress_lines(
    name: str, data: bytes, limits: LandingLimits = DEFAULT_LIMITS
) -> DecodedLines:
    """Inflate one landed file and cut it into its non-blank lines, zero-copy.

    ``name`` identifies the file to callers that log per file. A file that stops early still
    yields every line that was inflated; the error says why it stopped and ``partial_last``
    marks a cut line. A file over ``limits.max_inflated_bytes`` yields no lines and the error
    ``file_too_large``; a line over ``limits.max_line_bytes`` keeps only its first
    ``RAW_PREFIX_BYTES`` (escaped) and is listed in ``long_lines``.
    """
    try:
        text, error = _content(data, limits.max_inflated_bytes)
    except _TooLarge:
        empty = pa.array([], pa.string_view())
        no_lines = pa.array([], pa.int64())
        return DecodedLines(
            empty, no_lines, _too_large(limits.max_inflated_bytes), False, FILE_TOO_LARGE
        )
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
    lens = ends - starts
    long = _long_lines(text, starts, lens, limits.max_line_bytes)
    if long.rid.size:  # only a prefix of each is kept, as an escaped copy
        lens = lens.copy()
        lens[long.rid] = np.minimum(lens[long.rid], RAW_PREFIX_BYTES)
        bad = np.union1d(bad, long.rid)
    lines = _lines_array(text, starts, lens, bad)
    return DecodedLines(lines, pa.array(line_no, pa.int64()), error, partial_last, long_lines=long)


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
