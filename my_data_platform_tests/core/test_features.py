"""Activity features, labels and training examples: exact windows, no leakage, one definition.

Worlds are tiny (a few thousand events) and hand-made frames carry known answers, so the whole
module runs in seconds. The GPU parity test needs CUDA and cudf_polars and skips without them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from my_data_platform.core import features as F
from my_data_platform.synth import WorldConfig
from my_data_platform.synth.features_world import EVENTS_POLARS_SCHEMA, world_frames

UTC = dt.UTC
T = dt.datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
US = dt.timedelta(microseconds=1)
H = dt.timedelta(hours=1)
TINY = WorldConfig(days=2, users=40, photos=200, events_per_day=4000, seed=7)
OBSERVED_UNTIL = dt.datetime.combine(TINY.date_of(TINY.days), dt.time(), tzinfo=UTC)


def make_events(rows: list[tuple[int, str, int, dt.datetime, int | None]]) -> pl.LazyFrame:
    """Events in EVENTS_SCHEMA from ``(photo_id, event_type, user_id, ts, dwell_ms)``."""
    return pl.DataFrame(
        {
            "event_id": [f"h-{i}" for i in range(len(rows))],
            "event_type": [r[1] for r in rows],
            "user_id": [r[2] for r in rows],
            "photo_id": [r[0] for r in rows],
            "ts": [r[3] for r in rows],
            "dwell_ms": [r[4] for r in rows],
            "client": ["ios"] * len(rows),
            "landing_date": [r[3].date() for r in rows],
            "source_file": ["hand"] * len(rows),
            "line_no": list(range(1, len(rows) + 1)),
        },
        schema=EVENTS_POLARS_SCHEMA,
    ).lazy()


def make_photos(rows: list[tuple[int, int, dt.datetime]]) -> pl.LazyFrame:
    return pl.DataFrame(
        {
            "photo_id": [r[0] for r in rows],
            "user_id": [r[1] for r in rows],
            "uploaded_at": [r[2] for r in rows],
            "caption": ["a caption"] * len(rows),
        },
        schema={
            "photo_id": pl.Int64,
            "user_id": pl.Int64,
            "uploaded_at": pl.Datetime("us", "UTC"),
            "caption": pl.String,
        },
    ).lazy()


def queries(rows: list[tuple[int, dt.datetime]]) -> pl.LazyFrame:
    return pl.LazyFrame(
        {"photo_id": [r[0] for r in rows], "as_of": [r[1] for r in rows]},
        schema={"photo_id": pl.Int64, "as_of": pl.Datetime("us", "UTC")},
    )


@pytest.fixture(scope="module")
def world() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    return world_frames(TINY)


@pytest.fixture(scope="module")
def examples(world: tuple[pl.DataFrame, ...]) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    events, photos, users = (f.lazy() for f in world)
    lab = F.collect(F.labels(events, photos, F.FeatureConfig(), OBSERVED_UNTIL), "cpu")
    train = F.collect(F.training_examples(events, photos, users, lab), "cpu")
    yield lab, train


# ---------------------------------------------------------------------------------------------
# Exact windows on hand-made events


def test_window_boundaries_are_exact() -> None:
    """(as_of - w, as_of]: at as_of counts, at as_of - w does not, after as_of never."""
    photos = make_photos([(1, 10, T - 800 * H), (2, 10, T - 900 * H), (3, 20, T - 10 * H)])
    events = make_events(
        [
            (1, "view", 100, T, 1000),  # in every window
            (1, "like", 101, T, None),
            (1, "view", 102, T + US, 5000),  # after as_of: never
            (1, "share", 102, T + H, None),
            (1, "view", 103, T - 24 * H, 3000),  # exactly as_of - 24h: not in 24h
            (1, "view", 104, T - 24 * H + US, None),  # just inside 24h, no dwell
            (1, "comment", 100, T - 168 * H, None),  # not in 168h, in 672h
            (1, "view", 105, T - 672 * H, 7000),  # in no window
            (1, "like", 106, T - 672 * H + US, None),  # only in 672h
            (2, "view", 200, T - H, 2000),  # the author's other photo
            (2, "share", 201, T - 100 * H, None),
            (2, "like", 201, T + US, None),
            (3, "view", 300, T - H, 10),  # another author
        ]
    )
    out = F.collect(F.activity_features(events, photos, queries([(1, T), (3, T)])), "cpu")
    assert out.columns == ["photo_id", "as_of", *F.activity_feature_columns()]
    r = out.row(0, named=True)
    expected = {
        "photo_views_24h": 2, "photo_likes_24h": 1, "photo_comments_24h": 0,
        "photo_shares_24h": 0, "photo_like_rate_24h": 0.5, "photo_mean_dwell_ms_24h": 1000.0,
        "photo_unique_users_24h": 3,
        "photo_views_168h": 3, "photo_likes_168h": 1, "photo_comments_168h": 0,
        "photo_like_rate_168h": 1 / 3, "photo_mean_dwell_ms_168h": 2000.0,
        "photo_unique_users_168h": 4,
        "photo_views_672h": 3, "photo_likes_672h": 2, "photo_comments_672h": 1,
        "photo_shares_672h": 0, "photo_mean_dwell_ms_672h": 2000.0,
        "photo_unique_users_672h": 5,
        "author_views_24h": 3, "author_likes_24h": 1, "author_shares_24h": 0,
        "author_like_rate_24h": 1 / 3,
        "author_views_168h": 4, "author_shares_168h": 1, "author_comments_168h": 0,
        "author_views_672h": 4, "author_likes_672h": 2, "author_comments_672h": 1,
        "author_shares_672h": 1, "author_like_rate_672h": 0.5,
        "photo_age_hours": 800.0,
    }  # fmt: skip
    assert {k: r[k] for k in expected} == expected
    r3 = out.row(1, named=True)
    assert (r3["photo_views_24h"], r3["author_views_24h"], r3["author_likes_672h"]) == (1, 1, 0)
    assert r3["photo_age_hours"] == 10.0


def test_no_events_gives_zeros_never_nan() -> None:
    photos = make_photos([(1, 10, T - H), (2, 10, T - H)])
    events = make_events([(1, "like", 5, T - 0.5 * H, None), (2, "view", 5, T + H, 100)])
    out = F.collect(F.activity_features(events, photos, queries([(2, T), (9, T)])), "cpu")
    r = out.row(0, named=True)
    assert r["photo_views_24h"] == 0 and r["photo_like_rate_24h"] == 0.0
    assert r["photo_mean_dwell_ms_24h"] == 0.0 and r["author_likes_24h"] == 1
    assert r["author_like_rate_24h"] == 0.0  # a like with no view: rate 0, not inf
    unknown = out.row(1, named=True)  # photo missing from photos: zero counts, null age
    assert unknown["author_views_24h"] == 0 and unknown["photo_age_hours"] is None
    floats = out.select(pl.col(pl.Float64)).fill_null(0.0)
    assert not floats.select(pl.any_horizontal(pl.all().is_nan() | pl.all().is_infinite())).item(
        0, 0
    )


def test_unique_users_with_ids_beyond_32_bits() -> None:
    """Ids that do not fit the packed (query, user) key take the exact wide path."""
    photos = make_photos([(1, 10, T - H)])
    big = 1 << 40
    events = make_events(
        [(1, "view", u, T - m * dt.timedelta(minutes=1), 1) for m, u in
         enumerate([big, big, -3, -3, 7, 7, big + 1, 2**32, 2**32 - 1])]
    )  # fmt: skip
    out = F.collect(F.activity_features(events, photos, queries([(1, T)])), "cpu")
    assert out["photo_unique_users_24h"].to_list() == [6]
    assert out["photo_views_24h"].to_list() == [9]


def test_duplicate_queries_keep_query_order() -> None:
    photos = make_photos([(1, 10, T - H), (2, 11, T - H)])
    events = make_events([(1, "view", 5, T - 0.5 * H, 100)])
    q = [(2, T), (1, T), (2, T), (1, T - H)]
    out = F.collect(F.activity_features(events, photos, queries(q)), "cpu")
    assert list(zip(out["photo_id"], out["as_of"], strict=True)) == q
    assert out["photo_views_24h"].to_list() == [0, 1, 0, 0]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(1, 4),  # photo
            st.sampled_from(F.EVENT_KINDS),
            st.integers(1, 3),  # user
            st.one_of(  # offset from T in microseconds, crowding the window edges
                st.sampled_from([0, 1, -1, -24, -168, -672]).map(lambda h: h * 3_600_000_000),
                st.integers(-700 * 3_600_000_000, 3_600_000_000),
            ).flatmap(lambda o: st.sampled_from([o - 1, o, o + 1])),
            st.one_of(st.none(), st.integers(0, 10_000)),
        ),
        max_size=40,
    ),
    st.lists(st.sampled_from([0, -1, 1, -24 * 3_600_000_000, 5_000_000]), min_size=1, max_size=3),
)
def test_counts_match_brute_force(raw: list[tuple], as_of_offsets: list[int]) -> None:
    author = {1: 1, 2: 1, 3: 2, 4: 1}
    photos = make_photos([(p, a, T - 1000 * H) for p, a in author.items()])
    rows = [(p, k, u, T + dt.timedelta(microseconds=o), d) for p, k, u, o, d in raw]
    qs = [(p, T + dt.timedelta(microseconds=o)) for p in author for o in as_of_offsets]
    out = F.collect(F.activity_features(make_events(rows), photos, queries(qs)), "cpu")
    for r in out.iter_rows(named=True):
        for w in F.FeatureConfig().windows_hours:
            inside = [e for e in rows if r["as_of"] - w * H < e[3] <= r["as_of"]]
            mine = [e for e in inside if e[0] == r["photo_id"]]
            theirs = [e for e in inside if author[e[0]] == author[r["photo_id"]]]
            for kind in F.EVENT_KINDS:
                assert r[f"photo_{kind}s_{w}h"] == sum(e[1] == kind for e in mine)
                assert r[f"author_{kind}s_{w}h"] == sum(e[1] == kind for e in theirs)
            assert r[f"photo_unique_users_{w}h"] == len({e[2] for e in mine})
            dwells = [e[4] for e in mine if e[1] == "view" and e[4] is not None]
            mean = sum(dwells) / len(dwells) if dwells else 0.0
            assert r[f"photo_mean_dwell_ms_{w}h"] == pytest.approx(mean, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Labels


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


# ---------------------------------------------------------------------------------------------
# Training examples: point in time, online == offline


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


# ---------------------------------------------------------------------------------------------
# Engines


def test_streaming_equals_in_memory(world: tuple[pl.DataFrame, ...]) -> None:
    events, photos, users = (f.lazy() for f in world)
    lab = F.labels(events, photos, F.FeatureConfig(), OBSERVED_UNTIL)
    snap = F.activity_features(
        events, photos, photos.select("photo_id", pl.lit(OBSERVED_UNTIL).alias("as_of"))
    )
    train = F.training_examples(events, photos, users, lab)
    for lf in (lab, snap, train):
        assert_frame_equal(F.collect(lf, "cpu"), lf.collect(engine="in-memory"))


def test_resolve_engine() -> None:
    assert F.resolve_engine("cpu") == "cpu"
    ok, _ = F.gpu_available()
    assert F.resolve_engine("auto") == ("gpu" if ok else "cpu")
    if not ok:
        with pytest.raises(RuntimeError, match="unavailable"):
            F.resolve_engine("gpu")
    with pytest.raises(ValueError, match="unknown engine"):
        F.resolve_engine("tpu")


@pytest.mark.gpu
def test_gpu_matches_cpu(world: tuple[pl.DataFrame, ...]) -> None:
    ok, why = F.gpu_available()
    if not ok:
        pytest.skip(f"GPU parity needs CUDA and cudf_polars: {why}")
    events, photos, users = (f.lazy() for f in world)
    lab = F.labels(events, photos, F.FeatureConfig(), OBSERVED_UNTIL)
    snap = F.activity_features(
        events, photos, photos.select("photo_id", pl.lit(OBSERVED_UNTIL).alias("as_of"))
    )
    train = F.training_examples(events, photos, users, lab)
    for lf in (lab, snap, train):
        cpu = F.collect(lf, "cpu")
        gpu = F.collect(lf, "gpu")
        assert_frame_equal(gpu, cpu, check_exact=False, rel_tol=1e-9, abs_tol=0.0)
        ints = [c for c, t in cpu.schema.items() if t.is_integer()]
        assert_frame_equal(gpu.select(ints), cpu.select(ints))  # counts exact
