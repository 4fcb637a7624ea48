"""Per-file failures of a landed day: names that are not keys, NFC twins, unreadable or
undecodable files. Each is one quarantine row with a reason and a detail that is the same on
every run (no object addresses, no paths)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from typing import NamedTuple

import pyarrow as pa

from my_data_platform.core.events.contract import QUARANTINE_SCHEMA
from my_data_platform.core.objectstore import InvalidKeyError, ObjectNotFoundError, validate_key


class ObjectTooLarge(Exception):
    """Raised by a reader that refuses to read an object whose stored size is over the limit
    (its ``size`` and the ``limit``): the file becomes a ``file_too_large`` row unread."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(size, limit)
        self.size, self.limit = size, limit


class _FileError(NamedTuple):
    """A file that was not read to its end, or not at all: one quarantine row."""

    name: str
    reason: str
    detail: str
    length: int | None = None
    """The stored object's size in bytes, when it was read."""
    sha256: str | None = None


def _of_object(name: str, reason: str, detail: str, data: bytes) -> _FileError:
    return _FileError(name, reason, detail, len(data), hashlib.sha256(data).hexdigest())


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _describe(exc: BaseException) -> str:
    """The same text for the same failure on every run: no object addresses, no paths."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__}: {_ADDRESS.sub('', str(exc))}"[:500]


def _read_failure(name: str, exc: Exception) -> _FileError:
    if isinstance(exc, ObjectTooLarge):
        detail = f"stored object is {exc.size} bytes, over the limit of {exc.limit}; not read"
        return _FileError(name, "file_too_large", detail, exc.size)
    if isinstance(exc, InvalidKeyError):
        return _FileError(name, "invalid_name", "not a valid object key")
    if isinstance(exc, PermissionError):
        return _FileError(name, "permission_denied", _describe(exc))
    if isinstance(exc, ObjectNotFoundError | FileNotFoundError):
        return _FileError(name, "unreadable_file", "the object vanished after it was listed")
    return _FileError(name, "unreadable_file", _describe(exc))


def _name_problem(name: str, seen: set[str]) -> _FileError | None:
    """Names are read by their exact key; NFC only tells whether two of them are one name."""
    try:
        validate_key(name)
    except InvalidKeyError:
        return _FileError(name, "invalid_name", "not a valid object key")
    nfc = unicodedata.normalize("NFC", name)
    if nfc in seen:
        return _FileError(name, "duplicate_name", "an earlier file has the same NFC name")
    seen.add(nfc)
    return None


def _stored_name(name: str) -> str:
    """``name`` as valid UTF-8: a name that is not (undecodable bytes) is shown escaped."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _file_errors(errors: list[_FileError], landing_date: dt.date) -> pa.Table:
    """One quarantine record per file that could not be read to its end."""
    n = len(errors)
    return pa.table(
        {
            "landing_date": pa.repeat(pa.scalar(landing_date, pa.date32()), n),
            "source_file": pa.array([_stored_name(e.name) for e in errors], pa.string()),
            "line_no": pa.nulls(n, pa.int64()),
            "raw": pa.nulls(n, pa.string()),
            "reason": pa.array([e.reason for e in errors], pa.string()),
            "detail": pa.array([e.detail for e in errors], pa.string()),
            "length": pa.array([e.length for e in errors], pa.int64()),
            "sha256": pa.array([e.sha256 for e in errors], pa.string()),
            "offset": pa.nulls(n, pa.int64()),
        },
        schema=QUARANTINE_SCHEMA,
    )
