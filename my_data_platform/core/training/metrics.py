"""The numbers reported for every scorer and split (scikit-learn's metrics, plus calibration).

scikit-learn has no calibration curve with bin counts nor an ECE, so those two are here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from my_data_platform.core.training.data import EVAL_SPLITS, split_mask

_EPS = 1e-7  # probabilities are clipped to [_EPS, 1 - _EPS] before the log loss
# scikit-learn is imported inside the functions: it takes seconds, and loading the
# definitions must not pay for it.


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean binary cross-entropy, probabilities clipped to [1e-7, 1 - 1e-7]."""
    from sklearn.metrics import log_loss as sk_log_loss

    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return float(sk_log_loss(y, p, labels=[0, 1]))


def _bins(p: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum((np.clip(p, 0.0, 1.0) * bins).astype(np.int64), bins - 1)


def calibration_curve(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Reliability diagram data: per equal-width probability bin (non-empty only), the mean
    prediction next to the observed positive rate. A calibrated model lies on the diagonal."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    idx = _bins(p, bins)
    n = np.bincount(idx, minlength=bins)
    sp = np.bincount(idx, weights=p, minlength=bins)
    sy = np.bincount(idx, weights=y, minlength=bins)
    return [
        {
            "bin": b,
            "lower": b / bins,
            "upper": (b + 1) / bins,
            "n": int(n[b]),
            "mean_predicted": float(sp[b] / n[b]),
            "fraction_positive": float(sy[b] / n[b]),
        }
        for b in range(bins)
        if n[b]
    ]


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE: the bin-size-weighted mean |observed rate - mean prediction| over 10 equal bins."""
    total = len(np.asarray(y))
    if not total:
        return float("nan")
    return float(
        sum(
            c["n"] / total * abs(c["fraction_positive"] - c["mean_predicted"])
            for c in calibration_curve(y, p, bins)
        )
    )


def roc_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """ROC AUC, or None when the split holds one class only (AUC is undefined there)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return None
    return float(roc_auc_score(y, p))


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """The numbers reported for every scorer and split."""
    from sklearn.metrics import brier_score_loss

    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if not len(y):
        return {"n": 0}
    return {
        "roc_auc": roc_auc(y, p),
        "log_loss": log_loss(y, p),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "n": len(y),
        "positive_rate": float(y.mean()),
    }


def per_split(df: pl.DataFrame, p: np.ndarray) -> dict[str, dict[str, Any]]:
    """:func:`binary_metrics` of ``p`` against ``df``'s labels, per evaluation split."""
    y = df["label"].to_numpy().astype(np.float64)
    out = {}
    for split in EVAL_SPLITS:
        m = split_mask(df, split)
        out[split] = binary_metrics(y[m], p[m])
    return out


def metrics_max_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """Largest absolute difference between two runs' validation/test numbers."""
    worst = 0.0
    for split in EVAL_SPLITS:
        for k, va in a.get(split, {}).items():
            vb = b.get(split, {}).get(k)
            if va is None or vb is None:
                if va is not vb:
                    return math.inf
                continue
            worst = max(worst, abs(float(va) - float(vb)))
    return worst
