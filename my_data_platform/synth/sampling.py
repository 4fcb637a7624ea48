"""Sampling a day's events: which photo, when, who and what, with numpy only.

The day is cut into 15-minute buckets. A bucket's events go to photos uploaded before the bucket
starts, weighted ``expected_rate * decay(age)``, so every event is strictly after its photo's
upload; timestamps inside a bucket are sorted uniforms, so rows come out in time order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from my_data_platform.synth.population import (
    POPULARITY,
    SECONDS_PER_DAY,
    STREAM_CHUNKS,
    PopularityParams,
)

BUCKET_SECONDS = 900


def decay(age_hours: np.ndarray, params: PopularityParams = POPULARITY) -> np.ndarray:
    """Relative engagement intensity of a photo ``age_hours`` after upload."""
    w = params.decay_slow_weight
    return (1 - w) * np.exp(-age_hours / params.decay_fast_hours) + w * np.exp(
        -age_hours / params.decay_slow_hours
    )


def _diurnal(starts_s: np.ndarray) -> np.ndarray:
    """Activity by time of day: low at night, peak around 20:00 UTC."""
    hour = (starts_s % SECONDS_PER_DAY + BUCKET_SECONDS / 2) / 3600.0
    return 0.55 + 0.45 * np.cos(2 * np.pi * (hour - 20.0) / 24.0)


@dataclass
class Photos:
    """Photos eligible for one day, as plain arrays sorted by upload time."""

    photo_id: np.ndarray
    upload_s: np.ndarray
    rate: np.ndarray
    quality: np.ndarray


class Buckets:
    """Photo weights of consecutive 15-minute buckets, without an ``exp`` per bucket.

    ``rate * decay(t - upload)`` is a sum of two exponentials, so it factors into a per-photo
    term (computed once per day, relative to ``t0`` so nothing overflows) times a per-bucket
    term: a bucket's weights are then two multiply-adds over the eligible prefix.
    """

    def __init__(
        self, photos: Photos, starts_s: np.ndarray, t0_s: int, params: PopularityParams
    ) -> None:
        self.photos = photos
        self.starts_s = starts_s
        self.eligible = np.searchsorted(photos.upload_s, starts_s, side="left")
        rel_h = (photos.upload_s - t0_s) / 3600.0
        w = params.decay_slow_weight
        self.fast = photos.rate * (1 - w) * np.exp(rel_h / params.decay_fast_hours)
        self.slow = photos.rate * w * np.exp(rel_h / params.decay_slow_hours)
        mid_h = (starts_s + BUCKET_SECONDS / 2 - t0_s) / 3600.0
        self.f = np.exp(-mid_h / params.decay_fast_hours)
        self.g = np.exp(-mid_h / params.decay_slow_hours)
        cf = np.concatenate([[0.0], np.cumsum(self.fast)])
        cs = np.concatenate([[0.0], np.cumsum(self.slow)])
        self.totals = cf[self.eligible] * self.f + cs[self.eligible] * self.g

    def counts(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Events per bucket: the diurnal curve, damped while few photos exist (the first
        hours of a world), so early photos are not flooded."""
        top = self.totals.max() if len(self.totals) else 0.0
        if n == 0 or top <= 0:
            return np.zeros(len(self.starts_s), np.int64)
        share = _diurnal(self.starts_s) * self.totals / (self.totals + 0.1 * top)
        return rng.multinomial(n, share / share.sum())

    def sample(
        self, rng: np.random.Generator, counts: np.ndarray, b0: int, b1: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(photo index, ts in ms since start_date) for the events of buckets ``[b0, b1)``.

        Photos come from sorted uniform queries (a cache-friendly ``searchsorted``, ~8x faster
        than random ones), shuffled within the bucket; timestamps are sorted uniforms, so rows
        come out in time order without a sort.
        """
        n = int(counts[b0:b1].sum())
        nb = b1 - b0
        photo_spacing = rng.standard_exponential(n + nb)
        ts_spacing = rng.standard_exponential(n + nb)
        idx = np.empty(n, np.int64)
        ts = np.empty(n, np.int64)
        bucket_ms = BUCKET_SECONDS * 1000
        off = 0
        for j, b in enumerate(range(b0, b1)):
            k = int(counts[b])
            if k == 0:
                continue
            e = self.eligible[b]
            cum = np.cumsum(self.fast[:e] * self.f[b] + self.slow[:e] * self.g[b])
            sl = slice(off, off + k)
            spacing = slice(off + j, off + j + k + 1)
            q = _sorted_uniforms(photo_spacing[spacing]) * cum[-1]
            idx[sl] = np.minimum(np.searchsorted(cum, q, side="right"), e - 1)
            rng.shuffle(idx[sl])
            frac_ms = (_sorted_uniforms(ts_spacing[spacing]) * bucket_ms).astype(np.int64)
            ts[sl] = self.starts_s[b] * 1000 + np.minimum(frac_ms, bucket_ms - 1)
            off += k
        return idx, ts


def _sorted_uniforms(spacing: np.ndarray) -> np.ndarray:
    """``len(spacing) - 1`` sorted U(0, 1) draws: normalized exponential spacings, O(n)."""
    c = np.cumsum(spacing)
    return c[:-1] / c[-1]


def sample_index(cum: np.ndarray, u: np.ndarray, guide_size: int = 1 << 17) -> np.ndarray:
    """``searchsorted(cum, u * cum[-1], "right")`` for many unsorted ``u``, ~3x faster.

    A guide table maps each of ``guide_size`` equal slices of the total weight to its first
    candidate; a few vectorized passes then step forward to the exact answer.
    """
    total = cum[-1]
    guide = np.searchsorted(cum, np.arange(guide_size) * (total / guide_size), side="right")
    x = u * total
    idx = guide[np.minimum((u * guide_size).astype(np.int64), guide_size - 1)]
    last = len(cum) - 1
    np.minimum(idx, last, out=idx)
    todo = np.flatnonzero(cum[idx] <= x)
    while len(todo):
        todo = todo[idx[todo] < last]
        idx[todo] += 1
        todo = todo[cum[idx[todo]] <= x[todo]]
    return idx


def eligible_photos(photos_df: pl.DataFrame, until_s: int) -> Photos:
    upload_s = photos_df["upload_s"].to_numpy()
    if len(upload_s) > 1 and np.any(np.diff(upload_s) < 0):
        photos_df = photos_df.sort("upload_s", "photo_id")
        upload_s = photos_df["upload_s"].to_numpy()
    k = int(np.searchsorted(upload_s, until_s, side="left"))
    return Photos(
        photo_id=photos_df["photo_id"].to_numpy()[:k],
        upload_s=upload_s[:k],
        rate=photos_df["expected_rate"].to_numpy()[:k],
        quality=photos_df["quality"].to_numpy()[:k],
    )


def event_columns(
    rng: np.random.Generator,
    photos: Photos,
    users_df: pl.DataFrame,
    idx: np.ndarray,
    ts: np.ndarray,
    params: PopularityParams,
    seq0: int,
) -> dict[str, np.ndarray]:
    """Who did what: user, type, dwell and client for sampled (photo, ts) pairs."""
    n = len(idx)
    act = users_df["activity"].to_numpy()
    cum = np.cumsum(act)
    uidx = sample_index(cum, rng.random(n))

    q = photos.quality
    boost = np.exp(params.engagement_quality_slope * q)
    p = np.stack([params.like_base * boost, params.comment_base * boost, params.share_base * boost])
    p *= np.minimum(1.0, params.engagement_max_share / p.sum(axis=0))
    c1 = 1.0 - p.sum(axis=0)
    c2 = c1 + p[0]
    c3 = c2 + p[1]
    u = rng.random(n)
    etype = (u >= c1[idx]).astype(np.uint32)
    etype += u >= c2[idx]
    etype += u >= c3[idx]

    z = rng.standard_normal(n, dtype=np.float32)
    log_dwell = np.float32(np.log(params.dwell_median_ms)) + np.float32(params.dwell_log_sd) * z
    log_dwell += (params.dwell_quality_coef * q).astype(np.float32)[idx]
    dwell = np.exp(log_dwell).astype(np.int64)
    dwell[etype != 0] = -1

    pref = users_df["client_code"].to_numpy().astype(np.uint32)
    x = rng.integers(0, 20, n, dtype=np.uint8).astype(np.uint32)
    client = np.where(x < 17, pref[uidx], x - 17)
    return {
        "seq": np.arange(seq0, seq0 + n, dtype=np.int64),
        "etype": etype,
        "user_id": users_df["user_id"].to_numpy()[uidx],
        "photo_id": photos.photo_id[idx],
        "ts": ts,
        "dwell": dwell,
        "client": client,
    }


def chunk_rng(seed: int, day_index: int, chunk: int) -> np.random.Generator:
    return np.random.default_rng([seed, day_index, STREAM_CHUNKS, chunk])
