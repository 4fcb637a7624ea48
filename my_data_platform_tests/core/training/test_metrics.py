"""Metrics: the reported numbers against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from my_data_platform.core import training as T


def test_metrics_by_hand() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.6, 0.6])
    want = -(math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.4)) / 4
    assert T.log_loss(y, p) == pytest.approx(want, abs=1e-12)
    # bins: 0.2 -> bin 2 (|0 - 0.2| * 1/4); 0.6, 0.6 -> bin 6 (rate 0.5, mean 0.6: 0.1 * 2/4);
    # 0.9 -> bin 9 (|1 - 0.9| * 1/4)
    assert T.expected_calibration_error(y, p) == pytest.approx(0.05 + 0.05 + 0.025, abs=1e-12)
    m = T.binary_metrics(y, p)
    assert m["brier"] == pytest.approx((0.01 + 0.04 + 0.16 + 0.36) / 4)
    assert m["roc_auc"] == pytest.approx(0.875)  # 3.5 of 4 positive/negative pairs ordered
    curve = T.calibration_curve(y, p)
    assert [c["bin"] for c in curve] == [2, 6, 9] and sum(c["n"] for c in curve) == 4
    assert T.log_loss(np.array([1]), np.array([0.0])) == pytest.approx(-math.log(1e-7))
    assert T.roc_auc(np.array([1, 1]), np.array([0.1, 0.2])) is None
