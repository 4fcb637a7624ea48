"""The model-quality and statistical audit checks, judged with their sample size, through
Dagster: a small test split below a floor warns and what depends on it still runs; a large
one clearly below fails and blocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import polars as pl
import pytest

from my_data_platform.core.datasets import audit_dataset
from my_data_platform.defs.features.checks import label_balance
from my_data_platform.defs.features.objects import feature_object
from my_data_platform.defs.lake.resources import LocalObjectStoreResource
from my_data_platform.defs.training.assets import ORACLE_FRACTION_TARGET, model_checks

MODEL = dg.AssetKey(["training", "popularity_model"])


def _scores(n: int, seed: int = 3) -> pl.DataFrame:
    """A test split where the model is a noisier copy of the author prior (so worse than that
    baseline) and of the oracle (so under its target fraction)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2 == 0
    signal = y + rng.normal(size=n)
    model = signal + rng.normal(scale=0.5, size=n)
    return pl.DataFrame(
        {
            "photo_id": np.arange(n),
            "label": y.astype(np.int8),
            "p": model,
            "author_prior": signal,
            "logistic_regression": rng.normal(size=n),  # no skill: the model beats it
            "oracle": signal + 1.5 * y,  # far better than the model
        }
    )


def _run(scores: pl.DataFrame) -> tuple[dg.ExecuteInProcessResult, dict[str, Any]]:
    """The model's checks, as the model asset declares them (blocking), on ``scores``, with
    an asset downstream of the model."""
    specs = [
        dg.AssetCheckSpec(name, asset=MODEL, blocking=True)
        for name in ("beats_baselines", "near_oracle")
    ]

    @dg.asset(key=MODEL, check_specs=specs)
    def model():
        yield dg.MaterializeResult()
        yield from model_checks(scores, {"model": 0.0})

    @dg.asset(deps=[MODEL])
    def uses_the_model() -> None:
        return None

    with dg.instance_for_test() as instance:
        result = dg.materialize([model, uses_the_model], instance=instance, raise_on_error=False)
        evals = {
            e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key == MODEL
        }
    return result, evals


def test_model_checks_on_a_small_test_split_warn_and_downstream_runs() -> None:
    result, evals = _run(_scores(30))
    assert set(evals) == {"beats_baselines", "near_oracle"}
    for name, e in evals.items():
        md = {k: v.value for k, v in e.metadata.items()}
        assert md["verdict"] == "warn", (name, md)
        assert md["n"] == 30 and md["estimate"] < md["floor"] <= md["upper_bound_95"]
        assert e.severity == dg.AssetCheckSeverity.WARN and not e.passed
    assert evals["near_oracle"].metadata["floor"].value == ORACLE_FRACTION_TARGET
    per = evals["beats_baselines"].metadata["per_baseline"].value
    assert set(per) == {"author_prior_auc_difference", "logistic_regression_auc_difference"}
    assert result.success
    assert result.asset_materializations_for_node("uses_the_model")


def test_model_checks_on_a_large_test_split_fail_and_block() -> None:
    result, evals = _run(_scores(3000))
    for e in evals.values():
        md = {k: v.value for k, v in e.metadata.items()}
        assert md["verdict"] == "fail" and md["upper_bound_95"] < md["floor"]
        assert e.severity == dg.AssetCheckSeverity.ERROR
    assert not result.success
    assert not result.asset_materializations_for_node("uses_the_model")
    started = [
        e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START
    ]
    assert started == ["training__popularity_model"]  # the dependent never ran


def test_model_checks_pass_a_model_that_is_as_good() -> None:
    scores = _scores(400).with_columns(pl.col("author_prior").alias("p"))
    scores = scores.with_columns(oracle=pl.col("p"))
    _, evals = _run(scores)
    assert all(e.passed for e in evals.values())


def _examples(n: int, positives: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "photo_id": range(n),
            "author_id": range(n),
            "label": [1] * positives + [0] * (n - positives),
            "split": [("train", "validation", "test")[i % 3] for i in range(n)],
        }
    )


def _label_balance(ex: pl.DataFrame) -> Any:
    images = pl.DataFrame({"photo_id": ex["photo_id"], "sha256": ["x"] * ex.height})
    (audit,) = [a for a in audit_dataset(ex, images) if a.name == "label_balance"]
    return audit


def test_dataset_label_balance_small_warns_large_fails_empty_split_fails() -> None:
    small = _label_balance(_examples(30, 0))  # no positive among 30: the sample cannot tell
    assert small.passed and small.warn and small.detail["verdict"] == "warn"
    assert small.detail["n"] == 30
    large = _label_balance(_examples(3000, 0))
    assert not large.passed and not large.warn and large.detail["verdict"] == "fail"
    ok = _label_balance(_examples(300, 90))
    assert ok.passed and not ok.warn
    # an empty split is an exact invariant: it fails whatever the sample size
    one_split = _examples(300, 90).with_columns(split=pl.lit("train"))
    empty = _label_balance(one_split)
    assert not empty.passed and empty.detail["empty_splits"] == ["validation", "test"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalObjectStoreResource]:
    yield LocalObjectStoreResource(root=str(tmp_path / "store"))


def _labels(res: LocalObjectStoreResource, n: int, positives: int) -> None:
    df = pl.DataFrame(
        {
            "photo_id": range(n + 5),
            "label": [1] * positives + [0] * (n - positives) + [None] * 5,
            "label_status": ["labelled"] * n + ["pending"] * 5,
        }
    )
    res.get_store().put_bytes(feature_object("labels"), _parquet(df))


def _parquet(df: pl.DataFrame) -> bytes:
    import io

    buf = io.BytesIO()
    df.write_parquet(buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("n", "positives", "verdict", "severity"),
    [
        (40, 1, "warn", dg.AssetCheckSeverity.WARN),  # 2.5% of 40: estimate under 5% only
        (4000, 100, "fail", dg.AssetCheckSeverity.ERROR),  # 2.5% of 4000: the bound too
        (400, 100, "pass", dg.AssetCheckSeverity.WARN),
    ],
)
def test_features_label_balance_judged(
    store: LocalObjectStoreResource, n: int, positives: int, verdict: str, severity: Any
) -> None:
    _labels(store, n, positives)
    res = label_balance(object_store=store)
    assert res.metadata["verdict"].value == verdict
    assert res.metadata["labelled"].value == n  # pending labels are not evidence
    assert res.passed == (verdict == "pass")
    if verdict != "pass":
        assert res.severity == severity
