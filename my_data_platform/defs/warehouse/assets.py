"""The warehouse: DuckDB tables (on DuckLake) that analysts query with SQL.

Tables follow asset keys (``warehouse/events`` is ``warehouse.events``). Tables produced from
DataFrames or Arrow streams go through the DuckLake IO manager, which replaces a partition (or
a whole partition range, for a single-run backfill) inside one transaction; tables that are
pure SQL run inside the warehouse as one transaction too.
"""

from collections.abc import Callable

import dagster as dg
import duckdb
import polars as pl

from my_data_platform.core.duck import sql_literal
from my_data_platform.core.objectstore import ObjectNotFoundError, ObjectStore
from my_data_platform.core.warehouse import ParquetFiles, transaction
from my_data_platform.defs.lake.assets import (
    PHOTOS_MANIFEST_OBJECT,
    lake_events_object,
    lake_events_quarantine_object,
    read_parquet,
)
from my_data_platform.defs.lake.resources import ObjectStoreResource
from my_data_platform.defs.metadata import table_metadata
from my_data_platform.defs.partitions import event_days, event_days_backfill_policy
from my_data_platform.defs.sources.resources import OLTPResource
from my_data_platform.defs.warehouse.resources import WarehouseResource

USER_COLUMNS = ["user_id", "joined_at", "follower_count"]
PHOTO_COLUMNS = ["photo_id", "user_id", "uploaded_at", "caption", "object_key"]


def _utc(df: pl.DataFrame, *cols: str) -> pl.DataFrame:
    """SQLite hands timestamps back naive; they are UTC by contract."""
    out = []
    for c in cols:
        dtype = df.schema[c]
        if dtype == pl.String:
            out.append(pl.col(c).str.to_datetime(time_zone="UTC"))
        elif isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
            out.append(pl.col(c).dt.replace_time_zone("UTC"))
        elif isinstance(dtype, pl.Datetime):
            out.append(pl.col(c).dt.convert_time_zone("UTC"))
    return df.with_columns(out) if out else df


@dg.asset(
    key=["warehouse", "users"],
    deps=[["oltp", "users"]],
    group_name="warehouse",
    kinds={"duckdb", "polars"},
)
def warehouse_users(oltp: OLTPResource) -> pl.DataFrame:
    """Everyone who can post or engage, copied (ELT) from the OLTP database for analytics."""
    return _utc(oltp.read_table("users", USER_COLUMNS), "joined_at").sort("user_id")


@dg.asset(
    key=["warehouse", "photos"],
    deps=[["oltp", "photos"], ["lake", "photos"]],
    group_name="warehouse",
    kinds={"duckdb", "polars"},
)
def warehouse_photos(
    context: dg.AssetExecutionContext, oltp: OLTPResource, object_store: ObjectStoreResource
) -> pl.DataFrame:
    """Every photo with its caption, author and upload time (from OLTP), and whether its image
    file is present and decodable (from the lake's image manifest)."""
    photos = _utc(oltp.read_table("photos", PHOTO_COLUMNS), "uploaded_at")
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


def lake_days_files(
    context: dg.AssetExecutionContext,
    store: ObjectStore,
    object_of_day: Callable[[str], str],
    lake_asset: str,
) -> ParquetFiles:
    """The lake Parquet of every day in the run's partition range, for the IO manager to load.

    DuckDB reads the files itself (in parallel, straight from the object store) inside the
    IO manager's transaction, so a single-run backfill of N days never holds them in Python.
    Every file is checked up front, so a missing day fails the run before the warehouse is
    touched; each day's materialization gets that day's row count, schema and preview, read
    from its file's footer and first rows.
    """
    days = list(context.partition_keys)
    keys = {day: object_of_day(day) for day in days}
    missing = [key for key in keys.values() if not store.exists(key)]
    if missing:
        raise dg.Failure(
            f"lake file(s) {', '.join(repr(k) for k in missing)} missing: "
            f"materialize {lake_asset} first"
        )
    uris = {day: store.uri(key) for day, key in keys.items()}
    conn = duckdb.connect(":memory:")
    try:
        store.configure_duckdb(conn)
        for day, uri in uris.items():
            files = ParquetFiles((uri,))
            (rows,) = conn.execute(
                f"SELECT sum(num_rows) FROM parquet_file_metadata({sql_literal(uri)})"  # noqa: S608
            ).fetchone() or (0,)
            sample = conn.execute(
                f"SELECT * FROM {files.source_sql()} LIMIT 5"  # noqa: S608
            ).fetch_arrow_table()
            context.add_asset_metadata(
                table_metadata(sample, row_count=int(rows or 0)), partition_key=day
            )
    except duckdb.IOException as exc:  # deleted or unreadable since the check
        raise dg.Failure(f"cannot read {lake_asset} from {store.describe()}: {exc}") from None
    finally:
        conn.close()
    return ParquetFiles(tuple(uris[day] for day in days))


@dg.asset(
    key=["warehouse", "events"],
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
    return lake_days_files(context, object_store.get_store(), lake_events_object, "lake/events")


@dg.asset(
    key=["warehouse", "events_quarantine"],
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
        context, object_store.get_store(), lake_events_quarantine_object, "lake/events_quarantine"
    )


ENGAGEMENT_SQL = """
CREATE OR REPLACE TABLE warehouse.photo_engagement_daily AS
SELECT
    photo_id,
    CAST(ts AS DATE) AS event_date,
    count(*) FILTER (WHERE event_type = 'view') AS views,
    count(*) FILTER (WHERE event_type = 'like') AS likes,
    count(*) FILTER (WHERE event_type = 'comment') AS comments,
    count(*) FILTER (WHERE event_type = 'share') AS shares,
    count(DISTINCT user_id) AS unique_users,
    avg(dwell_ms) FILTER (WHERE event_type = 'view') AS avg_dwell_ms
FROM warehouse.events
GROUP BY photo_id, CAST(ts AS DATE)
ORDER BY event_date, photo_id
"""


@dg.asset(
    key=["warehouse", "photo_engagement_daily"],
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
        ).fetch_arrow_table()
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
