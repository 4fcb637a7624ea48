"""The lake: validated, deduplicated Parquet and the image manifest, in the object store.

Landed files are never modified. A landing day is published in one step: its events and
quarantine objects are written under names unique to the run (a generation), then one small
pointer object naming both is put atomically (``lake.objects.published_day``), so a reader, or
a crash, sees the previous publish or the new one, never half of a day.
"""

import contextlib
import datetime as dt
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from my_data_platform.core.events import (
    EVENTS_SCHEMA,
    LandingLimits,
    ObjectTooLarge,
    ingest_day,
)
from my_data_platform.core.images import (
    IMAGE_SUFFIXES,
    MANIFEST_SCHEMA,
    ImageLimits,
    build_manifest,
    read_image,
)
from my_data_platform.core.objectstore import ObjectInfo, ObjectNotFoundError, ObjectStore
from my_data_platform.defs.crashpoints import crash_point
from my_data_platform.defs.lake.objects import (
    EVENTS_KEY,
    EVENTS_PARQUET_OPTIONS,
    EVENTS_QUARANTINE_KEY,
    PHOTOS_KEY,
    PHOTOS_MANIFEST_OBJECT,
    PHOTOS_QUARANTINE_KEY,
    PHOTOS_QUARANTINE_OBJECT,
    ROW_GROUP_SIZE,
    PublishedDay,
    event_day,
    lake_events_generation_object,
    lake_events_pointer,
    lake_events_quarantine_generation_object,
    landing_digest,
    landing_events_prefix,
    new_generation,
    published_day,
    read_parquet,
    write_parquet,
)
from my_data_platform.defs.lake.resources import ObjectStoreResource
from my_data_platform.defs.metadata import markdown_preview, table_metadata
from my_data_platform.defs.partitions import event_days, event_days_backfill_policy
from my_data_platform.defs.sources.resources import OLTPResource

RECONCILE_CHECK = "landed_equals_loaded_plus_quarantined"


def _parse_day(day: str) -> dt.date:
    try:
        return dt.date.fromisoformat(day)
    except ValueError:
        raise dg.Failure(f"partition key {day!r} is not a YYYY-MM-DD landing day") from None


@dg.multi_asset(
    code_version="1",
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
            metadata={"dagster/uri": "lake/events/date=<day>/_published.json"},
        ),
        dg.AssetSpec(
            EVENTS_QUARANTINE_KEY,
            deps=[["landing", "events"]],
            kinds={"s3", "parquet"},
            description=(
                "Every landed line that was not loaded, with its original text, file, line number "
                "and reason (malformed JSON, missing field, wrong type, unknown id, duplicate, "
                "line too long), plus one record per file that was not read to its end "
                "(unreadable, too large, invalid name). Nothing that lands is silently dropped."
            ),
        ),
    ],
    partitions_def=event_days,
    backfill_policy=event_days_backfill_policy,
    group_name="lake",
    check_specs=[
        dg.AssetCheckSpec(
            RECONCILE_CHECK,
            asset=EVENTS_KEY,
            blocking=True,
            description=(
                "Landed lines = loaded rows + quarantined rows, exactly, for every day of the run."
            ),
        )
    ],
    can_subset=False,
)
def lake_events(
    context: dg.AssetExecutionContext, object_store: ObjectStoreResource, oltp: OLTPResource
):
    """One day per partition; a run over a partition range (a single-run backfill) ingests its
    days one after the other, so memory is that of one day, and publishes each as soon as it is
    written: a run that fails leaves every day fully published or as it was. Each day's
    materialization carries that day's own counts; the reconciliation check passes only if every
    day reconciles."""
    days = list(context.partition_keys)
    dates = {day: _parse_day(day) for day in days}
    store = object_store.get_store()
    # List every day first: a range with a day that has no files fails before writing anything.
    landed = {
        day: [o for o in store.list(landing_events_prefix(day)) if event_day(o.key) == day]
        for day in days
    }
    missing = [day for day in days if not landed[day]]
    if missing:
        raise dg.Failure(
            "; ".join(
                f"no landed event files for partition {day}: nothing under "
                f"{landing_events_prefix(day)!r} in {store.describe()}"
                for day in missing
            )
        )
    # Read once, while the first day's first files are being validated.
    user_ids = functools.cache(functools.partial(oltp.read_ids, "users", "user_id"))
    photo_ids = functools.cache(functools.partial(oltp.read_ids, "photos", "photo_id"))
    limits = object_store.landing_limits()
    per_day = {
        day: _ingest_partition(
            context, store, day, dates[day], landed[day], user_ids, photo_ids, limits
        )
        for day in days
    }
    totals = {k: sum(c[k] for c in per_day.values()) for k in COUNT_KEYS}
    unreconciled = [
        d for d, c in per_day.items() if c["landed_lines"] != c["loaded"] + c["quarantined"]
    ]
    if len(days) > 1:
        context.log.info(
            "%d days %s..%s: %d landed lines, %d loaded, %d quarantined",
            len(days), days[0], days[-1],
            totals["landed_lines"], totals["loaded"], totals["quarantined"],
        )  # fmt: skip
    # Per-day metadata was attached to each partition's materialization by _ingest_partition.
    yield dg.MaterializeResult(asset_key=EVENTS_KEY)
    yield dg.MaterializeResult(asset_key=EVENTS_QUARANTINE_KEY)
    yield dg.AssetCheckResult(
        check_name=RECONCILE_CHECK,
        asset_key=EVENTS_KEY,
        passed=not unreconciled,
        metadata={
            **totals,
            "days": len(days),
            "days_not_reconciled": ", ".join(unreconciled),
            "per_day": dg.MetadataValue.md(_per_day_table(per_day)),
        },
    )


COUNT_KEYS = (
    "files",
    "landed_lines",
    "loaded",
    "quarantined",
    "duplicates",
    "file_errors",
    "extra_field_lines",
)


def _ingest_partition(
    context: dg.AssetExecutionContext,
    store: ObjectStore,
    day: str,
    date: dt.date,
    objects: list[ObjectInfo],
    user_ids: Any,
    photo_ids: Any,
    limits: LandingLimits,
) -> dict[str, int]:
    """Ingest one landing day into the lake, publish it, and attach its metadata to that day's
    materializations of lake/events and lake/events_quarantine. Returns the day's counts."""
    crash_point("lake_events.start")
    previous = published_day(store, day)
    generation = new_generation(context.run.run_id)
    events_key = lake_events_generation_object(day, generation)
    quarantine_key = lake_events_quarantine_generation_object(day, generation)
    try:
        # Each file is read by the worker that validates it, and loaded rows stream into the
        # Parquet file while later files are still being validated.
        with (
            store.writing(events_key, suffix=".parquet") as path,
            pq.ParquetWriter(path, EVENTS_SCHEMA, **EVENTS_PARQUET_OPTIONS) as writer,
        ):
            result = ingest_day(
                [(o.key, _reader(store, o, limits)) for o in objects],
                date,
                user_ids,
                photo_ids,
                sink=lambda t: writer.write_table(t, row_group_size=ROW_GROUP_SIZE),
                keep_events=False,
                limits=limits,
            )
        write_parquet(store, quarantine_key, result.quarantine)
    except BaseException:
        for key in (events_key, quarantine_key):  # never published: nothing refers to them
            with contextlib.suppress(Exception):
                store.delete(key)
        raise
    crash_point("lake_events.middle")
    stats = result.stats
    counts = {k: int(getattr(stats, k)) for k in COUNT_KEYS}
    digest = landing_digest(objects)
    published = PublishedDay(
        day=day,
        events_key=events_key,
        quarantine_key=quarantine_key,
        generation=generation,
        pointer_key=lake_events_pointer(day),
        run_id=context.run.run_id,
        landing_digest=digest,
        counts=counts,
    )
    # The publish: one atomic put. Before it, readers see the previous generation; after it,
    # this one. (Should the put fail, the new objects stay for maintenance: a put that timed
    # out may still have happened.)
    store.put_bytes(lake_events_pointer(day), published.to_json())
    _delete_superseded(context, store, previous, published)
    crash_point("lake_events.end")
    context.log.info(
        "day %s: %d files, %d landed lines, %d loaded, %d quarantined (%d duplicates), "
        "%d unreadable files; published generation %s",
        day,
        stats.files,
        stats.landed_lines,
        stats.loaded,
        stats.quarantined,
        stats.duplicates,
        stats.file_errors,
        generation,
    )
    context.add_asset_metadata(
        {
            **table_metadata(result.preview, row_count=stats.loaded),
            **counts,
            "landing_digest": digest,
            "generation": generation,
            "dagster/uri": store.uri(events_key),
        },
        asset_key=EVENTS_KEY,
        partition_key=day,
    )
    reasons = pl.DataFrame(
        {"reason": list(stats.reasons), "count": list(stats.reasons.values())},
        schema={"reason": pl.String, "count": pl.Int64},
    ).sort("count", descending=True)
    context.add_asset_metadata(
        {
            **table_metadata(result.quarantine),
            "quarantined": stats.quarantined,
            "file_errors": stats.file_errors,
            "reasons": dg.MetadataValue.md(markdown_preview(reasons, rows=50)),
            "generation": generation,
            "dagster/uri": store.uri(quarantine_key),
        },
        asset_key=EVENTS_QUARANTINE_KEY,
        partition_key=day,
    )
    return counts


def _delete_superseded(
    context: dg.AssetExecutionContext,
    store: ObjectStore,
    previous: PublishedDay | None,
    published: PublishedDay,
) -> None:
    """Best effort: the previous generation's objects (or a legacy day's fixed-name ones) are
    no longer referenced once the new pointer is in place. What is left (a failed delete, a
    crash) is removed by the lake maintenance, which keeps whatever a pointer names."""
    if previous is None:
        return
    for key in set(previous.keys) - set(published.keys):
        try:
            store.delete(key)
        except Exception as exc:  # the publish stands; maintenance removes it later
            context.log.warning("could not delete superseded lake object %r: %s", key, exc)


def _reader(store: ObjectStore, o: ObjectInfo, limits: LandingLimits) -> Any:
    """Reads a landed object when a worker asks; one stored over the inflated-size limit is
    not read at all (plain, it is too large; gzip inflates to at least nearly what it stores,
    unless it is padding or empty members)."""
    if o.size > limits.max_inflated_bytes:

        def refuse() -> bytes:
            raise ObjectTooLarge(o.size, limits.max_inflated_bytes)

        return refuse
    return functools.partial(store.get_bytes, o.key)


def _per_day_table(per_day: dict[str, dict[str, int]]) -> str:
    cols = ("landed_lines", "loaded", "quarantined")
    df = pl.DataFrame([{"day": d, **{k: c[k] for k in cols}} for d, c in per_day.items()])
    return markdown_preview(df, rows=len(per_day))


class LakePhotosConfig(dg.Config):
    """Run config (Launchpad): per-image limits, checked before any pixel is decoded."""

    max_image_pixels: int | None = None
    """Width x height a header may claim; default: ``MDP_LANDING_MAX_IMAGE_PIXELS``."""
    max_image_bytes: int | None = None
    """Bytes one image file may hold; default: ``MDP_LANDING_MAX_IMAGE_BYTES``."""

    def limits(self) -> ImageLimits:
        from my_data_platform.settings import get_settings

        s = get_settings()
        return ImageLimits(
            max_pixels=self.max_image_pixels or s.landing_max_image_pixels,
            max_bytes=self.max_image_bytes or s.landing_max_image_bytes,
        )


@dg.multi_asset(
    code_version="1",
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
            description=(
                "Image files that are not usable and why: unreadable (a symbolic link, "
                "permission denied), over a limit (too_many_bytes, too_many_pixels), "
                "not_an_image, truncated or undecodable; with their size, sha256 (when the "
                "bytes were read) and when each was first detected."
            ),
        ),
    ],
    group_name="lake",
    can_subset=False,
)
def lake_photos(
    context: dg.AssetExecutionContext, config: LakePhotosConfig, object_store: ObjectStoreResource
):
    store = object_store.get_store()
    limits = config.limits()
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
    # Incremental: only new or rewritten files are read and decoded again, and every file in
    # quarantine (a fixed permission or a raised limit takes effect without a rewrite).
    kept = previous.filter(pl.col("decodable")).join(current, on=["key", "etag"], how="semi")
    done = set(kept["key"].to_list())
    todo = [o for o in landed if o.key not in done]
    batches = [kept.to_arrow().cast(MANIFEST_SCHEMA)]
    with ThreadPoolExecutor(max_workers=4) as pool:  # reads are I/O bound on S3
        for chunk in _image_batches(todo, limits):
            got = list(pool.map(lambda o: read_image(store, o, limits), chunk))
            batches.append(
                build_manifest(zip(chunk, got, strict=True), max_pixels=limits.max_pixels)
            )
    manifest = pa.concat_tables(batches).sort_by("key")
    bad = manifest.filter(pa.compute.invert(manifest["decodable"]))
    quarantine = bad.select(["key", "etag", "bytes", "sha256", "error"]).rename_columns(
        ["key", "etag", "bytes", "sha256", "reason"]
    )
    quarantine = _with_detected_at(store, quarantine, dt.datetime.now(dt.UTC))
    write_parquet(store, PHOTOS_MANIFEST_OBJECT, manifest)
    write_parquet(store, PHOTOS_QUARANTINE_OBJECT, quarantine)
    context.log.info(
        "%d images (%d newly inspected), %d undecodable",
        manifest.num_rows,
        len(todo),
        bad.num_rows,
    )
    yield dg.MaterializeResult(
        asset_key=PHOTOS_KEY,
        metadata={
            **table_metadata(manifest),
            "newly_inspected": len(todo),
            "landing_digest": landing_digest(landed),
            "undecodable": bad.num_rows,
            "quarantined_by_reason": dg.MetadataValue.json(_reason_counts(quarantine)),
            "total_bytes": int(pa.compute.sum(manifest["bytes"]).as_py() or 0),
            "dagster/uri": store.uri(PHOTOS_MANIFEST_OBJECT),
        },
    )
    yield dg.MaterializeResult(
        asset_key=PHOTOS_QUARANTINE_KEY,
        metadata={**table_metadata(quarantine), "dagster/uri": store.uri(PHOTOS_QUARANTINE_OBJECT)},
    )


QUARANTINE_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("etag", pa.string()),
        ("bytes", pa.int64()),
        ("sha256", pa.string()),
        ("reason", pa.string()),
        ("detected_at", pa.timestamp("us", tz="UTC")),
    ]
)
"""The photo quarantine object: the file, its size and sha256 (null when it was never read:
a link, a permission error, over the byte limit), the reason, and when it was first found."""


def _with_detected_at(store: ObjectStore, quarantine: pa.Table, now: dt.datetime) -> pa.Table:
    """Add ``detected_at``: when this file (same key, etag and reason) was first quarantined.

    Quarantined files are inspected again on every run, so the previous quarantine object is
    the memory: a file still bad for the same reason keeps its first detection time, and a
    re-run over the same landing area writes the same rows."""
    try:
        previous = pl.from_arrow(read_parquet(store, PHOTOS_QUARANTINE_OBJECT))
    except ObjectNotFoundError:
        previous = None
    q = pl.from_arrow(quarantine)
    assert isinstance(q, pl.DataFrame)
    stamp = pl.lit(now).dt.replace_time_zone("UTC").dt.cast_time_unit("us")
    if isinstance(previous, pl.DataFrame) and "detected_at" in previous.columns:
        seen = previous.select("key", "etag", "reason", "detected_at").unique(
            ["key", "etag", "reason"], keep="first"
        )
        q = q.join(seen, on=["key", "etag", "reason"], how="left", nulls_equal=True)
        q = q.with_columns(pl.col("detected_at").fill_null(stamp))
    else:
        q = q.with_columns(detected_at=stamp)
    return q.to_arrow().select(QUARANTINE_SCHEMA.names).cast(QUARANTINE_SCHEMA)


def _image_batches(
    todo: list[ObjectInfo], limits: ImageLimits, *, files: int = 512, size: int = 256 * 2**20
) -> list[list[ObjectInfo]]:
    """Bounded memory: one batch of image bytes is held at a time, at most ``files`` files and
    ``size`` listed bytes (a file over the byte limit is never read, so it does not count)."""
    batches: list[list[ObjectInfo]] = []
    held = 0
    for info in todo:
        cost = info.size if info.size <= limits.max_bytes else 0
        if not batches or len(batches[-1]) == files or held + cost > size:
            batches.append([])
            held = 0
        batches[-1].append(info)
        held += cost
    return batches


def _reason_counts(quarantine: pa.Table) -> dict[str, int]:
    """Quarantined files per reason code (the part of a reason before any ``:``)."""
    codes = [r.split(":", 1)[0] for r in quarantine["reason"].to_pylist()]
    return {c: codes.count(c) for c in sorted(set(codes))}
