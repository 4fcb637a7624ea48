"""The event contract: the fields of a landed event line and the lake's two schemas."""

from __future__ import annotations

import pyarrow as pa

EVENT_TYPES: tuple[str, ...] = ("view", "like", "comment", "share")
REQUIRED_FIELDS: tuple[str, ...] = ("event_id", "event_type", "user_id", "photo_id", "ts", "client")
#: Every key of the event contract, in the order used for wrong_type / invalid_value.
FIELDS: tuple[str, ...] = (
    "event_id", "event_type", "user_id", "photo_id", "ts", "dwell_ms", "client",
)  # fmt: skip

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("photo_id", pa.int64(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("dwell_ms", pa.int64()),
        pa.field("client", pa.string(), nullable=False),
        pa.field("landing_date", pa.date32(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("line_no", pa.int64(), nullable=False),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("landing_date", pa.date32(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("line_no", pa.int64()),
        pa.field("raw", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
    ]
)
