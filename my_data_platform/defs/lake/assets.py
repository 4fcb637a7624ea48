"""The lake: validated, deduplicated Parquet and the image manifest, in the object store.

Landed files are never modified. Each lake object is written to a temporary location and
published atomically, so re-materializing a partition replaces it in one step.
"""

import datetime as dt
import io
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from my_data_platform.core.events import ingest_day
from my_data_platform.core.images import IMAGE_SUFFIXES, MANIFEST_SCHEMA, build_manifest
from my_data_platform.core.objectstore import ObjectNotFoundError, ObjectStore
from my_data_platform.defs.lake.resources import ObjectStoreResource
from my_data_platform.defs.metadata import markdown_preview, table_metadata
from my_data_platform.defs.partitions import event_days
from my_data_platform.defs.sources.resources import OLTPResource

EVENTS_KEY = dg.AssetKey(["lake", "events"])
EVENTS_QUARANTINE_KEY = dg.AssetKey(["lake", "events_quarantine"])
PHOTOS_KEY = dg.AssetKey(["lake", "photos"])
PHOTOS_QUARANTINE_KEY = dg.AssetKey(["lake", "photos_quarantine"])
RECONCILE_CHECK = "landed_equals_loaded_plus_quarantined"


def landing_events_prefix(day: str) -> str:
    return f"landing/events/date={day}/"


def lake_events_object(day: str) -> str:
    return f"lake/events/date={day}/events.parquet"


def lake_events_quarantine_object(day: str) -> str:
    return f"lake/events_quarantine/date={day}/quarantine.parquet"


PHOTOS_MANIFEST_OBJECT = "lake/photos/manifest.parquet"
PHOTOS_QUARANTINE_OBJECT = "lake/photos_quarantine/quarantine.parquet"


def write_parquet(store: ObjectStore, key: str, table: pa.Table) -> None:
    with store.writing(key, suffix=".parquet") as path:
        pq.write_table(table, path, compression="zstd", row_group_size=1_000_000)


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


def list_landed_days(store: ObjectStore) -> list[str]:
    """Every landing day that has at least one event file, sorted."""
    return sorted({d for o in store.list("landing/events/") if (d := event_day(o.key))})


def _parse_day(day: str) -> dt.date:
    try:
        return dt.date.fromisoformat(day)
    except ValueError:
        raise dg.Failure(f"partition key {day!r} is not a YYYY-MM-DD landing day") from None


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            EVENTS_KEY,
            deps=[["landing", "events"], ["oltp", "users"], ["oltp", "photos"]],
            kinds={"s3", "parquet", "duckdb"},
            description=(
                "One landing day of activity events, validated against the event schema and "
                "deduplicated by event id, as Parquet in the lake. Only events that reference "
                "known users and photos get here, so every downstream number is trustworthy."
            ),
            metadata={"dagster/uri": "lake/events/date=<day>/events.parquet"},
        ),
        dg.AssetSpec(
            EVENTS_QUARANTINE_KEY,
            deps=[["landing", "events"]],
            kinds={"s3", "parquet"},
            description=(
                "Every landed line that was not loaded, with its original text, file, line number "
                "and reason (malformed JSON, missing field, wrong type, unknown id, duplicate), "
                "plus one record per unreadable file. Nothing that lands is silently dropped."
            ),
        ),
    ],
    partitions_def=event_days,
    group_name="lake",
    check_specs=[
        dg.AssetCheckSpec(
            RECONCILE_CHECK,
            asset=EVENTS_KEY,
            blocking=True,
            description="Landed lines = loaded rows + quarantined rows, exactly, for the day.",
        )
    ],
    can_subset=False,
)
def lake_events(
    context: dg.AssetExecutionContext, object_store: ObjectStoreResource, oltp: OLTPResource
):
    day = context.partition_key
    date = _parse_day(day)
    store = object_store.get_store()
    prefix = landing_events_prefix(day)
    keys = [o.key for o in store.list(prefix) if event_day(o.key) == day]
    if not keys:
        raise dg.Failure(
            f"no landed event files for partition {day}: nothing under {prefix!r} in "
            f"{store.describe()}"
        )
    user_ids = oltp.read_ids("users", "user_id")
    photo_ids = oltp.read_ids("photos", "photo_id")
    with ThreadPoolExecutor(max_workers=4) as pool:  # I/O bound on S3
        payloads = list(pool.map(store.get_bytes, keys))
    result = ingest_day(zip(keys, payloads, strict=True), date, user_ids, photo_ids)
    del payloads
    stats = result.stats
    write_parquet(store, lake_events_object(day), result.events)
    write_parquet(store, lake_events_quarantine_object(day), result.quarantine)
    context.log.info(
        "day %s: %d files, %d landed lines, %d loaded, %d quarantined (%d duplicates), "
        "%d unreadable files",
        day,
        stats.files,
        stats.landed_lines,
        stats.loaded,
        stats.quarantined,
        stats.duplicates,
        stats.file_errors,
    )
    counts = {
        "files": stats.files,
        "landed_lines": stats.landed_lines,
        "loaded": stats.loaded,
        "quarantined": stats.quarantined,
        "duplicates": stats.duplicates,
        "file_errors": stats.file_errors,
        "extra_field_lines": stats.extra_field_lines,
    }
    yield dg.MaterializeResult(
        asset_key=EVENTS_KEY,
        metadata={
            **table_metadata(result.events),
            **counts,
            "dagster/uri": store.uri(lake_events_object(day)),
        },
    )
    reasons = pl.DataFrame(
        {"reason": list(stats.reasons), "count": list(stats.reasons.values())},
        schema={"reason": pl.String, "count": pl.Int64},
    ).sort("count", descending=True)
    yield dg.MaterializeResult(
        asset_key=EVENTS_QUARANTINE_KEY,
        metadata={
            **table_metadata(result.quarantine),
            "quarantined": stats.quarantined,
            "file_errors": stats.file_errors,
            "reasons": dg.MetadataValue.md(markdown_preview(reasons, rows=50)),
            "dagster/uri": store.uri(lake_events_quarantine_object(day)),
        },
    )
    yield dg.AssetCheckResult(
        check_name=RECONCILE_CHECK,
        asset_key=EVENTS_KEY,
        passed=stats.landed_lines == stats.loaded + stats.quarantined,
        metadata=counts,
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            PHOTOS_KEY,
            deps=[["landing", "photos"]],
            kinds={"s3", "parquet", "pillow"},
            description=(
                "The image manifest: for every landed image file its key, size, sha256, width, "
                "height, format and whether it decodes. Downstream models only ever see images "
                "this manifest marks decodable."
            ),
        ),
        dg.AssetSpec(
            PHOTOS_QUARANTINE_KEY,
            deps=[["landing", "photos"]],
            kinds={"s3", "parquet"},
            description="Image files that do not decode (truncated, not an image) and why.",
        ),
    ],
    group_name="lake",
    can_subset=False,
)
def lake_photos(context: dg.AssetExecutionContext, object_store: ObjectStoreResource):
    store = object_store.get_store()
    landed = [o for o in store.list("landing/photos/") if o.key.lower().endswith(IMAGE_SUFFIXES)]
    if not landed:
        raise dg.Failure(f"no landed images under 'landing/photos/' in {store.describe()}")
    try:
        previous = pl.from_arrow(read_parquet(store, PHOTOS_MANIFEST_OBJECT))
        assert isinstance(previous, pl.DataFrame)
    except ObjectNotFoundError:
        previous = pl.from_arrow(MANIFEST_SCHEMA.empty_table())
        assert isinstance(previous, pl.DataFrame)
    current = pl.DataFrame(
        {"key": [o.key for o in landed], "etag": [o.etag for o in landed]},
        schema={"key": pl.String, "etag": pl.String},
    )
    # Incremental: only new or rewritten files are read and decoded again.
    kept = previous.join(current, on=["key", "etag"], how="semi")
    todo = current.join(previous.select("key", "etag"), on=["key", "etag"], how="anti")
    batches = [kept.to_arrow().cast(MANIFEST_SCHEMA)]
    rows = todo.rows()
    batch_size = 512  # bounded memory: only one batch of image bytes is held at a time
    with ThreadPoolExecutor(max_workers=4) as pool:  # reads are I/O bound on S3
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            datas = list(pool.map(store.get_bytes, [k for k, _ in chunk]))
            batches.append(
                build_manifest((k, e, d) for (k, e), d in zip(chunk, datas, strict=True))
            )
    manifest = pa.concat_tables(batches).sort_by("key")
    bad = manifest.filter(pa.compute.invert(manifest["decodable"]))
    quarantine = bad.select(["key", "etag", "bytes", "sha256", "error"]).rename_columns(
        ["key", "etag", "bytes", "sha256", "reason"]
    )
    write_parquet(store, PHOTOS_MANIFEST_OBJECT, manifest)
    write_parquet(store, PHOTOS_QUARANTINE_OBJECT, quarantine)
    context.log.info(
        "%d images (%d newly inspected), %d undecodable",
        manifest.num_rows,
        todo.height,
        bad.num_rows,
    )
    yield dg.MaterializeResult(
        asset_key=PHOTOS_KEY,
        metadata={
            **table_metadata(manifest),
            "newly_inspected": todo.height,
            "undecodable": bad.num_rows,
            "total_bytes": int(pa.compute.sum(manifest["bytes"]).as_py() or 0),
            "dagster/uri": store.uri(PHOTOS_MANIFEST_OBJECT),
        },
    )
    yield dg.MaterializeResult(
        asset_key=PHOTOS_QUARANTINE_KEY,
        metadata={**table_metadata(quarantine), "dagster/uri": store.uri(PHOTOS_QUARANTINE_OBJECT)},
    )
