"""The event contract: the fields of a landed event line, the lake's two schemas and the limits
on what landing accepts."""

from __future__ import annotations

from dataclasses import dataclass

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
        # Set where the text was cut or not kept (a line or file over a limit, an unreadable
        # file): the full size in bytes, its sha256 (hex) and the line's byte offset.
        pa.field("length", pa.int64()),
        pa.field("sha256", pa.string()),
        pa.field("offset", pa.int64()),
    ]
)

#: Bytes of a too-long line kept in the quarantine's ``raw``.
RAW_PREFIX_BYTES = 4096


@dataclass(frozen=True)
class LandingLimits:
    """What one landed file may cost: over a limit, the file or line is quarantined."""

    max_inflated_bytes: int = 512 << 20
    """A file that inflates to more is one ``file_too_large`` row (never inflated further)."""
    max_line_bytes: int = 1 << 20
    """A longer line is a ``line_too_long`` row with the first ``RAW_PREFIX_BYTES`` of it."""


DEFAULT_LIMITS = LandingLimits()
