"""Windowed activity of a photo and of its author as of each query time (``activity_features``)."""

from __future__ import annotations

import polars as pl

from my_data_platform.core.features.config import (
    _TS,
    _US_PER_HOUR,
    EVENT_KINDS,
    FeatureConfig,
    activity_feature_columns,
)
from my_data_platform.core.features.frames import _hours, _in_units, _ratio, _utc

_PACK = 1 << 32
# Codes of the author sweep: event kinds first, so query points sort after events at the same ts.
_UPPER = len(EVENT_KINDS)


def _photo_activity(
    events: pl.LazyFrame, keys: pl.LazyFrame, config: FeatureConfig
) -> pl.LazyFrame:
    """Per (photo_id, as_of): counts, like rate, mean dwell and unique users per window.

    Events are joined to the queries of their own photo, so the work is (events of a photo) x
    (queries of that photo): one pass for a snapshot or for one prediction time per photo.
    Unique users go through a per-(photo, as_of, user) pre-aggregate holding only each user's
    last event time: a user is active in a window iff that time is inside it, which turns a
    windowed distinct count into a plain sum. That pre-aggregate has about one group per
    event, so it carries a single accumulator; the counts are summed in their own pass.
    """
    ev = events.select("photo_id", "user_id", "ts", "event_type", "dwell_ms")
    longest = max(config.windows_hours)
    # Numbered in sorted order, so every branch of the plan that recomputes it agrees.
    numbered = (
        keys.sort("photo_id", "as_of")
        .with_row_index("_qid")
        .with_columns(pl.col("_qid").cast(pl.Int64))
    )
    joined = (
        numbered.join(ev, on="photo_id", how="inner")
        .filter(
            (pl.col("ts") <= pl.col("as_of")) & (pl.col("ts") > pl.col("as_of") - _hours(longest))
        )
        .select("_qid", "as_of", "user_id", "ts", "event_type", "dwell_ms")
    )
    is_view = pl.col("event_type") == "view"
    sums: list[pl.Expr] = []
    users: list[pl.Expr] = []
    for w in config.windows_hours:
        in_w = pl.col("ts") > pl.col("as_of") - _hours(w)
        for kind in EVENT_KINDS:
            sums.append((in_w & (pl.col("event_type") == kind)).sum().alias(f"photo_{kind}s_{w}h"))
        dwell = pl.when(in_w & is_view).then(pl.col("dwell_ms"))
        sums += [dwell.sum().alias(f"_dwell_sum_{w}"), dwell.count().alias(f"_dwell_n_{w}")]
        users.append(
            (pl.col("_last_ts") > pl.col("as_of") - _hours(w))
            .sum()
            .alias(f"photo_unique_users_{w}h")
        )
    counts = joined.group_by("_qid").agg(sums)
    # One Int64 key (query number, user) hashes several times faster than two columns; rows
    # whose user_id does not fit in 32 bits take the exact two-column path (usually none).
    packable = (
        (pl.col("user_id") >= 0) & (pl.col("user_id") < _PACK) & (pl.col("_qid") < _PACK // 2)
    )
    packed = (
        joined.filter(packable)
        .group_by((pl.col("_qid") * _PACK + pl.col("user_id")).alias("_pair"))
        .agg(pl.col("ts").max().alias("_last_ts"))
        .select((pl.col("_pair") // _PACK).alias("_qid"), "_last_ts")
    )
    wide = (
        joined.filter(~packable)
        .group_by("_qid", "user_id")
        .agg(pl.col("ts").max().alias("_last_ts"))
        .select("_qid", "_last_ts")
    )
    unique = (
        pl.concat([packed, wide])
        .join(numbered.select("_qid", "as_of"), on="_qid", how="inner")
        .group_by("_qid")
        .agg(users)
    )
    agg = (
        numbered.join(counts, on="_qid", how="inner")
        .join(unique, on="_qid", how="left")
        .drop("_qid")
    )
    derived: list[pl.Expr] = []
    for w in config.windows_hours:
        derived += [
            _ratio(pl.col(f"photo_likes_{w}h"), pl.col(f"photo_views_{w}h")).alias(
                f"photo_like_rate_{w}h"
            ),
            _ratio(pl.col(f"_dwell_sum_{w}"), pl.col(f"_dwell_n_{w}")).alias(
                f"photo_mean_dwell_ms_{w}h"
            ),
        ]
    return agg.with_columns(derived)


def _author_activity(
    events: pl.LazyFrame, authors: pl.LazyFrame, keys: pl.LazyFrame, config: FeatureConfig
) -> pl.LazyFrame:
    """Per (author, as_of): event counts over all the author's photos, per window.

    Joining an author's events to each of the author's queries costs events x queries per
    author, which explodes for prolific authors. Instead one sweep answers every query exactly:
    the author's events and the query points (``as_of`` and each ``as_of - w``) are put in
    time order, events before points at the same microsecond, and a running count of each
    kind is kept per author. With ``C(t)`` = the author's events with ``ts <= t``, the window
    ``(t - w, t]`` holds ``C(t) - C(t - w)`` events: an event at exactly ``t`` counts, one at
    ``t - w`` does not, and nothing after ``t`` is ever read.

    The order is one Int64 key, ``epoch_us * stride + code`` (codes: event kinds, then the
    points), because a single-key sort is several times faster than sorting on
    (author, ts, code); the per-author running count is then a ``cum_sum`` over the author.
    """
    windows = config.windows_hours
    stride = 1 << (_UPPER + len(windows)).bit_length()  # > the largest code
    points = keys.join(authors, on="photo_id", how="inner").select("author_id", "as_of").unique()
    mine = authors.join(points.select("author_id").unique(), on="author_id", how="semi")
    code = pl.lit(None, dtype=pl.Int64)
    for i, kind in enumerate(EVENT_KINDS):
        code = pl.when(pl.col("event_type") == kind).then(pl.lit(i, dtype=pl.Int64)).otherwise(code)
    ev = (
        events.select("photo_id", "ts", "event_type")
        .join(mine, on="photo_id", how="inner")
        .select("author_id", "ts", code.alias("code"), pl.lit(None, dtype=_TS).alias("as_of"))
        .filter(pl.col("code").is_not_null())
    )
    probes = [
        points.select(
            "author_id",
            (pl.col("as_of") - _hours(off)).alias("ts"),
            pl.lit(c, dtype=pl.Int64).alias("code"),
            "as_of",
        )
        for c, off in [(_UPPER, 0), *[(_UPPER + 1 + i, w) for i, w in enumerate(windows)]]
    ]
    swept = (
        pl.concat([ev, *probes], how="vertical")
        .select(
            "author_id",
            "code",
            "as_of",
            (pl.col("ts").dt.epoch("us") * stride + pl.col("code")).alias("_key"),
        )
        .sort("_key")
        .with_columns(
            [
                (pl.col("code") == i).cast(pl.Int64).cum_sum().over("author_id").alias(f"_c{i}")
                for i in range(len(EVENT_KINDS))
            ]
        )
        .filter(pl.col("code") >= _UPPER)
    )
    aggs: list[pl.Expr] = []
    for i, w in enumerate(windows):
        sign = (
            pl.when(pl.col("code") == _UPPER)
            .then(1)
            .when(pl.col("code") == _UPPER + 1 + i)
            .then(-1)
            .otherwise(0)
        )
        aggs += [
            (pl.col(f"_c{k}") * sign).sum().alias(f"author_{kind}s_{w}h")
            for k, kind in enumerate(EVENT_KINDS)
        ]
    out = swept.group_by("author_id", "as_of").agg(aggs)
    return out.with_columns(
        _ratio(pl.col(f"author_likes_{w}h"), pl.col(f"author_views_{w}h")).alias(
            f"author_like_rate_{w}h"
        )
        for w in windows
    )


def activity_features(
    events: pl.LazyFrame,
    photos: pl.LazyFrame,
    queries: pl.LazyFrame,
    config: FeatureConfig | None = None,
) -> pl.LazyFrame:
    """Windowed activity of a photo and of its author, as of each query time.

    ``queries`` holds ``(photo_id, as_of)`` rows; the result has one row per query, in query
    order: ``photo_id``, ``as_of`` and ``activity_feature_columns(config)``. For each window
    ``w`` (hours) an event counts when ``as_of - w < ts <= as_of``:

    * ``photo_{views,likes,comments,shares}_{w}h``: the photo's events of that type.
    * ``photo_like_rate_{w}h``: likes / views, 0.0 when there are no views (never NaN/inf).
    * ``photo_mean_dwell_ms_{w}h``: mean ``dwell_ms`` of the views that carry one, 0.0 when
      none does (a missing value a model would have to impute carries no extra signal here:
      ``photo_views_{w}h`` already says whether there were views).
    * ``photo_unique_users_{w}h``: distinct users with any event on the photo.
    * ``author_{views,likes,comments,shares}_{w}h`` and ``author_like_rate_{w}h``: the same
      over every photo of the photo's author (``photos.user_id``), the photo itself included.
    * ``photo_age_hours``: ``as_of - uploaded_at`` in hours (negative before the upload).

    Queries with no events get zeros; a photo missing from ``photos`` gets zero author counts
    and a null age.
    """
    config = config or FeatureConfig()
    events = _utc(events, "ts")
    photos = _utc(photos, "uploaded_at")
    queries = _utc(queries.select("photo_id", "as_of"), "as_of")
    keys = queries.unique()
    authors = photos.select("photo_id", pl.col("user_id").alias("author_id"))
    photo = _photo_activity(events, keys, config)
    author = _author_activity(events, authors, keys, config)
    counts = [c for c in activity_feature_columns(config) if c != "photo_age_hours"]
    return (
        queries.join(photo, on=["photo_id", "as_of"], how="left", maintain_order="left")
        .join(authors, on="photo_id", how="left", maintain_order="left")
        .join(author, on=["author_id", "as_of"], how="left", maintain_order="left")
        .join(
            photos.select("photo_id", "uploaded_at"),
            on="photo_id",
            how="left",
            maintain_order="left",
        )
        .with_columns(
            [pl.col(c).fill_null(0) for c in counts],
            photo_age_hours=_in_units(
                (pl.col("as_of") - pl.col("uploaded_at")).dt.total_microseconds(), _US_PER_HOUR
            ),
        )
        .select(
            "photo_id",
            "as_of",
            *[
                pl.col(c).cast(pl.Float64 if ("rate" in c or "dwell" in c) else pl.Int64)
                for c in counts
            ],
            "photo_age_hours",
        )
    )
