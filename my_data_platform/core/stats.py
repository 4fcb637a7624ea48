"""Small-sample statistics for checks that judge a rate: Wilson bounds and a bootstrap for AUC.

A quality floor is judged with its evidence: a check *blocks* only when the one-sided 95%
upper bound is below the floor (the data say it is worse), and *warns* when only the point
estimate is (the data cannot tell). See :func:`judge_floor`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

Verdict = Literal["pass", "warn", "fail"]


def _z(confidence: float, one_sided: bool) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    tail = 1.0 - confidence
    return NormalDist().inv_cdf(1.0 - (tail if one_sided else tail / 2))


def wilson_bounds(
    successes: float, n: int, confidence: float = 0.95, one_sided: bool = True
) -> tuple[float, float]:
    """Wilson score bounds ``(low, high)`` for a proportion ``successes / n``.

    One-sided (the default) gives the one-sided ``confidence`` bound on each side, which is
    what a floor check needs. ``n == 0`` gives ``(0, 1)``: no evidence either way.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    z = _z(confidence, one_sided)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def roc_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); ``None`` when one class is absent."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=np.float64)
    sorted_scores = score[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def bootstrap_auc_bounds(
    y: np.ndarray,
    score: np.ndarray,
    confidence: float = 0.95,
    one_sided: bool = True,
    n_boot: int = 500,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap bounds of ROC AUC, resampling positives and negatives separately
    (stratified, so every resample has both classes). ``None`` when one class is absent."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    pos, neg = score[y], score[~y]
    if len(pos) == 0 or len(neg) == 0:
        return None
    rng = np.random.default_rng(seed)
    aucs = np.empty(n_boot)
    labels = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
    for b in range(n_boot):
        s = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        aucs[b] = roc_auc(labels, s)  # type: ignore[assignment]
    tail = 1.0 - confidence
    q = tail if one_sided else tail / 2
    return float(np.quantile(aucs, q)), float(np.quantile(aucs, 1.0 - q))


@dataclass(frozen=True)
class FloorJudgement:
    """The verdict of a floor check and the evidence behind it (for check metadata)."""

    verdict: Verdict
    estimate: float | None
    n: int
    low: float | None
    high: float | None
    floor: float
    method: str

    @property
    def passed(self) -> bool:
        return self.verdict != "fail"

    def metadata(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(float(x), 6)

        return {
            "verdict": self.verdict,
            "estimate": r(self.estimate),
            "n": self.n,
            "lower_bound_95": r(self.low),
            "upper_bound_95": r(self.high),
            "floor": self.floor,
            "method": self.method,
        }

    def describe(self) -> str:
        if self.estimate is None:
            return f"no evidence (n={self.n}); floor {self.floor}"
        if self.low is None or self.high is None:  # an estimate without bounds: say so
            return (
                f"{self.estimate:.3f} (n={self.n}, no bounds) against floor {self.floor}: "
                f"{self.verdict}"
            )
        return (
            f"{self.estimate:.3f} (n={self.n}, one-sided 95% bounds "
            f"{self.low:.3f}..{self.high:.3f}) against floor {self.floor}: {self.verdict}"
        )


def judge(
    estimate: float | None, n: int, low: float | None, high: float | None, floor: float, method: str
) -> FloorJudgement:
    """Fail only when the upper bound is below ``floor``; warn when only the estimate is (or
    when there is no evidence at all); pass otherwise."""
    if estimate is None or high is None:
        verdict: Verdict = "warn"
    elif high < floor:
        verdict = "fail"
    elif estimate < floor:
        verdict = "warn"
    else:
        verdict = "pass"
    return FloorJudgement(verdict, estimate, n, low, high, floor, method)


def judge_rate_floor(successes: float, n: int, floor: float) -> FloorJudgement:
    """A proportion (an accuracy) against a floor, with one-sided 95% Wilson bounds."""
    if n == 0:
        return judge(None, 0, None, None, floor, "wilson")
    low, high = wilson_bounds(successes, n)
    return judge(successes / n, n, low, high, floor, "wilson")


def judge_auc_floor(
    y: np.ndarray, score: np.ndarray, floor: float, seed: int = 0
) -> FloorJudgement:
    """ROC AUC against a floor, with one-sided 95% stratified bootstrap bounds."""
    y = np.asarray(y).astype(bool)
    auc = roc_auc(y, score)
    bounds = bootstrap_auc_bounds(y, score, seed=seed)
    low, high = bounds if bounds else (None, None)
    return judge(auc, len(y), low, high, floor, "bootstrap")
