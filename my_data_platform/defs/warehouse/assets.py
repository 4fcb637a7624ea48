"""The warehouse: DuckDB tables (on DuckLake) that analysts query with SQL.

Tables follow asset keys (``warehouse/events`` is ``warehouse.events``). Tables produced from
DataFrames or Arrow streams go through the DuckLake IO manager, which replaces a partition (or
a whole partition range, for a single-run backfill) inside one transaction; tables that are
pure SQL run inside the warehouse as one transaction too.
"""

import dagster as dg
import polars as pl

from my_data_platform.core.objectstore import ObjectNotFoundError
from my_data_platform.core.oltp import as_utc
from my_data_platform.core.warehouse import ParquetFiles, transaction
from my_data_platform.defs.crashpoints import crash_point
from my_data_platform.defs.lake.objects import (
    PHOTOS_MANIFEST_OBJECT,
    PHOTOS_QUARANTINE_OBJECT,
    read_parquet,
)
from my_data_platform.defs.lake.resources import ObjectStoreResource
from my_data_platform.defs.metadata import table_metadata
from my_data_platform.defs.partitions import event_days, event_days_backfill_policy
from my_data_platform.defs.sources.resources import OLTPResource
from my_data_platform.defs.warehouse.lake_files import lake_days_files
from my_data_platform.defs.warehouse.resources import WarehouseResource
from my_data_platform.defs.warehouse.tables import ENGAGEMENT_SQL, PHOTO_COLUMNS, USER_COLUMNS


@dg.asset(
    code_version="1",
    key=["warehouse", "users"],
    deps=[["oltp", "users"]],
    group_name="warehouse",
    kinds={"duckdb", "polars"},
)
def warehouse_users(oltp: OLTPResource) -> pl.DataFrame:
    """Everyone who can post or engage, copied (ELT) from the OLTP database for analytics."""
    return as_utc(oltp.read_table("users", USER_COLUMNS), "joined_at").sort("user_id")


@dg.asset(
    code_version="1",
    key=["warehouse", "photos"],
    # The manifest is a lake object, not a warehouse table: no IO manager loads it.
    deps=[["oltp", "photos"], ["lake", "photos"]],
    group_name="warehouse",
    kinds={"duckdb", "polars"},
)
def warehouse_photos(
    context: dg.AssetExecutionContext, oltp: OLTPResource, object_store: ObjectStoreResource
) -> pl.DataFrame:
    """Every photo with its caption, author and upload time (from OLTP), and whether its image
    file is present and decodable (from the lake's image manifest)."""
    photos = as_utc(oltp.read_table("photos", PHOTO_COLUMNS), "uploaded_at")
    store = object_store.get_store()
    try:
        manifest = pl.from_arrow(read_parquet(store, PHOTOS_MANIFEST_OBJECT))
    except ObjectNotFoundError:
        raise dg.Failure(
            "the image manifest lake/photos is missing: materialize lake/photos first"
        ) from None
    assert isinstance(manifest, pl.DataFrame)
    images = manifest.select(
        pl.col("key").alias("object_key"),
        pl.col("bytes").alias("image_bytes"),
        pl.col("sha256").alias("image_sha256"),
        pl.col("width").alias("image_width"),
        pl.col("height").alias("image_height"),
        pl.col("decodable").alias("image_decodable"),
    )
    out = photos.join(images, on="object_key", how="left").with_columns(
        pl.col("image_decodable").fill_null(False)
    )
    missing = out.filter(pl.col("image_bytes").is_null()).height
    if missing:
        context.log.warning("%d photos have no landed image file", missing)
    return out.sort("photo_id")


@dg.asset(
    code_version="1",
    key=["warehouse", "events"],
    # Not an input: the lake files are registered with DuckLake as they are, never decoded.
    deps=[["lake", "events"]],
    partitions_def=event_days,
    backfill_policy=event_days_backfill_policy,
    group_name="warehouse",
    kinds={"duckdb", "parquet"},
    metadata={"partition_expr": "landing_date"},
)
def warehouse_events(
    context: dg.AssetExecutionContext, object_store: ObjectStoreResource
) -> ParquetFiles:
    """Clean activity events, one landing day per partition: the fact table behind every
    engagement metric, feature and label. Re-materializing days replaces them atomically."""
    crash_point("warehouse_events.start")
    return lake_days_files(
        context, object_store.get_store(), lambda day: day.events_key, "lake/events"
    )


@dg.asset(
    code_version="1",
    key=["warehouse", "events_quarantine"],
    # Not an input: the lake files are registered with DuckLake as they are, never decoded.
    deps=[["lake", "events_quarantine"]],
    partitions_def=event_days,
    backfill_policy=event_days_backfill_policy,
    group_name="warehouse",
    kinds={"duckdb", "parquet"},
    metadata={"partition_expr": "landing_date"},
)
def warehouse_events_quarantine(
    context: dg.AssetExecutionContext, object_store: ObjectStoreResource
) -> ParquetFiles:
    """Quarantined event lines, one landing day per partition, queryable by analysts and data
    owners: the original text, file, line and reason of everything that was not loaded."""
    return lake_days_files(
        context,
        object_store.get_store(),
        lambda day: day.quarantine_key,
        "lake/events_quarantine",
    )


PHOTOS_QUARANTINE_SCHEMA = {
    "object_key": pl.String,
    "photo_id": pl.Int64,
    "reason": pl.String,
    "bytes": pl.Int64,
    "sha256": pl.String,
    "etag": pl.String,
    "detected_at": pl.Datetime("us", "UTC"),
}


@dg.asset(
    code_version="1",
    key=["warehouse", "photos_quarantine"],
    # The quarantine is a lake object, not a warehouse table: no IO manager loads it.
    deps=[["lake", "photos_quarantine"], ["oltp", "photos"]],
    group_name="warehouse",
    kinds={"duckdb", "polars"},
)
def warehouse_photos_quarantine(
    oltp: OLTPResource, object_store: ObjectStoreResource
) -> pl.DataFrame:
    """Image files that could not be used (unreadable, over a limit, not an image, truncated,
    undecodable), queryable like ``warehouse.events_quarantine``: the file's ``object_key``,
    the ``reason``, its ``bytes`` and ``sha256`` (null when it was never read), when it was
    first ``detected_at``, and the ``photo_id`` of each photo that points at it (null for an
    upload no photo references). Nothing that lands is silently dropped."""
    store = object_store.get_store()
    try:
        quarantine = pl.from_arrow(read_parquet(store, PHOTOS_QUARANTINE_OBJECT))
    except ObjectNotFoundError:
        raise dg.Failure(
            "the photo quarantine lake/photos_quarantine is missing: materialize lake/photos first"
        ) from None
    assert isinstance(quarantine, pl.DataFrame)
    if "detected_at" not in quarantine.columns:  # written before detection times were kept
        quarantine = quarantine.with_columns(detected_at=pl.lit(None, pl.Datetime("us", "UTC")))
    photos = oltp.read_table("photos", ["photo_id", "object_key"])
    out = quarantine.select(
        pl.col("key").alias("object_key"), "reason", "bytes", "sha256", "etag", "detected_at"
    ).join(photos, on="object_key", how="left")
    return (
        out.select(list(PHOTOS_QUARANTINE_SCHEMA))
        .cast(PHOTOS_QUARANTINE_SCHEMA)  # type: ignore[arg-type]
        .sort("object_key", "photo_id", nulls_last=True)
    )


@dg.asset(
    code_version="1",
    key=["warehouse", "photo_engagement_daily"],
    # Pure SQL in DuckDB, not an AssetIn: loading all events into Python adds 75 B/event (measured)
    deps=[["warehouse", "events"]],
    group_name="warehouse",
    kinds={"duckdb", "sql"},
)
def photo_engagement_daily(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Views, likes, comments, shares, unique users and dwell per photo per (UTC) event day,
    computed in SQL inside the warehouse: the daily engagement report analysts start from.
    Late events count on the day they happened, not the day they landed."""
    with warehouse.connect() as conn:
        with warehouse.writing(), transaction(conn):
            conn.execute(ENGAGEMENT_SQL)
        sample = conn.execute(
            "SELECT * FROM warehouse.photo_engagement_daily LIMIT 5"
        ).to_arrow_table()
        totals = conn.execute(
            "SELECT count(*), sum(views), sum(likes), sum(comments), sum(shares) "
            "FROM warehouse.photo_engagement_daily"
        ).fetchone()
    rows, views, likes, comments, shares = (int(x or 0) for x in (totals or (0,) * 5))
    return dg.MaterializeResult(
        metadata={
            **table_metadata(sample, row_count=rows),
            "views": views,
            "likes": likes,
            "comments": comments,
            "shares": shares,
            "dagster/table_name": "mdp.warehouse.photo_engagement_daily",
        }
    )
