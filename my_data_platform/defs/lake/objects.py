"""Where lake objects live and how they are read and written: keys, paths, the landing layout.

Shared by the lake assets, the landing sensors, the warehouse, features, datasets and ``mdp``.
"""

import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from my_data_platform.core.events import EVENTS_SCHEMA
from my_data_platform.core.objectstore import ObjectInfo, ObjectNotFoundError, ObjectStore

EVENTS_KEY = dg.AssetKey(["lake", "events"])
EVENTS_QUARANTINE_KEY = dg.AssetKey(["lake", "events_quarantine"])
PHOTOS_KEY = dg.AssetKey(["lake", "photos"])
PHOTOS_QUARANTINE_KEY = dg.AssetKey(["lake", "photos_quarantine"])


def landing_events_prefix(day: str) -> str:
    return f"landing/events/date={day}/"


def legacy_lake_events_object(day: str) -> str:
    """The fixed-name events object of a day published before pointers (an old data dir)."""
    return f"lake/events/date={day}/events.parquet"


def legacy_lake_events_quarantine_object(day: str) -> str:
    return f"lake/events_quarantine/date={day}/quarantine.parquet"


PHOTOS_MANIFEST_OBJECT = "lake/photos/manifest.parquet"
PHOTOS_QUARANTINE_OBJECT = "lake/photos_quarantine/quarantine.parquet"


ROW_GROUP_SIZE = 1_000_000
#: For lake/events: dictionary pages only where values repeat (on millions of unique event
#: ids the writer would build a dictionary only to give it up), and delta encoding for the
#: integer columns: about a third of the CPU of plain + zstd, and as small or smaller (line
#: numbers and timestamps are nearly sorted). Min/max statistics only where they can skip
#: row groups: not for event_type and client, whose few values are in every row group (their
#: string comparisons were a fifth of the encode). DuckDB, Polars and pyarrow all read it.
EVENTS_PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": ["event_type", "client", "landing_date", "source_file"],
    "write_statistics": [f for f in EVENTS_SCHEMA.names if f not in ("event_type", "client")],
    "column_encoding": {
        c: "DELTA_BINARY_PACKED" for c in ("user_id", "photo_id", "ts", "dwell_ms", "line_no")
    },
}


# --- a landing day's publish: two objects of one generation, and the pointer that names them --


EVENTS_PREFIX = "lake/events/"
EVENTS_QUARANTINE_PREFIX = "lake/events_quarantine/"
POINTER_NAME = "_published.json"
POINTER_VERSION = 1


def lake_events_pointer(day: str) -> str:
    """The one object whose atomic put publishes a day: readers resolve the day through it."""
    return f"{EVENTS_PREFIX}date={day}/{POINTER_NAME}"


def new_generation(run_id: str, now: dt.datetime | None = None) -> str:
    """A generation name unique to one publish that sorts by time: UTC to the microsecond,
    then the run id's first 8 characters (two runs in one microsecond still differ)."""
    when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return f"{when:%Y%m%dT%H%M%S%fZ}-{run_id[:8]}"


def lake_events_generation_object(day: str, generation: str) -> str:
    return f"{EVENTS_PREFIX}date={day}/events-{generation}.parquet"


def lake_events_quarantine_generation_object(day: str, generation: str) -> str:
    return f"{EVENTS_QUARANTINE_PREFIX}date={day}/quarantine-{generation}.parquet"


class PublishedDayError(ValueError):
    """A day's pointer cannot be read; the message names the pointer object."""


@dataclass(frozen=True)
class PublishedDay:
    """What a landing day currently is in the lake: the objects its pointer names (or, for a
    day published before pointers, its fixed-name objects, with ``generation`` None)."""

    day: str
    events_key: str
    quarantine_key: str
    generation: str | None = None
    pointer_key: str | None = None
    run_id: str | None = None
    landing_digest: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def keys(self) -> tuple[str, ...]:
        """Every object this publish consists of, the pointer included."""
        keys = (self.events_key, self.quarantine_key)
        return keys + ((self.pointer_key,) if self.pointer_key else ())

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "version": POINTER_VERSION,
                "day": self.day,
                "generation": self.generation,
                "events": self.events_key,
                "quarantine": self.quarantine_key,
                "run_id": self.run_id,
                "landing_digest": self.landing_digest,
                "counts": self.counts,
            },
            indent=1,
            sort_keys=True,
        ).encode()


def _parse_pointer(day: str, key: str, raw: bytes) -> PublishedDay:
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("version") != POINTER_VERSION:
            raise ValueError(f"version {data.get('version') if isinstance(data, dict) else '?'}")
        events, quarantine = str(data["events"]), str(data["quarantine"])
        if not events.startswith(f"{EVENTS_PREFIX}date={day}/") or not quarantine.startswith(
            f"{EVENTS_QUARANTINE_PREFIX}date={day}/"
        ):
            raise ValueError(f"it names objects outside day {day}")
        return PublishedDay(
            day=day,
            events_key=events,
            quarantine_key=quarantine,
            generation=str(data["generation"]),
            pointer_key=key,
            run_id=data.get("run_id"),
            landing_digest=data.get("landing_digest"),
            counts={str(k): int(v) for k, v in (data.get("counts") or {}).items()},
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PublishedDayError(
            f"lake pointer {key!r} is not a version-{POINTER_VERSION} publish record ({exc}); "
            "re-materialize lake/events for that day"
        ) from None


def published_day(store: ObjectStore, day: str) -> PublishedDay | None:
    """The day as readers must see it: what its pointer names; the legacy fixed-name objects
    when it has no pointer; None when it was never published (or only torn by a crash)."""
    key = lake_events_pointer(day)
    try:
        return _parse_pointer(day, key, store.get_bytes(key))
    except ObjectNotFoundError:
        pass
    # Before pointers, events.parquet was renamed into place after quarantine.parquet.
    if store.exists(legacy_lake_events_object(day)):
        return PublishedDay(
            day, legacy_lake_events_object(day), legacy_lake_events_quarantine_object(day)
        )
    return None


def published_days(store: ObjectStore) -> dict[str, PublishedDay]:
    """Every published day, sorted, from one listing of ``lake/events/``."""
    names: dict[str, set[str]] = {}
    for o in store.list(EVENTS_PREFIX):
        parts = o.key.split("/")
        if len(parts) == 4 and parts[2].startswith("date="):
            names.setdefault(parts[2].removeprefix("date="), set()).add(parts[3])
    out: dict[str, PublishedDay] = {}
    for day, files in sorted(names.items()):
        if POINTER_NAME in files or "events.parquet" in files:
            got = published_day(store, day)  # the pointer may have come or gone since listing
            if got is not None:
                out[day] = got
    return out


def referenced_lake_keys(store: ObjectStore) -> set[str]:
    """Every object under ``lake/`` that readers may reach: what any day's pointer names (or a
    legacy day's fixed-name objects), the pointers, the image manifest and its quarantine, and
    every object outside the two generation-managed prefixes (features, photos: replaced in
    place, never orphaned). Anything else under ``lake/`` is a crashed or superseded
    generation. A publish in progress writes its objects before its pointer, so they are not
    referenced yet: a deleter must spare objects younger than the longest lake/events run."""
    keys = {PHOTOS_MANIFEST_OBJECT, PHOTOS_QUARANTINE_OBJECT}
    for day in published_days(store).values():
        keys.update(day.keys)
    managed = (EVENTS_PREFIX, EVENTS_QUARANTINE_PREFIX)
    keys.update(o.key for o in store.list("lake/") if not o.key.startswith(managed))
    return keys


def write_parquet(store: ObjectStore, key: str, table: pa.Table) -> None:
    with store.writing(key, suffix=".parquet") as path:
        pq.write_table(table, path, compression="zstd", row_group_size=ROW_GROUP_SIZE)


def read_parquet(store: ObjectStore, key: str) -> pa.Table:
    return pq.read_table(io.BytesIO(store.get_bytes(key)))


EVENT_SUFFIXES = (".jsonl.gz", ".jsonl")


def event_day(key: str) -> str | None:
    """The landing day of an event file key (``landing/events/date=YYYY-MM-DD/<name>``), or
    None when the key is not an event file: the one place the landing layout is parsed."""
    parts = key.split("/")
    if len(parts) != 4 or not key.endswith(EVENT_SUFFIXES) or not parts[2].startswith("date="):
        return None
    day = parts[2].removeprefix("date=")
    try:
        dt.date.fromisoformat(day)
    except ValueError:
        return None
    return day if len(day) == 10 else None


def landing_digest(objs: Iterable[ObjectInfo]) -> str:
    """An order-independent fingerprint of a set of landed files (key, etag): the XOR of 64-bit
    sha1 prefixes. It is the landing sensor's run key for a day and is recorded on each
    lake/events materialization, so "these exact files were loaded" can be checked later.
    Order independence lets the photo sensor update it incrementally with new keys."""
    return f"{_xor(_file_hash(o) for o in objs):016x}"


def _file_hash(o: ObjectInfo) -> int:
    # surrogateescape: a landed name that is not UTF-8 still has a fingerprint (the same bytes)
    key = f"{o.key}\0{o.etag}".encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.sha1(key).digest()[:8], "big")


def _xor(values: Iterable[int]) -> int:
    return reduce(lambda a, b: a ^ b, values, 0)


def list_landed_days(store: ObjectStore) -> list[str]:
    """Every landing day that has at least one event file, sorted."""
    return sorted({d for o in store.list("landing/events/") if (d := event_day(o.key))})
