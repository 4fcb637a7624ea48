"""Comparing two scorers' ROC AUC on the same test rows, judged with the sample size.

A small test split (a few dozen photos) makes any AUC noisy, and the model, the baselines and
the oracle are all scored on the *same* rows, so their errors are correlated. The rule used by
the model's checks (``beats_baselines``, ``near_oracle``):

* resample the test rows with a **paired, stratified bootstrap**: positives and negatives are
  drawn with replacement separately (every resample has both classes, so AUC is defined) and
  the *same* drawn rows score both scorers;
* the statistic is the AUC difference (``model - baseline``, floor 0) or the AUC ratio
  (``model / oracle``, floor 0.9); its one-sided 95% bounds are the 5th and 95th percentiles;
* the verdict is :func:`my_data_platform.core.stats.judge`'s: **fail** when the upper bound is
  below the floor (the data say the model is worse), **warn** when only the point estimate is
  (or when there is no evidence: one class absent), **pass** otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from my_data_platform.core.stats import FloorJudgement, judge, roc_auc

N_BOOT = 500
_ORDER = {"pass": 0, "warn": 1, "fail": 2}


def _difference(a: float, b: float) -> float:
    return a - b


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf")


STATISTICS: dict[str, Callable[[float, float], float]] = {
    "difference": _difference,
    "ratio": _ratio,
}


def paired_auc_bounds(
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    statistic: str = "difference",
    confidence: float = 0.95,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> tuple[float | None, float | None, float | None]:
    """``(estimate, low, high)`` of ``statistic(AUC(a), AUC(b))`` on the rows ``y`` labels,
    with one-sided ``confidence`` bounds from a paired stratified bootstrap; all ``None`` when
    one class is absent (AUC is undefined there)."""
    stat = STATISTICS[statistic]
    y = np.asarray(y).astype(bool)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if not len(y) == len(a) == len(b):
        raise ValueError(f"need one score per row: {len(y)} labels, {len(a)} and {len(b)} scores")
    auc_a, auc_b = roc_auc(y, a), roc_auc(y, b)
    if auc_a is None or auc_b is None:
        return None, None, None
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    labels = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    for i in range(n_boot):
        rows = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        draws[i] = stat(roc_auc(labels, a[rows]), roc_auc(labels, b[rows]))  # type: ignore[arg-type]
    tail = 1.0 - confidence
    # an order statistic, not an interpolation: a ratio over a zero AUC is inf, inf - inf is not
    low, high = np.quantile(draws, [tail, 1 - tail], method="inverted_cdf")
    return stat(auc_a, auc_b), float(low), float(high)


def judge_paired(
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    floor: float,
    statistic: str = "difference",
    seed: int = 0,
) -> FloorJudgement:
    """``statistic(AUC(a), AUC(b))`` against ``floor`` (see the module docstring)."""
    est, low, high = paired_auc_bounds(y, a, b, statistic, seed=seed)
    return judge(est, len(np.asarray(y)), low, high, floor, f"paired_bootstrap_auc_{statistic}")


def worst(judgements: Mapping[str, FloorJudgement]) -> tuple[str, FloorJudgement] | None:
    """The name and judgement with the worst verdict (then the lowest estimate relative to
    its floor); ``None`` for no judgements."""
    if not judgements:
        return None

    def badness(item: tuple[str, FloorJudgement]) -> tuple[int, float]:
        j = item[1]
        margin = float("inf") if j.estimate is None else j.estimate - j.floor
        return _ORDER[j.verdict], -margin

    return max(judgements.items(), key=badness)


def judge_beats_baselines(
    y: np.ndarray, model: np.ndarray, baselines: Mapping[str, np.ndarray], seed: int = 0
) -> tuple[FloorJudgement | None, dict[str, FloorJudgement]]:
    """The model against every baseline (AUC difference, floor 0): the worst judgement, and
    each baseline's. The worst is ``None`` when there is no baseline."""
    each = {
        name: judge_paired(y, model, s, 0.0, "difference", seed) for name, s in baselines.items()
    }
    found = worst(each)
    return (found[1] if found else None), each


def judge_near_oracle(
    y: np.ndarray, model: np.ndarray, oracle: np.ndarray, fraction: float, seed: int = 0
) -> FloorJudgement:
    """The model's AUC as a fraction of the oracle's, on the same rows, against ``fraction``."""
    return judge_paired(y, model, oracle, fraction, "ratio", seed)
