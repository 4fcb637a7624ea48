"""Landed days for the ingest tests: event lines, gzip files and a checked ``ingest_day`` run."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from typing import Any

import numpy as np

from my_data_platform.core.events import (
    EVENTS_SCHEMA,
    QUARANTINE_SCHEMA,
    IngestResult,
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
