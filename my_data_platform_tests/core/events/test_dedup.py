"""First-wins deduplication within and across the files of a day."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from my_data_platform_tests.core.events.landed import (
    USERS,
    _dedup_world,
    gz,
    line,
    quarantine_rows,
    run,
)


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
    from my_data_platform.core.events import ingest as events_mod

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
