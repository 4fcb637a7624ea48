"""What the features are: their configuration (windows, label, delay) and column names."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

EVENT_KINDS: tuple[str, ...] = ("view", "like", "comment", "share")
ENGAGEMENT_KINDS: tuple[str, ...] = ("like", "comment", "share")
LABEL_STATUSES: tuple[str, ...] = ("labelled", "too_young")

_TS = pl.Datetime("us", "UTC")
_US_PER_HOUR = 3_600_000_000
_US_PER_DAY = 24 * _US_PER_HOUR


@dataclass(frozen=True)
class FeatureConfig:
    """Windows, label definition and prediction delay (the Dagster layer reads them from env).

    ``label_min_engagement`` = 8: a photo is popular when it collects at least 8 likes +
    comments + shares in its first ``label_window_hours``. On the demo world
    (``WorldConfig()``: 3 days, 300 users, 3,000 photos, 60k events/day, seed 42) 31% of the
    2,000 labelled photos are positive (3: 60%, 5: 45%, 10: 26%), and a logistic regression
    on ``FEATURE_COLUMNS`` (trained on the older 70%, tested on the newest 30%) reaches an
    AUC of 0.90: learnable from the first hour, but far from trivial.
    """

    windows_hours: tuple[int, ...] = (24, 168, 672)
    label_window_hours: int = 24
    label_min_engagement: int = 8
    prediction_delay_hours: float = 1.0

    def __post_init__(self) -> None:
        if not self.windows_hours or any(int(w) <= 0 for w in self.windows_hours):
            raise ValueError(f"windows_hours must be positive hours, got {self.windows_hours}")
        if len(set(self.windows_hours)) != len(self.windows_hours):
            raise ValueError(f"windows_hours must be distinct, got {self.windows_hours}")
        if self.label_window_hours <= 0:
            raise ValueError("label_window_hours must be > 0")
        if self.label_min_engagement < 1:
            raise ValueError("label_min_engagement must be >= 1 (0 would make every photo popular)")
        if self.prediction_delay_hours < 0:
            raise ValueError("prediction_delay_hours must be >= 0")

    @property
    def prediction_delay(self) -> dt.timedelta:
        return dt.timedelta(microseconds=round(self.prediction_delay_hours * _US_PER_HOUR))


def activity_feature_columns(config: FeatureConfig | None = None) -> list[str]:
    """Feature columns of ``activity_features``, in output order."""
    config = config or FeatureConfig()
    cols: list[str] = []
    for w in config.windows_hours:
        cols += [f"photo_{k}s_{w}h" for k in EVENT_KINDS]
        cols += [f"photo_like_rate_{w}h", f"photo_mean_dwell_ms_{w}h", f"photo_unique_users_{w}h"]
    for w in config.windows_hours:
        cols += [f"author_{k}s_{w}h" for k in EVENT_KINDS]
        cols += [f"author_like_rate_{w}h"]
    cols.append("photo_age_hours")
    return cols


STATIC_COLUMNS: tuple[str, ...] = (
    "author_follower_count",
    "author_tenure_days",
    "caption_length",
    "upload_hour",
    "upload_dow",
)


def feature_columns(config: FeatureConfig | None = None) -> list[str]:
    """What a model consumes from ``training_examples`` (``extra`` columns come on top)."""
    return [*activity_feature_columns(config), *STATIC_COLUMNS]


FEATURE_COLUMNS: list[str] = feature_columns()
