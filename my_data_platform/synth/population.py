"""Users, photos and the hidden popularity function of the synthetic world.

Everything is a pure function of ``(seed, day index)``. Notes: ``docs/ingest.md``.
"""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from my_data_platform.core.image_classes import IMAGE_CLASSES

#: The classes photos are drawn from: the image classifier's label set.
CLASSES: tuple[str, ...] = IMAGE_CLASSES
COUNTRIES: tuple[str, ...] = ("US", "BR", "IN", "DE", "FR", "JP", "GB", "ID", "MX", "NG")
_COUNTRY_P = np.array([0.25, 0.12, 0.14, 0.07, 0.06, 0.08, 0.08, 0.08, 0.07, 0.05])
CLIENTS: tuple[str, ...] = ("ios", "android", "web")
_CLIENT_P = np.array([0.45, 0.40, 0.15])

# Independent random streams. Day-level event streams use ``[seed, day]`` (see events.py);
# these add a third word that is never 0, so no two streams share a SeedSequence.
STREAM_PHOTOS = 1
STREAM_IMAGES = 2
STREAM_CORRUPT = 3
STREAM_EVENT_CORRUPT = 4
STREAM_CHUNKS = 5
STREAM_USERS = 99

SECONDS_PER_DAY = 86_400
IMAGE_SIZE = 64

PHOTO_DB_COLUMNS = (
    "photo_id",
    "user_id",
    "uploaded_at",
    "caption",
    "object_key",
    "width",
    "height",
)
USER_DB_COLUMNS = ("user_id", "handle", "joined_at", "follower_count", "country")


@dataclass(frozen=True)
class PopularityParams:
    """Parameters of the hidden popularity function (see the module docstring)."""

    intercept: float = -2.0
    follower_coef: float = 0.35
    class_effects: tuple[float, ...] = (0.3, 0.2, 0.0, 0.5, -0.3, -0.1)
    hot_word_coef: float = 0.45
    cold_word_coef: float = -0.45
    quality_coef: float = 0.6
    noise_sd: float = 0.3
    decay_fast_hours: float = 12.0
    decay_slow_hours: float = 168.0
    decay_slow_weight: float = 0.08
    # engagement mix: P(type) = base * exp(slope * quality), clipped; the rest are views
    like_base: float = 0.08
    comment_base: float = 0.015
    share_base: float = 0.008
    engagement_quality_slope: float = 0.5
    engagement_max_share: float = 0.6
    dwell_median_ms: float = 2500.0
    dwell_quality_coef: float = 0.35
    dwell_log_sd: float = 0.9

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = asdict(self)
        out["class_effects"] = dict(zip(CLASSES, self.class_effects, strict=True))
        return out


POPULARITY = PopularityParams()

POPULARITY_DESCRIPTION = (
    "latent_score = intercept + follower_coef*log1p(author follower_count) "
    "+ class_effects[image_class] + hot_word_coef*hot_words + cold_word_coef*cold_words "
    "+ quality_coef*quality + N(0, noise_sd); expected_rate = exp(latent_score). "
    "Events of a 15-minute bucket are spread over photos uploaded before the bucket in "
    "proportion to expected_rate * decay(age_hours at the bucket midpoint), with "
    "decay(a) = (1-decay_slow_weight)*exp(-a/decay_fast_hours) "
    "+ decay_slow_weight*exp(-a/decay_slow_hours). Each event is a like/comment/share with "
    "probability base*exp(engagement_quality_slope*quality) (their sum clipped to "
    "engagement_max_share), else a view whose dwell_ms is lognormal with median "
    "dwell_median_ms*exp(dwell_quality_coef*quality). Captions carry the class noun (85%), "
    "0-2 hot words (stunning, epic, ...; #viral, ...) and sometimes a cold phrase (meh, ...). "
    "Image noise falls with quality."
)

_HANDLE_ADJ = (
    "sunny",
    "quiet",
    "wild",
    "lazy",
    "brave",
    "cosmic",
    "urban",
    "salty",
    "misty",
    "happy",
    "lucky",
    "silver",
)
_HANDLE_NOUN = (
    "otter",
    "fox",
    "panda",
    "wave",
    "pixel",
    "lens",
    "comet",
    "maple",
    "tiger",
    "owl",
    "river",
    "cloud",
)

_OPENERS = (
    "Loving this",
    "Just a",
    "Another",
    "Caught this",
    "Look at this",
    "Weekend",
    "Finally a",
    "My",
)
_CLASS_NOUNS: tuple[tuple[str, str, str], ...] = (
    ("sunset", "golden hour sky", "dusk over the water"),
    ("beach day", "ocean view", "sandy shore"),
    ("homemade dinner", "brunch plate", "street food"),
    ("dog", "cat", "puppy"),
    ("city lights", "skyline", "downtown street"),
    ("selfie", "portrait", "headshot"),
)
_GENERIC_NOUNS = ("moment", "shot", "picture")
HOT_WORDS = ("stunning", "epic", "amazing", "incredible", "breathtaking")
HOT_TAGS = ("viral", "trending", "mustsee")
COLD_PHRASES = (", a bit blurry", ", kinda boring", ", nothing special", " meh")
_CLOSERS = ("", " today", " #photooftheday", " with friends", "!")


def users_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, 0, STREAM_USERS])


def day_rng(seed: int, day_index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, day_index, stream])


def _gather(words: tuple[str, ...], idx: np.ndarray) -> pl.Series:
    return pl.Series(words, dtype=pl.String).gather(idx)


def _utc(values: np.ndarray) -> pl.Series:
    return pl.Series(values.astype("datetime64[us]")).dt.replace_time_zone("UTC")


def photo_keys(photo_id: np.ndarray) -> pl.Series:
    """Landing keys of the images: ``landing/photos/{photo_id:08d}.jpg``."""
    ids = pl.Series(photo_id).cast(pl.String).str.zfill(8)
    return pl.select(
        pl.concat_str([pl.lit("landing/photos/"), pl.lit(ids), pl.lit(".jpg")])
    ).to_series()


def make_users(n_users: int, seed: int, start_date: datetime.date) -> pl.DataFrame:
    """The user table plus hidden columns ``activity`` and ``client_code`` used by events."""
    rng = users_rng(seed)
    user_id = np.arange(1, n_users + 1, dtype=np.int64)
    adj = rng.integers(0, len(_HANDLE_ADJ), n_users)
    noun = rng.integers(0, len(_HANDLE_NOUN), n_users)
    joined_ago_s = rng.integers(3_600, 730 * SECONDS_PER_DAY, n_users)
    followers = np.floor(rng.lognormal(4.0, 1.5, n_users)).astype(np.int64)
    country = rng.choice(len(COUNTRIES), n_users, p=_COUNTRY_P)
    activity = rng.lognormal(0.0, 1.0, n_users)
    client = rng.choice(len(CLIENTS), n_users, p=_CLIENT_P)
    uid = pl.Series("user_id", user_id)
    return pl.DataFrame(
        {
            "user_id": uid,
            "handle": pl.select(
                pl.concat_str(
                    [
                        pl.lit(_gather(_HANDLE_ADJ, adj)),
                        pl.lit("_"),
                        pl.lit(_gather(_HANDLE_NOUN, noun)),
                        uid.cast(pl.String),
                    ]
                )
            ).to_series(),
            "joined_at": _utc(np.datetime64(start_date, "s") - joined_ago_s.astype("m8[s]")),
            "follower_count": followers,
            "country": _gather(COUNTRIES, country),
            "activity": activity,
            "client_code": client.astype(np.int8),
        }
    )


def photos_in_day(total_photos: int, initial_days: int, day_index: int) -> tuple[int, int]:
    """``(first_id - 1, count)`` for a day: the same daily rate for initial and appended days."""
    lo = day_index * total_photos // initial_days
    hi = (day_index + 1) * total_photos // initial_days
    return lo, hi - lo


def make_photos_day(
    *,
    seed: int,
    day_index: int,
    total_photos: int,
    initial_days: int,
    start_date: datetime.date,
    users: pl.DataFrame,
    corrupt_rate: float,
    params: PopularityParams = POPULARITY,
) -> pl.DataFrame:
    """Photos uploaded on one day, sorted by upload time, with their hidden truth columns.

    ``upload_s`` (seconds since ``start_date`` 00:00 UTC) drives event eligibility; the other
    hidden columns (``image_class``, ``quality``, ``latent_score``, ``expected_rate``,
    ``image_status``) are ground truth only.
    """
    rng = day_rng(seed, day_index, STREAM_PHOTOS)
    base, n = photos_in_day(total_photos, initial_days, day_index)
    photo_id = np.arange(base + 1, base + n + 1, dtype=np.int64)
    upload_s = day_index * SECONDS_PER_DAY + np.sort(rng.integers(0, SECONDS_PER_DAY, n))
    act = users["activity"].to_numpy()
    cum = np.cumsum(act)
    author = np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), len(act) - 1)
    image_class = rng.integers(0, len(CLASSES), n)
    quality = rng.standard_normal(n)
    hot = rng.choice(3, n, p=[0.6, 0.3, 0.1])
    cold = (rng.random(n) < 0.2).astype(np.int64)
    noise = rng.normal(0.0, params.noise_sd, n)

    # caption pieces (index 0 of the optional tables is the empty string)
    opener = rng.integers(0, len(_OPENERS), n)
    noun_j = rng.integers(0, 3, n)
    generic = rng.random(n) < 0.15
    noun_idx = np.where(generic, len(CLASSES) * 3 + noun_j, image_class * 3 + noun_j)
    hot1 = np.where(hot >= 1, 1 + rng.integers(0, len(HOT_WORDS), n), 0)
    hot2 = np.where(hot >= 2, 1 + rng.integers(0, len(HOT_TAGS), n), 0)
    cold_idx = np.where(cold == 1, 1 + rng.integers(0, len(COLD_PHRASES), n), 0)
    closer = rng.integers(0, len(_CLOSERS), n)
    nouns = tuple(w for trio in _CLASS_NOUNS for w in trio) + _GENERIC_NOUNS
    caption = pl.select(
        pl.concat_str(
            [
                pl.lit(_gather(_OPENERS, opener)),
                pl.lit(_gather(("", *tuple(f" {w}" for w in HOT_WORDS)), hot1)),
                pl.lit(" "),
                pl.lit(_gather(nouns, noun_idx)),
                pl.lit(_gather(("", *tuple(f" #{w}" for w in HOT_TAGS)), hot2)),
                pl.lit(_gather(("", *COLD_PHRASES), cold_idx)),
                pl.lit(_gather(_CLOSERS, closer)),
            ]
        )
    ).to_series()

    followers = users["follower_count"].to_numpy()[author]
    latent = (
        params.intercept
        + params.follower_coef * np.log1p(followers)
        + np.asarray(params.class_effects)[image_class]
        + params.hot_word_coef * hot
        + params.cold_word_coef * cold
        + params.quality_coef * quality
        + noise
    )

    status = np.zeros(n, dtype=np.int64)  # 0 ok, 1 truncated, 2 not_an_image
    n_bad = round(corrupt_rate * n) if corrupt_rate > 0 else 0
    if n_bad:
        bad = day_rng(seed, day_index, STREAM_CORRUPT).choice(n, n_bad, replace=False)
        status[bad[: (n_bad + 1) // 2]] = 1
        status[bad[(n_bad + 1) // 2 :]] = 2

    return pl.DataFrame(
        {
            "photo_id": photo_id,
            "user_id": users["user_id"].to_numpy()[author],
            "uploaded_at": _utc(np.datetime64(start_date, "s") + upload_s.astype("m8[s]")),
            "caption": caption,
            "object_key": photo_keys(photo_id),
            "width": np.full(n, IMAGE_SIZE, dtype=np.int64),
            "height": np.full(n, IMAGE_SIZE, dtype=np.int64),
            "upload_s": upload_s.astype(np.int64),
            "image_class": image_class.astype(np.int64),
            "quality": quality,
            "hot_words": hot.astype(np.int64),
            "cold_words": cold,
            "latent_score": latent,
            "expected_rate": np.exp(latent),
            "image_status": _gather(("ok", "truncated", "not_an_image"), status),
        }
    )
