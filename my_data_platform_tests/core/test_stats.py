"""core.stats and the checks built on it: bounds against published values, the verdict rule,
and the paired AUC comparison the model's checks use (core.training.compare)."""

from __future__ import annotations

import math

import dagster as dg
import numpy as np
import pytest

from my_data_platform.core.datasets import judge_rate_within
from my_data_platform.core.stats import (
    bootstrap_auc_bounds,
    judge,
    judge_auc_floor,
    judge_rate_floor,
    roc_auc,
    wilson_bounds,
)
from my_data_platform.core.training.compare import (
    judge_beats_baselines,
    judge_near_oracle,
    paired_auc_bounds,
)
from my_data_platform.defs.judged import judged_check

Z95_ONE_SIDED = 1.6448536269514722  # the 95th percentile of the standard normal


# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Statistics in
# Medicine 17:857-872, Table I, method 3 (Wilson score interval, no continuity correction).
NEWCOMBE_WILSON_95 = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
]


@pytest.mark.parametrize(("x", "n", "low", "high"), NEWCOMBE_WILSON_95)
def test_wilson_two_sided_matches_newcombe(x: int, n: int, low: float, high: float) -> None:
    got = wilson_bounds(x, n, confidence=0.95, one_sided=False)
    assert got == pytest.approx((low, high), abs=1e-4)


@pytest.mark.parametrize("n", [1, 10, 37, 1000])
def test_wilson_one_sided_zero_successes_closed_form(n: int) -> None:
    # 0 of n: the upper bound solves p = z^2 (1-p) / n, i.e. z^2 / (n + z^2), by hand
    z2 = Z95_ONE_SIDED**2
    low, high = wilson_bounds(0, n)
    assert low == 0.0
    assert high == pytest.approx(z2 / (n + z2), rel=1e-12)
    # and n of n mirrors it
    assert wilson_bounds(n, n) == pytest.approx((1 - z2 / (n + z2), 1.0), rel=1e-12)


@pytest.mark.parametrize(("x", "n"), [(3, 10), (17, 40), (450, 1000)])
def test_wilson_bounds_are_the_score_test_roots(x: int, n: int) -> None:
    """Each bound p solves (x/n - p)^2 = z^2 p (1 - p) / n (the definition of the interval)."""
    for p in wilson_bounds(x, n):
        assert (x / n - p) ** 2 == pytest.approx(Z95_ONE_SIDED**2 * p * (1 - p) / n, rel=1e-9)


def test_wilson_rejects_impossible_counts_and_no_evidence_is_everything() -> None:
    assert wilson_bounds(0, 0) == (0.0, 1.0)
    for x, n in [(-1, 10), (11, 10), (1, -1)]:
        with pytest.raises(ValueError):
            wilson_bounds(x, n)
    with pytest.raises(ValueError):
        wilson_bounds(1, 10, confidence=1.0)


def test_roc_auc_matches_sklearn_with_ties() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    for n in (5, 40, 333):
        y = rng.random(n) < 0.3
        y[0], y[1] = True, False  # both classes present
        score = np.round(rng.normal(size=n) + y, 1)  # rounded: many ties
        assert roc_auc(y, score) == pytest.approx(sklearn_metrics.roc_auc_score(y, score))
    assert roc_auc(np.ones(4), np.arange(4)) is None
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5


def test_bootstrap_auc_bounds_bracket_the_estimate_and_narrow_with_n() -> None:
    rng = np.random.default_rng(0)

    def width(n: int) -> float:
        y = np.arange(n) % 3 == 0
        score = y + rng.normal(size=n)
        low, high = bootstrap_auc_bounds(y, score)  # type: ignore[misc]
        assert low <= roc_auc(y, score) <= high  # type: ignore[operator]
        return high - low

    assert width(1500) < width(30)
    assert bootstrap_auc_bounds(np.zeros(5), np.arange(5)) is None


def test_judge_rule_fail_warn_pass_and_no_evidence() -> None:
    assert judge(0.5, 100, 0.4, 0.6, 0.7, "x").verdict == "fail"  # upper bound below floor
    assert judge(0.65, 10, 0.4, 0.9, 0.7, "x").verdict == "warn"  # only the estimate below
    assert judge(0.75, 10, 0.4, 0.9, 0.7, "x").verdict == "pass"
    assert judge(None, 0, None, None, 0.7, "x").verdict == "warn"
    # n = 0 is no evidence: a warn that is not a fail
    zero = judge_rate_floor(0, 0, 0.9)
    assert (zero.verdict, zero.n, zero.estimate, zero.passed) == ("warn", 0, None, True)
    assert "no evidence" in zero.describe()
    # an estimate without bounds is a warn that still describes itself (once a TypeError)
    unbounded = judge(0.4, 3, None, None, 0.7, "x")
    assert unbounded.verdict == "warn" and "no bounds" in unbounded.describe()


def test_rate_floor_small_n_warns_large_n_fails() -> None:
    # 80% accuracy against a 90% floor: 8 of 10 cannot tell, 800 of 1000 can
    small = judge_rate_floor(8, 10, 0.9)
    large = judge_rate_floor(800, 1000, 0.9)
    assert small.verdict == "warn" and small.high is not None and small.high >= 0.9
    assert large.verdict == "fail" and large.high is not None and large.high < 0.9
    assert judge_rate_floor(95, 100, 0.9).verdict == "pass"
    md = large.metadata()
    assert md["n"] == 1000 and md["estimate"] == 0.8 and md["verdict"] == "fail"
    assert md["lower_bound_95"] < 0.8 < md["upper_bound_95"]


def test_auc_floor_judged_with_its_sample_size() -> None:
    rng = np.random.default_rng(1)

    def case(n: int) -> str:
        y = np.arange(n) % 2 == 0
        score = 0.3 * y + rng.normal(size=n)  # AUC about 0.58, below a 0.65 floor
        return judge_auc_floor(y, score, 0.65).verdict

    assert case(24) == "warn"
    assert case(4000) == "fail"
    assert judge_auc_floor(np.zeros(6), np.arange(6), 0.6).verdict == "warn"  # one class only


def test_rate_within_bounds_judges_both_sides() -> None:
    assert judge_rate_within(0, 20, (0.02, 0.98)).verdict == "warn"  # 0 of 20: can't tell
    assert judge_rate_within(0, 2000, (0.02, 0.98)).verdict == "fail"
    assert judge_rate_within(20, 20, (0.02, 0.98)).verdict == "warn"
    assert judge_rate_within(2000, 2000, (0.02, 0.98)).verdict == "fail"
    assert judge_rate_within(300, 1000, (0.02, 0.98)).verdict == "pass"
    assert judge_rate_within(0, 0, (0.02, 0.98)).verdict == "warn"


def test_judged_check_severity_follows_the_verdict() -> None:
    fail = judged_check(judge_rate_floor(800, 1000, 0.9), "acc", split="test")
    warn = judged_check(judge_rate_floor(8, 10, 0.9), "acc")
    ok = judged_check(judge_rate_floor(99, 100, 0.9), "acc")
    assert (fail.passed, fail.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert (warn.passed, warn.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert ok.passed
    assert fail.metadata["n"].value == 1000 and fail.metadata["split"].value == "test"


# -- the paired comparison behind beats_baselines / near_oracle ------------------------------


def _scores(n: int, seed: int, noise: float = 1.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, a score that ranks them, and a noisier copy of it (so a worse ranking)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2 == 0
    signal = y + rng.normal(size=n)
    return y, signal, signal + rng.normal(scale=noise, size=n)


def test_paired_difference_of_identical_scorers_is_exactly_zero() -> None:
    y, a, _ = _scores(60, 0)
    assert paired_auc_bounds(y, a, a.copy()) == (0.0, 0.0, 0.0)
    assert judge_beats_baselines(y, a, {"same": a.copy()})[0].verdict == "pass"  # type: ignore[union-attr]


def test_beats_baselines_small_test_split_warns_large_fails() -> None:
    # the "model" is the noisier copy: worse than the baseline; on 30 rows it can't be told
    y, better, worse = _scores(30, 3, noise=0.5)
    small, each = judge_beats_baselines(y, worse, {"prior": better, "self": worse})
    assert small is not None and small.verdict == "warn" and small.estimate < 0  # type: ignore[operator]
    assert each["self"].verdict == "pass" and set(each) == {"prior", "self"}
    y, better, worse = _scores(3000, 3, noise=0.5)
    large, _ = judge_beats_baselines(y, worse, {"prior": better})
    assert large is not None and large.verdict == "fail"
    assert large.method == "paired_bootstrap_auc_difference"
    good, _ = judge_beats_baselines(y, better, {"prior": worse})
    assert good is not None and good.verdict == "pass"


def test_near_oracle_ratio_on_the_same_rows() -> None:
    y, oracle, model = _scores(3000, 5)
    auc_ratio = roc_auc(y, model) / roc_auc(y, oracle)  # type: ignore[operator]
    j = judge_near_oracle(y, model, oracle, 0.9)
    assert j.estimate == pytest.approx(auc_ratio)
    assert j.low <= auc_ratio <= j.high  # type: ignore[operator]
    assert j.verdict == "fail" and auc_ratio < 0.9
    assert judge_near_oracle(y, oracle, oracle, 0.9).verdict == "pass"
    y, oracle, model = _scores(24, 5)
    small = judge_near_oracle(y, model, oracle, 0.9)
    assert small.estimate < 0.9 <= small.high and small.verdict == "warn"  # type: ignore[operator]
    nothing = judge_near_oracle(np.ones(5), np.arange(5.0), np.arange(5.0), 0.9)
    assert nothing.verdict == "warn" and nothing.estimate is None


def test_paired_bounds_refuse_misaligned_rows() -> None:
    with pytest.raises(ValueError, match="one score per row"):
        paired_auc_bounds(np.array([0, 1, 1]), np.arange(3.0), np.arange(2.0))
    # a reversed oracle (AUC 0) gives an unbounded ratio, never a division error
    est, _, _ = paired_auc_bounds(
        np.array([0, 1]), np.array([0.0, 1.0]), np.array([1.0, 0.0]), "ratio"
    )
    assert est is not None and math.isinf(est)
