"""Point-in-time training examples and the online features built by the same plan."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from my_data_platform.core.features.activity import activity_features
from my_data_platform.core.features.config import (
    _TS,
    _US_PER_DAY,
    FeatureConfig,
    feature_columns,
)
from my_data_platform.core.features.engine import collect
from my_data_platform.core.features.frames import _in_units, _lazy, _utc, _utc_value


def _examples(
    events: pl.LazyFrame,
    photos: pl.LazyFrame,
    users: pl.LazyFrame,
    queries: pl.LazyFrame,
    config: FeatureConfig,
    extra: pl.LazyFrame | pl.DataFrame | None,
) -> pl.LazyFrame:
    """Features of ``(photo_id, prediction_ts)`` queries: the one path offline and online use."""
    photos = _utc(photos, "uploaded_at")
    users = _utc(users.select("user_id", "joined_at", "follower_count"), "joined_at")
    act = activity_features(
        events, photos, queries.rename({"prediction_ts": "as_of"}), config
    ).rename({"as_of": "prediction_ts"})
    static = photos.select("photo_id", "user_id", "uploaded_at", "caption").join(
        users, on="user_id", how="left"
    )
    out = act.join(static, on="photo_id", how="left", maintain_order="left").with_columns(
        author_follower_count=pl.col("follower_count").cast(pl.Int64),
        author_tenure_days=_in_units(
            (pl.col("prediction_ts") - pl.col("joined_at")).dt.total_microseconds(), _US_PER_DAY
        ),
        caption_length=pl.col("caption").str.len_chars().fill_null(0).cast(pl.Int64),
        upload_hour=pl.col("uploaded_at").dt.hour().cast(pl.Int8),
        upload_dow=pl.col("uploaded_at").dt.weekday().cast(pl.Int8),
    )
    out = out.select("photo_id", "prediction_ts", *feature_columns(config))
    if extra is not None:
        out = out.join(_lazy(extra), on="photo_id", how="left", maintain_order="left")
    return out


def training_examples(
    events: pl.LazyFrame,
    photos: pl.LazyFrame,
    users: pl.LazyFrame,
    labels_df: pl.LazyFrame | pl.DataFrame,
    config: FeatureConfig | None = None,
    extra: pl.LazyFrame | pl.DataFrame | None = None,
) -> pl.LazyFrame:
    """One row per labelled photo, with features as of ``prediction_ts = uploaded_at + delay``.

    Sorted by ``photo_id``, so a dataset version hashes the same on every run. Columns:
    ``photo_id``, ``prediction_ts``, ``label``, ``feature_columns(config)``, then the
    ``extra`` columns (per-photo outputs such as classifier scores, joined by ``photo_id``).
    Static metadata: ``author_follower_count`` (the OLTP value: the database keeps no history,
    so this one is as of the load, not as of ``prediction_ts``), ``author_tenure_days`` at
    ``prediction_ts``, ``caption_length`` (characters), ``upload_hour`` (0-23, UTC) and
    ``upload_dow`` (1 = Monday .. 7 = Sunday).
    """
    config = config or FeatureConfig()
    lab = _lazy(labels_df).filter(pl.col("label_status") == "labelled").select("photo_id", "label")
    queries = lab.join(
        _utc(photos.select("photo_id", "uploaded_at"), "uploaded_at"), on="photo_id", how="inner"
    ).select("photo_id", (pl.col("uploaded_at") + config.prediction_delay).alias("prediction_ts"))
    ex = _examples(events, photos, users, queries, config, extra)
    return (
        ex.join(lab, on="photo_id", how="left")
        .select(
            "photo_id", "prediction_ts", "label", pl.exclude("photo_id", "prediction_ts", "label")
        )
        .sort("photo_id")
    )


def online_features(
    events: pl.LazyFrame,
    photos: pl.LazyFrame,
    users: pl.LazyFrame,
    photo_id: int,
    as_of: dt.datetime,
    config: FeatureConfig | None = None,
    extra: pl.LazyFrame | pl.DataFrame | None = None,
    engine: str = "cpu",
) -> dict[str, Any]:
    """Features of one photo as a model server would ask for them at ``as_of``.

    The same plan as ``training_examples`` on a one-row query, so at
    ``as_of == prediction_ts`` every value equals that photo's training row exactly.
    """
    config = config or FeatureConfig()
    query = pl.LazyFrame(
        {"photo_id": [int(photo_id)], "prediction_ts": [_utc_value(as_of)]},
        schema={"photo_id": pl.Int64, "prediction_ts": _TS},
    )
    df = collect(_examples(events, photos, users, query, config, extra), engine)
    return df.row(0, named=True)
