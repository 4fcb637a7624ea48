"""Validation and deduplication of one landed day of activity logs.

Every landed line ends in ``lake/events`` or in ``lake/events_quarantine`` with a reason, so a
partition always reconciles (landed = loaded + quarantined). The design notes are in
``docs/ingest.md``.
"""

from my_data_platform.core.events.contract import (
    EVENT_TYPES,
    EVENTS_SCHEMA,
    FIELDS,
    QUARANTINE_SCHEMA,
    REQUIRED_FIELDS,
    LandingLimits,
)
from my_data_platform.core.events.decode import DecodedLines, decompress_lines
from my_data_platform.core.events.failures import ObjectTooLarge
from my_data_platform.core.events.ingest import (
    PREVIEW_ROWS,
    EventsSink,
    Ids,
    IngestResult,
    IngestStats,
    ingest_day,
)

__all__ = [
    "EVENTS_SCHEMA",
    "EVENT_TYPES",
    "FIELDS",
    "PREVIEW_ROWS",
    "QUARANTINE_SCHEMA",
    "REQUIRED_FIELDS",
    "DecodedLines",
    "EventsSink",
    "Ids",
    "IngestResult",
    "IngestStats",
    "LandingLimits",
    "ObjectTooLarge",
    "decompress_lines",
    "ingest_day",
]
