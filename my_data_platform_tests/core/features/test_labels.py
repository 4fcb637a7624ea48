"""Labels: the window, the threshold and photos too young to label."""

from __future__ import annotations

import datetime as dt

import polars as pl

from my_data_platform.core import features as F
from my_data_platform.synth import WorldConfig
from my_data_platform.synth.features_world import world_frames
from my_data_platform_tests.core.features.frames import (
    US,
    UTC,
    H,
    T,
    make_events,
    make_photos,
)


def test_labels_window_threshold_and_too_young() -> None:
    until = T
    photos = make_photos(
        [
            (1, 10, T - 48 * H),  # labelled; engagement counted up to +24h inclusive
            (2, 10, T - 48 * H),  # labelled; one short of the threshold
            (3, 10, T - 24 * H),  # deadline == observed_until: labelled
            (4, 10, T - 24 * H + US),  # deadline 1us after observed_until: too young
            (5, 10, T - 30 * H),  # no events at all: labelled, 0
        ]
    )
    cfg = F.FeatureConfig(label_window_hours=24, label_min_engagement=3)
    up1 = T - 48 * H
    up3 = T - 24 * H
    events = make_events(
        [
            (1, "like", 1, up1, None),
            (1, "comment", 2, up1 + 10 * H, None),
            (1, "share", 3, up1 + 24 * H, None),  # exactly at the deadline: counts
            (1, "like", 4, up1 + 24 * H + US, None),  # after: does not
            (1, "view", 5, up1 + H, 100),  # views are not engagement
            (2, "like", 1, up1 + H, None),
            (2, "like", 2, up1 + 2 * H, None),
            (2, "like", 3, up1 - US, None),  # before the upload: ignored
            (3, "like", 1, up3 + H, None),
            (3, "like", 2, up3 + 2 * H, None),
            (3, "share", 3, up3 + 3 * H, None),
            (4, "like", 1, up3 + H, None),
            (4, "like", 2, up3 + 2 * H, None),
            (4, "like", 3, up3 + 3 * H, None),
        ]
    )
    out = F.collect(F.labels(events, photos, cfg, until), "cpu").sort("photo_id")
    assert out.schema["label"] == pl.Int8
    assert out["engagement"].to_list() == [3, 2, 3, 3, 0]
    assert out["label"].to_list() == [1, 0, 1, None, 0]
    assert out["label_status"].to_list() == ["labelled"] * 3 + ["too_young", "labelled"]
    assert out["label_deadline"][0] == up1 + 24 * H
    longer = F.FeatureConfig(label_window_hours=48, label_min_engagement=2)
    out2 = F.collect(F.labels(events, photos, longer, until), "cpu").sort("photo_id")
    assert out2["label"].to_list() == [1, 1, None, None, None]
    assert out2["engagement"][0] == 4


def test_demo_world_positive_rate() -> None:
    """The default threshold keeps the demo world's positives in the 20-35% band."""
    events, photos, _ = world_frames(WorldConfig())
    until = dt.datetime(2026, 1, 4, tzinfo=UTC)
    lab = F.collect(F.labels(events.lazy(), photos.lazy(), F.FeatureConfig(), until), "cpu")
    done = lab.filter(pl.col("label_status") == "labelled")
    assert lab.filter(pl.col("label_status") == "too_young")["label"].null_count() == 1000
    assert 0.20 <= done["label"].mean() <= 0.35  # type: ignore[operator]
