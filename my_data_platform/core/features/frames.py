"""Polars helpers the feature plans share: UTC timestamps, durations, exact unit conversion."""

from __future__ import annotations

import datetime as dt

import polars as pl

from my_data_platform.core.features.config import (
    _TS,
    _US_PER_HOUR,
)


def _utc(lf: pl.LazyFrame, *names: str) -> pl.LazyFrame:
    """Timestamps as ``datetime[us, UTC]``; naive ones are taken to be UTC (SQLite drops tz)."""
    schema = lf.collect_schema()
    exprs = []
    for name in names:
        dtype = schema[name]
        col = pl.col(name)
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
            col = col.dt.replace_time_zone("UTC")
        exprs.append(col.cast(_TS))
    return lf.with_columns(exprs)


def _hours(h: int | float) -> pl.Expr:
    return pl.lit(dt.timedelta(microseconds=round(h * _US_PER_HOUR)), dtype=pl.Duration("us"))


def _in_units(us: pl.Expr, unit_us: int) -> pl.Expr:
    """Integer microseconds as Float64 units (hours, days), bit-identical on every path.

    ``col / literal`` is evaluated as a multiplication by the reciprocal on long columns but
    as a true division on one-row frames, so the online row could differ from the training
    row in the last bit. Splitting into an exact integer part and a fraction multiplied by a
    fixed reciprocal is the same IEEE operation everywhere (and whole units stay exact).
    """
    return (us // unit_us).cast(pl.Float64) + (us % unit_us).cast(pl.Float64) * (1.0 / unit_us)


def _ratio(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """``num / den`` as Float64, 0.0 when ``den`` is 0 (never NaN or inf)."""
    return pl.when(den > 0).then(num.cast(pl.Float64) / den.cast(pl.Float64)).otherwise(0.0)


def _lazy(frame: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    return frame.lazy() if isinstance(frame, pl.DataFrame) else frame


def _utc_value(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
