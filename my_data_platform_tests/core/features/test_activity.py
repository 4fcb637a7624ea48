"""Activity features: exact windows on hand-made events, counts against brute force."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from my_data_platform.core import features as F
from my_data_platform_tests.core.features.frames import (
    US,
    H,
    T,
    make_events,
    make_photos,
    queries,
)


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
