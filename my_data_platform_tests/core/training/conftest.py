"""Fixtures: synthetic examples with a known hidden score, and one model trained on them."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from my_data_platform.core import features as F
from my_data_platform.core import training as T

FAST = T.TrainConfig(seed=3, epochs=12, batch_size=128, hidden=(32, 16))


def synthetic(n: int = 1500, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Examples whose label depends on a hidden score built from a few features + noise, and
    the matching ground truth (``latent_score``) for the oracle."""
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    for c in F.FEATURE_COLUMNS:
        cols[c] = rng.poisson(rng.gamma(2.0, 5.0, n)).astype(np.int64)
    follower = rng.lognormal(4.0, 1.0, n)
    cols["author_follower_count"] = follower.astype(np.int64)
    cols["photo_likes_24h"] = rng.poisson(1 + follower / 40).astype(np.int64)
    quality = rng.normal(size=n)
    latent = 0.8 * np.log1p(follower) + 1.2 * quality + 0.3 * np.log1p(cols["photo_likes_24h"])
    latent = latent - latent.mean()
    label = (latent + rng.normal(scale=0.8, size=n) > 0.3).astype(np.int8)
    emb = rng.normal(scale=0.05, size=(n, 384)).astype(np.float32)
    emb[:, 0] += 0.5 * quality.astype(np.float32)  # the caption carries part of the quality
    author = rng.integers(0, 300, n)
    split = np.array(T.SPLITS)[np.searchsorted([0.7, 0.85], (author * 7919 % 300) / 300.0)]
    df = pl.DataFrame(
        {
            "photo_id": np.arange(n, dtype=np.int64),
            "author_id": author,
            "label": label,
            "split": split,
            **cols,
            "caption_embedding": pl.Series(emb.tolist(), dtype=pl.List(pl.Float32)),
        }
    )
    truth = pl.DataFrame({"photo_id": np.arange(n, dtype=np.int64), "latent_score": latent})
    return df, truth.with_columns(expected_rate=pl.col("latent_score").exp())


@pytest.fixture(scope="package")
def data() -> tuple[pl.DataFrame, pl.DataFrame]:
    return synthetic()


@pytest.fixture(scope="package")
def trained(data: tuple[pl.DataFrame, pl.DataFrame]) -> tuple[T.PopularityMLP, dict]:
    return T.train_popularity_model(data[0], FAST)


def in_unit(m: dict) -> None:
    """Every reported number of every evaluation split is finite, and in [0, 1] but log loss."""
    for split in ("validation", "test"):
        for k in ("roc_auc", "log_loss", "brier", "ece", "positive_rate"):
            v = m[split][k]
            assert v is not None and math.isfinite(v), (split, k, v)
            if k != "log_loss":
                assert 0.0 <= v <= 1.0, (split, k, v)
        assert m[split]["n"] > 0
