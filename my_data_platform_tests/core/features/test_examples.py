"""Training examples: point in time, no leakage, online == offline."""

from __future__ import annotations

import datetime as dt

import polars as pl
from polars.testing import assert_frame_equal

from my_data_platform.core import features as F
from my_data_platform.synth.features_world import EVENTS_POLARS_SCHEMA
from my_data_platform_tests.core.features.frames import (
    OBSERVED_UNTIL,
    H,
)


def test_training_examples_shape(examples: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    lab, train = examples
    labelled = lab.filter(pl.col("label_status") == "labelled")
    assert train.height == labelled.height > 0
    assert train.columns[:3] == ["photo_id", "prediction_ts", "label"]
    assert train.columns[3:] == F.FEATURE_COLUMNS
    assert train["label"].null_count() == 0
    joined = train.join(lab, on="photo_id")
    assert (joined["prediction_ts"] == joined["uploaded_at"] + H).all()
    assert (train["photo_age_hours"] == 1.0).all()
    assert train.select(F.FEATURE_COLUMNS).null_count().sum_horizontal().item() == 0


def test_future_and_late_events_do_not_leak(
    world: tuple[pl.DataFrame, ...], examples: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    """Events after the prediction time, landed late or not, leave every training row as is."""
    events, photos, users = world
    lab, train = examples
    # after the last prediction_ts among the author's photos, so no row may see them
    last = (
        train.join(photos.select("photo_id", "user_id"), on="photo_id")
        .with_columns(pl.col("prediction_ts").max().over("user_id").alias("t"))
        .select("photo_id", "user_id", "t")
    )
    injected = pl.concat(
        [
            last.select(
                event_id=pl.lit(f"leak-{i}-") + pl.col("photo_id").cast(pl.String),
                event_type=pl.lit(kind),
                user_id=pl.col("user_id"),
                photo_id=pl.col("photo_id"),
                ts=pl.col("t") + dt.timedelta(microseconds=1) + i * dt.timedelta(minutes=7),
                dwell_ms=pl.lit(999_999),
                client=pl.lit("web"),
                landing_date=(pl.col("t") + dt.timedelta(days=3)).dt.date(),  # landed late
                source_file=pl.lit("late.jsonl.gz"),
                line_no=pl.lit(i),
            )
            for i, kind in enumerate(F.EVENT_KINDS * 2)
        ]
    ).cast(dict(EVENTS_POLARS_SCHEMA))  # type: ignore[arg-type]
    assert injected.height == 8 * train.height
    leaky = pl.concat([events, injected])
    again = F.collect(
        F.training_examples(leaky.lazy(), photos.lazy(), users.lazy(), lab.lazy()), "cpu"
    )
    assert_frame_equal(again, train)


def test_each_row_only_sees_its_past(
    world: tuple[pl.DataFrame, ...], examples: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    """Truncating the log at a photo's prediction_ts reproduces its row exactly."""
    events, photos, users = world
    _, train = examples
    for r in train.sample(8, seed=1).iter_rows(named=True):
        past = events.filter(pl.col("ts") <= r["prediction_ts"]).lazy()
        got = F.online_features(
            past, photos.lazy(), users.lazy(), r["photo_id"], r["prediction_ts"]
        )
        assert {c: got[c] for c in F.FEATURE_COLUMNS} == {c: r[c] for c in F.FEATURE_COLUMNS}


def test_online_equals_offline(
    world: tuple[pl.DataFrame, ...], examples: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    events, photos, users = world
    _, train = examples
    extra = photos.select("photo_id", (pl.col("photo_id") * 0.5).alias("clf_score"))
    full = F.collect(
        F.training_examples(
            events.lazy(), photos.lazy(), users.lazy(), examples[0], extra=extra.lazy()
        ),
        "cpu",
    )
    assert_frame_equal(full.drop("clf_score"), train)
    for r in full.sample(25, seed=0).iter_rows(named=True):
        got = F.online_features(
            events.lazy(), photos.lazy(), users.lazy(), r["photo_id"], r["prediction_ts"],
            extra=extra,
        )  # fmt: skip
        want = {k: v for k, v in r.items() if k != "label"}
        assert got == want  # every value, floats bit for bit


def test_config_changes_columns(world: tuple[pl.DataFrame, ...]) -> None:
    events, photos, users = (f.lazy() for f in world)
    cfg = F.FeatureConfig(windows_hours=(2, 48), prediction_delay_hours=0.5)
    lab = F.labels(events, photos, cfg, OBSERVED_UNTIL)
    train = F.collect(F.training_examples(events, photos, users, lab, cfg), "cpu")
    assert train.columns[3:] == F.feature_columns(cfg)
    assert "photo_views_2h" in train.columns and "photo_views_24h" not in train.columns
    assert (train["photo_age_hours"] == 0.5).all()
