"""Engagement labels: is a photo popular after its first hours (``labels``)."""

from __future__ import annotations

import datetime as dt

import polars as pl

from my_data_platform.core.features.config import (
    _TS,
    ENGAGEMENT_KINDS,
    FeatureConfig,
)
from my_data_platform.core.features.frames import _hours, _utc, _utc_value


def labels(
    events: pl.LazyFrame,
    photos: pl.LazyFrame,
    config: FeatureConfig | None,
    observed_until: dt.datetime,
) -> pl.LazyFrame:
    """Is the photo popular? One row per photo, from the feedback of its first hours.

    Sorted by ``photo_id``. ``engagement`` = likes + comments + shares with
    ``uploaded_at <= ts <= label_deadline = uploaded_at + label_window_hours`` (and
    ``ts <= observed_until``). ``label`` = 1 when ``engagement >= label_min_engagement``,
    else 0 -- but only when the whole window has been observed
    (``label_deadline <= observed_until``, status ``labelled``). A younger photo has status
    ``too_young`` and a NULL label: its engagement so far is partial, and calling it
    negative would teach the model that new photos are unpopular.
    """
    config = config or FeatureConfig()
    until = pl.lit(_utc_value(observed_until), dtype=_TS)
    p = _utc(photos.select("photo_id", "uploaded_at"), "uploaded_at").with_columns(
        label_deadline=pl.col("uploaded_at") + _hours(config.label_window_hours)
    )
    eng = (
        _utc(events.select("photo_id", "ts", "event_type"), "ts")
        .filter(pl.col("event_type").is_in(ENGAGEMENT_KINDS) & (pl.col("ts") <= until))
        .join(p, on="photo_id", how="inner")
        .filter(
            (pl.col("ts") >= pl.col("uploaded_at")) & (pl.col("ts") <= pl.col("label_deadline"))
        )
        .group_by("photo_id")
        .agg(pl.len().cast(pl.Int64).alias("engagement"))
    )
    labelled = pl.col("label_deadline") <= until
    return (
        p.join(eng, on="photo_id", how="left", maintain_order="left")
        .with_columns(pl.col("engagement").fill_null(0))
        .with_columns(
            label=pl.when(labelled)
            .then((pl.col("engagement") >= config.label_min_engagement).cast(pl.Int8))
            .otherwise(pl.lit(None, dtype=pl.Int8)),
            label_status=pl.when(labelled).then(pl.lit("labelled")).otherwise(pl.lit("too_young")),
        )
        .select("photo_id", "uploaded_at", "label_deadline", "engagement", "label", "label_status")
        .sort("photo_id")
    )
