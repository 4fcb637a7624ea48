"""Backfills launched the way the UI launches them, run by the backfill daemon.

The test sends the UI's own GraphQL mutation (``launchPartitionBackfill``, with the parameters
the asset graph's "Materialize" dialog sends for a partition selection) to a workspace whose
code location runs in its own gRPC server process, as under ``dagster dev``. It then runs the
backfill daemon's iteration (``execute_backfill_iteration``) until the backfill is done; the
daemon launches the runs through the instance's run launcher, in separate processes.
"""

import logging
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
)
from dagster._daemon.backfill import execute_backfill_iteration
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

from my_data_platform.cli.sql import analyst_session
from my_data_platform.defs.lake.objects import EVENTS_KEY, landing_digest, list_landed_days
from my_data_platform.defs.lake.resources import object_store_from_settings
from my_data_platform.runner import load_definitions
from my_data_platform.settings import get_settings
from my_data_platform.synth import WorldConfig, generate_world

ROOT = Path(__file__).resolve().parents[3]
CONFIG = WorldConfig(days=3, users=40, photos=200, events_per_day=1_500, seed=5, corrupt_rate=0.03)
ASSETS = [
    dg.AssetKey(["lake", "events"]),
    dg.AssetKey(["lake", "events_quarantine"]),
    dg.AssetKey(["warehouse", "events"]),
    dg.AssetKey(["warehouse", "events_quarantine"]),
]
WAREHOUSE_EVENTS = dg.AssetKey(["warehouse", "events"])
TIMEOUT_S = 240


def _run_daemons(context, instance: dg.DagsterInstance, backfill_id: str) -> None:
    """Tick the two daemons a backfill needs, as ``dagster dev`` runs them, until the backfill
    is done (bounded): the backfill daemon submits its runs to the run queue (the instance's
    QueuedRunCoordinator), and the run queue daemon launches them in their own processes."""
    logger = logging.getLogger("backfill_daemon_test")
    queue = QueuedRunCoordinatorDaemon(interval_seconds=1)
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        list(execute_backfill_iteration(context.process_context, logger))
        list(queue.run_iteration(context.process_context))
        backfill = instance.get_backfill(backfill_id)
        assert backfill is not None
        if backfill.status != BulkActionStatus.REQUESTED:
            return
        time.sleep(1)
    runs = instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))
    raise AssertionError(
        f"backfill {backfill_id} not done within {TIMEOUT_S}s: "
        f"{instance.get_backfill(backfill_id)}; runs: {[(r.run_id, r.status) for r in runs]}"
    )


@pytest.mark.slow
def test_ui_backfill_of_every_landed_day_is_one_run_per_asset(data_env: Path) -> None:
    s = get_settings()
    store = object_store_from_settings()
    generate_world(CONFIG, store, s.oltp_url, s.ground_truth_dir)
    days = list_landed_days(store)
    assert len(days) == 3
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("event_days", days)  # as the landing sensor does
        with define_out_of_process_context(str(ROOT / "workspace.yaml"), None, instance) as ctx:
            # exactly what the UI sends for "Materialize" on these assets, all days selected
            result = execute_dagster_graphql(
                ctx,
                LAUNCH_PARTITION_BACKFILL_MUTATION,
                variables={
                    "backfillParams": {
                        "tags": [],
                        "assetSelection": [{"path": k.path} for k in ASSETS],
                        "partitionNames": days,
                        "fromFailure": False,
                    }
                },
            )
            launched = result.data["launchPartitionBackfill"]
            assert launched["__typename"] == "LaunchBackfillSuccess", launched
            backfill_id = launched["backfillId"]
            _run_daemons(ctx, instance, backfill_id)

        backfill = instance.get_backfill(backfill_id)
        assert backfill is not None and backfill.status == BulkActionStatus.COMPLETED_SUCCESS
        runs = instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))
        # single-run policy: one run over the whole range, for the lake and the warehouse alike
        (run,) = runs
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags[ASSET_PARTITION_RANGE_START_TAG] == days[0]
        assert run.tags[ASSET_PARTITION_RANGE_END_TAG] == days[-1]
        # every selected day of every asset materialized by that run, each with its own metadata
        metadata: dict[dg.AssetKey, dict[str, Any]] = {}
        for key in ASSETS:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=days), limit=100
            ).records
            assert sorted(r.partition_key for r in records) == days, key
            assert {r.run_id for r in records} == {run.run_id}, key
            metadata[key] = {
                r.partition_key: r.asset_materialization.metadata
                for r in records
                if r.asset_materialization
            }
        lake, warehouse = metadata[EVENTS_KEY], metadata[WAREHOUSE_EVENTS]
        evaluation = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(EVENTS_KEY, "landed_equals_loaded_plus_quarantined")]
        )
        (check,) = evaluation.values()
        assert check.status.value == "SUCCEEDED"

        assert _warehouse_days() == {d: lake[d]["loaded"].value for d in days}
        for d in days:
            md = lake[d]
            assert md["dagster/row_count"].value == md["loaded"].value > 0
            assert md["landed_lines"].value == md["loaded"].value + md["quarantined"].value
            assert warehouse[d]["dagster/row_count"].value == md["loaded"].value
            # the files loaded, as the landing sensor fingerprints them (its first-tick check)
            assert md["landing_digest"].value == landing_digest(
                store.list(f"landing/events/date={d}/")
            )

        # re-running one day replaces that day: same rows, no duplicates, the others untouched
        before = _warehouse_days()
        job = load_definitions().resolve_implicit_global_asset_job_def()
        again = job.execute_in_process(
            instance=instance, partition_key=days[1], asset_selection=ASSETS
        )
        assert again.success
        assert _warehouse_days() == before
        assert _query(
            "SELECT count(*) FROM (SELECT landing_date, event_id FROM warehouse.events "
            "GROUP BY ALL HAVING count(*) > 1)"
        ) == [(0,)]


def _query(sql: str) -> list[tuple]:
    with analyst_session() as session:
        return session.run(sql)[1]


def _warehouse_days() -> dict[str, int]:
    return dict(_query("SELECT landing_date::VARCHAR, count(*) FROM warehouse.events GROUP BY 1"))
