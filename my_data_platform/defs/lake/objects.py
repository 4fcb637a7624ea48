"""Where lake objects live and how they are read and written: keys, paths, the landing layout.

Shared by the lake assets, the landing sensors, the warehouse, features, datasets and ``mdp``.
"""

import datetime as dt
import hashlib
import io
from collections.abc import Iterable
from functools import reduce
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from my_data_platform.core.events import EVENTS_SCHEMA
from my_data_platform.core.objectstore import ObjectInfo, ObjectStore

EVENTS_KEY = dg.AssetKey(["lake", "events"])
EVENTS_QUARANTINE_KEY = dg.AssetKey(["lake", "events_quarantine"])
PHOTOS_KEY = dg.AssetKey(["lake", "photos"])
PHOTOS_QUARANTINE_KEY = dg.AssetKey(["lake", "photos_quarantine"])


def landing_events_prefix(day: str) -> str:
    return f"landing/events/date={day}/"


def lake_events_object(day: str) -> str:
    return f"lake/events/date={day}/events.parquet"


def lake_events_quarantine_object(day: str) -> str:
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
