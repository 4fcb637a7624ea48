"""Yardsticks: both baselines and the oracle score sensibly; the oracle ranks best."""

from __future__ import annotations

import polars as pl
import pytest

from my_data_platform.core import training as T
from my_data_platform_tests.core.training.conftest import in_unit


def test_baselines_and_oracle(data: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    df, truth = data
    b = T.baselines(df)
    in_unit(b["author_prior"])
    in_unit(b["logistic_regression"])
    o = T.oracle(df, truth)
    in_unit(o)
    assert o["coverage"] == 1.0
    assert o["test"]["roc_auc"] > b["logistic_regression"]["test"]["roc_auc"]
    # expected_rate alone ranks the same as latent_score
    o2 = T.oracle(df, truth.drop("latent_score"))
    assert o2["test"]["roc_auc"] == pytest.approx(o["test"]["roc_auc"])
