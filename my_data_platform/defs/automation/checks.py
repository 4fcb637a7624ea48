"""Freshness: how stale the warehouse, the features and the published dataset may get.

Last-update checks (visible on each asset in the UI) plus the sensor that evaluates them, so
an ingestion that silently stops is noticed even when no run fails.
"""

import datetime as dt
import warnings

import dagster as dg

WAREHOUSE_MAX_AGE = dt.timedelta(hours=26)  # daily data, plus slack for a late landing
DATASET_MAX_AGE = dt.timedelta(hours=26)  # the nightly job publishes once a day

# Dagster 1.13 marks these builders superseded by FreshnessPolicy. We keep the checks: they
# show pass/fail on each asset, alert through the run-failure path, and are tested; moving to
# FreshnessPolicy is a change of behaviour, not of layout.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.SupersessionWarning)
    warehouse_freshness = dg.build_last_update_freshness_checks(
        assets=[["warehouse", "events"], ["features", "training_examples"]],
        lower_bound_delta=WAREHOUSE_MAX_AGE,
    )
    dataset_freshness = dg.build_last_update_freshness_checks(
        assets=[["datasets", "popularity"]], lower_bound_delta=DATASET_MAX_AGE
    )
FRESHNESS_CHECKS = [*warehouse_freshness, *dataset_freshness]


@dg.definitions
def freshness() -> dg.Definitions:
    return dg.Definitions(
        asset_checks=FRESHNESS_CHECKS,
        sensors=[
            dg.build_sensor_for_freshness_checks(
                freshness_checks=FRESHNESS_CHECKS,
                minimum_interval_seconds=600,
                default_status=dg.DefaultSensorStatus.RUNNING,
            )
        ],
    )
