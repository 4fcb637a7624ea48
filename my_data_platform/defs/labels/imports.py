"""Label Studio exports landed under ``landing/annotations/``: an upload like any other.

Every landed file is listed, its size checked before a byte is read, then parsed by
:func:`core.labelstudio.parse_export`; whatever cannot become an annotation row (the whole
file, one task or one annotation) becomes a quarantine row naming the file and why. Nothing in
one file can stop the others, and a file that vanishes or cannot be read is itself a row.
"""

from __future__ import annotations

import polars as pl

from my_data_platform.core import consensus as C
from my_data_platform.core import labelstudio as LS
from my_data_platform.core.objectstore import InvalidKeyError, ObjectStore, ObjectStoreError

LANDING_ANNOTATIONS = "landing/annotations/"

QUARANTINE_SCHEMA = {
    "annotation_id": pl.String,
    "photo_id": pl.Int64,
    "annotator": pl.String,
    "label": pl.String,
    "source": pl.String,
    "object_key": pl.String,
    "task_index": pl.Int64,
    "reason": pl.String,
    "detail": pl.String,
}
"""The annotation quarantine (``warehouse.annotations_quarantine``): a bad OLTP row keeps its
fields; a bad file or task of an export names the file and the task's index."""


def _file_row(key: str, reason: str, detail: str) -> dict:
    return {"source": LS.SOURCE, "object_key": key, "reason": reason, "detail": detail}


def landed_label_studio(
    store: ObjectStore, label_set: tuple[str, ...], limits: LS.ExportLimits = LS.DEFAULT_LIMITS
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """(annotation rows, quarantine rows, files read) from every landed export, in key order
    (so the same files always give the same rows)."""
    rows: list[pl.DataFrame] = []
    quarantine: list[pl.DataFrame] = []
    bad: list[dict] = []
    files = 0
    for info in sorted(store.list(LANDING_ANNOTATIONS), key=lambda o: o.key):
        files += 1
        if info.size > limits.max_bytes:
            bad.append(
                _file_row(
                    info.key,
                    LS.FILE_TOO_LARGE,
                    f"{info.size} bytes, more than the limit of {limits.max_bytes}",
                )
            )
            continue
        try:
            data = store.get_bytes(info.key)
        except (ObjectStoreError, InvalidKeyError, OSError) as exc:
            bad.append(_file_row(info.key, "unreadable_file", type(exc).__name__))
            continue
        good, q = LS.parse_export(data, info.key, label_set, limits=limits)
        rows.append(good.cast(C.ANNOTATION_SCHEMA))  # type: ignore[arg-type]
        quarantine.append(
            q.select(
                pl.lit(None, pl.String).alias("annotation_id"),
                pl.lit(None, pl.Int64).alias("photo_id"),
                pl.lit(None, pl.String).alias("annotator"),
                pl.lit(None, pl.String).alias("label"),
                pl.lit(LS.SOURCE).alias("source"),
                "object_key",
                "task_index",
                "reason",
                "detail",
            ).cast(QUARANTINE_SCHEMA)  # type: ignore[arg-type]
        )
    quarantine.append(pl.DataFrame(bad, schema=QUARANTINE_SCHEMA))
    out = pl.concat(rows) if rows else pl.DataFrame(schema=C.ANNOTATION_SCHEMA)
    return out, pl.concat(quarantine), files
