"""Yardsticks on the model's own splits: two baselines and the generator's oracle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from my_data_platform.core.training.data import labelled, split_mask, tabular_matrix
from my_data_platform.core.training.metrics import per_split

AUTHOR_ENGAGEMENT = ("author_likes_672h", "author_comments_672h", "author_shares_672h")


def _platt(score_train: np.ndarray, y_train: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Map a raw score to a probability with a 1-d logistic fit on train: ranking (AUC) is
    untouched, while log loss / Brier / ECE become comparable with the model's."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y_train)) < 2:
        rate = float(np.mean(y_train)) if len(y_train) else 0.5
        return lambda s: np.full(len(s), rate)
    mu, sd = float(np.mean(score_train)), float(np.std(score_train)) or 1.0
    lr = LogisticRegression().fit(((score_train - mu) / sd)[:, None], y_train)
    return lambda s: lr.predict_proba(((np.asarray(s) - mu) / sd)[:, None])[:, 1]


def _scored(df: pl.DataFrame, score: np.ndarray) -> dict[str, dict[str, Any]]:
    y = df["label"].to_numpy().astype(np.float64)
    tr = split_mask(df, "train")
    return per_split(df, _platt(score[tr], y[tr])(score))


def baseline_scores(df: pl.DataFrame) -> dict[str, np.ndarray]:
    """Each baseline's per-row score on ``labelled(df)`` (row order kept): what
    :func:`baselines` evaluates, and what a paired comparison with the model resamples."""
    from sklearn.linear_model import LogisticRegression

    df = labelled(df)
    y = df["label"].to_numpy().astype(np.float64)
    tr = split_mask(df, "train")
    cols = [c for c in AUTHOR_ENGAGEMENT if c in df.columns] or ["author_follower_count"]
    raw = df.select(pl.sum_horizontal(pl.col(c).cast(pl.Float64).fill_null(0) for c in cols))
    prior = np.log1p(np.clip(raw.to_series().to_numpy(), 0.0, None))
    x, _ = tabular_matrix(df)
    if len(np.unique(y[tr])) < 2:
        p = np.full(len(y), float(y[tr].mean()))
    else:
        lr = LogisticRegression(max_iter=2000).fit(x[tr], y[tr])
        p = lr.predict_proba(x)[:, 1]
    return {"author_prior": prior, "logistic_regression": p}


def baselines(df: pl.DataFrame) -> dict[str, Any]:
    """Two yardsticks on the same splits as the model (see docs/training.md).

    ``author_prior``: ``log1p`` of the engagement the author's photos received in the trailing
    672 h (follower count when those columns are absent), Platt-calibrated on train.
    ``logistic_regression``: sklearn on the standardised tabular features.
    """
    df = labelled(df)
    scores = baseline_scores(df)
    cols = [c for c in AUTHOR_ENGAGEMENT if c in df.columns] or ["author_follower_count"]
    out: dict[str, Any] = {
        "author_prior": {**_scored(df, scores["author_prior"]), "score": "+".join(cols)}
    }
    out["logistic_regression"] = per_split(df, scores["logistic_regression"])
    return out


def oracle_scores(df: pl.DataFrame, ground_truth_photos: pl.DataFrame) -> pl.DataFrame:
    """``photo_id, split, label, _oracle_score`` for the labelled rows that have ground truth:
    the score is the generator's hidden ``latent_score`` (or log ``expected_rate``)."""
    df = labelled(df)
    score_col = "latent_score" if "latent_score" in ground_truth_photos.columns else None
    if score_col is None and "expected_rate" not in ground_truth_photos.columns:
        raise ValueError("ground truth needs latent_score or expected_rate")
    gt = ground_truth_photos.select(
        "photo_id",
        (pl.col(score_col) if score_col else pl.col("expected_rate").log())
        .cast(pl.Float64)
        .alias("_oracle_score"),
    ).unique("photo_id", keep="first")
    joined = df.select("photo_id", "split", "label").join(gt, on="photo_id", how="inner")
    return joined.filter(pl.col("_oracle_score").is_not_null())


def oracle(df: pl.DataFrame, ground_truth_photos: pl.DataFrame) -> dict[str, Any]:
    """The best achievable ranking: score = the generator's hidden ``latent_score`` (log of
    ``expected_rate``, the same order). Photos without ground truth (real data) are dropped
    and ``coverage`` says how many matched."""
    df = labelled(df)
    joined = oracle_scores(df, ground_truth_photos)
    out: dict[str, Any] = _scored(joined, joined["_oracle_score"].to_numpy())
    out["score"] = (
        "latent_score" if "latent_score" in ground_truth_photos.columns else "log(expected_rate)"
    )
    out["coverage"] = joined.height / df.height if df.height else 0.0
    return out
