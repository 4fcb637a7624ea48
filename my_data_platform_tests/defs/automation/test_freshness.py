"""Freshness checks fail for a stale asset and pass right after a materialization."""

import dagster as dg

from my_data_platform.defs.automation.checks import DATASET_MAX_AGE, dataset_freshness

DATASET = dg.AssetKey(["datasets", "popularity"])


def _evaluate(instance: dg.DagsterInstance) -> dg.AssetCheckEvaluation:
    spec = dg.AssetSpec(DATASET)
    result = dg.materialize(
        [spec, *dataset_freshness],
        instance=instance,
        selection=dg.AssetSelection.checks_for_assets(DATASET),
    )
    evals = result.get_asset_check_evaluations()
    assert len(evals) == 1
    return evals[0]


def test_dataset_freshness_fails_when_stale_and_passes_when_fresh() -> None:
    with dg.instance_for_test() as instance:
        # never published: overdue
        assert not _evaluate(instance).passed
        instance.report_runless_asset_event(dg.AssetMaterialization(DATASET))
        fresh = _evaluate(instance)
        assert fresh.passed, fresh.metadata
        # the check's window is the configured maximum age
        assert DATASET_MAX_AGE.total_seconds() == 26 * 3600
