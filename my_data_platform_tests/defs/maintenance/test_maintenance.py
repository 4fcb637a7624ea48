"""The maintenance job on a real pipeline world: it reclaims the bytes of superseded warehouse
files, lake leftovers and stale temp files, keeps the snapshot a published dataset was built
from (time travel to it still works), and a second pass finds nothing more to do. It removes
the dataset run branches write-audit-publish leaves behind and collects what only they
referenced, and a model trained on the oldest published dataset still reproduces after it."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from typer.testing import CliRunner

from my_data_platform.core import datasets as D
from my_data_platform.core import model_registry as R
from my_data_platform.core.warehouse import CATALOG_ALIAS, WarehouseLocation, connect
from my_data_platform.defs.datasets.assets import SNAPSHOT_METADATA
from my_data_platform.defs.datasets.resources import version_store_from_settings
from my_data_platform.defs.lake.objects import (
    lake_events_generation_object,
    published_day,
)
from my_data_platform.defs.lake.resources import object_store_from_settings
from my_data_platform.defs.maintenance.assets import dataset_snapshots
from my_data_platform.runner import (
    execute_plan,
    load_definitions,
    plan_refresh,
    write_instance_config,
)
from my_data_platform.settings import get_settings, reset_settings
from my_data_platform.synth import WorldConfig, generate_world
from my_data_platform_tests.conftest import _ENV_VARS
from my_data_platform_tests.defs.crash.steps import run_step

pytestmark = pytest.mark.slow  # a generated world through the dataset

WORLD = WorldConfig(days=3, users=40, photos=240, events_per_day=3_000, seed=11)
HOUR = 3600


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    data = tmp_path_factory.mktemp("maintenance") / "data"
    with pytest.MonkeyPatch.context() as mp:
        for var in _ENV_VARS:
            mp.delenv(var, raising=False)
        mp.setenv("MDP_DATA_DIR", str(data))
        mp.setenv("DAGSTER_HOME", str(data / "dagster_home"))
        reset_settings()
        try:
            s = get_settings()
            generate_world(WORLD, object_store_from_settings(), s.oltp_url, s.ground_truth_dir)
            write_instance_config(s.dagster_home)
            with dg.DagsterInstance.from_config(str(s.dagster_home)) as instance:
                defs = load_definitions()
                plan = plan_refresh(defs, instance, '+key:"datasets/popularity"')
                assert all(o.success for o in execute_plan(defs, instance, plan))
                yield data, instance, defs
        finally:
            reset_settings()


def _maintain(defs, instance, **config) -> dict:
    result = defs.get_job_def("maintenance_job").execute_in_process(
        run_config={"ops": {"maintain": {"config": config}}}, instance=instance
    )
    assert result.success
    [out] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    return {k: v.value for k, v in out.step_output_data.metadata.items()}


def _location() -> WarehouseLocation:
    s = get_settings()
    return WarehouseLocation(catalog=s.warehouse_catalog, data_path=s.warehouse_data_path or "")


def _snapshot_ids(conn: duckdb.DuckDBPyConnection) -> list[int]:
    rows = conn.execute("SELECT snapshot_id FROM ducklake_snapshots(?)", [CATALOG_ALIAS])
    return [int(r[0]) for r in rows.fetchall()]


def test_maintenance_reclaims_and_keeps_dataset_snapshots(world) -> None:
    data, instance, defs = world
    vs = version_store_from_settings()
    kept = dataset_snapshots(vs)
    assert len(kept) == 1  # the dataset commit names the snapshot it was built from
    [dataset_snapshot] = kept
    head = vs.get_commit(vs.branch_head("main"))
    parents = [vs.get_commit(p) for p in head.parents]
    assert str(dataset_snapshot) in {c.metadata.get(SNAPSHOT_METADATA) for c in [head, *parents]}
    with connect(_location(), object_store_from_settings(), read_only=True) as conn:
        photos_then = conn.execute(
            f"SELECT count(*) FROM warehouse.photos AT (VERSION => {dataset_snapshot})"
        ).fetchone()[0]

    # superseded warehouse files: every day of warehouse/events and photos written twice over;
    # the first rewrite's files belong only to snapshots that expire (the dataset's snapshot
    # keeps the originals)
    store = object_store_from_settings()
    days = [(WORLD.start_date + dt.timedelta(days=i)).isoformat() for i in range(WORLD.days)]
    assert all(published_day(store, d) is not None for d in days)
    for _ in range(2):
        assert run_step(defs, instance, "photos", []).success
        for day in days:
            assert run_step(defs, instance, "warehouse_events", [day]).success

    # a lake leftover (a killed publish's file, two hours old) and a fresh one (in progress)
    old_gen = "20200101T000000000000Z-deadbeef"
    fresh_gen = time.strftime("%Y%m%dT%H%M%S000000Z-cafecafe", time.gmtime())
    day = days[0]
    for gen in (old_gen, fresh_gen):
        store.put_bytes(lake_events_generation_object(day, gen), b"x" * 1000)
    # temp files: a killed write's (old) and a running write's (new)
    stale = data / "lake" / ".tmp-stale.parquet"
    fresh = data / "lake" / ".tmp-fresh.parquet"
    stale.write_bytes(b"s" * 5000)
    fresh.write_bytes(b"f" * 5000)
    os.utime(stale, (time.time() - 2 * HOUR, time.time() - 2 * HOUR))

    report = _maintain(defs, instance, snapshot_retention_days=0, grace_s=HOUR)
    assert report["snapshots_expired"] > 0
    assert report["warehouse_bytes_reclaimed"] > 0, report
    assert report["lake_leftovers_deleted"] == 1 and report["lake_bytes_reclaimed"] == 1000
    assert report["temp_files_deleted"] >= 1 and report["temp_bytes_reclaimed"] >= 5000
    assert report["bytes_reclaimed"] >= report["warehouse_bytes_reclaimed"] + 6000
    assert dataset_snapshot in report["dataset_snapshots"]
    assert not stale.exists() and fresh.exists()
    assert not store.exists(lake_events_generation_object(day, old_gen))
    assert store.exists(lake_events_generation_object(day, fresh_gen))

    with connect(_location(), object_store_from_settings(), read_only=True) as conn:
        ids = _snapshot_ids(conn)
        assert dataset_snapshot in ids  # kept for the dataset
        assert len(ids) < report["snapshots_before"]
        # time travel to the dataset's snapshot reads what the dataset read
        again = conn.execute(
            f"SELECT count(*) FROM warehouse.photos AT (VERSION => {dataset_snapshot})"
        ).fetchone()[0]
        assert again == photos_then
        # every file the catalog still names exists
        files = conn.execute(
            "SELECT data_file FROM ducklake_list_files(?, 'events', schema => 'warehouse')",
            [CATALOG_ALIAS],
        ).fetchall()
        assert files and all(os.path.exists(f) for (f,) in files)
        assert conn.execute("SELECT count(*) FROM warehouse.events").fetchone()[0] > 0

    # idempotent: nothing left to reclaim
    second = _maintain(defs, instance, snapshot_retention_days=0, grace_s=HOUR)
    assert second["lake_leftovers_deleted"] == 0 and second["temp_files_deleted"] == 0
    assert second["warehouse_bytes_reclaimed"] == 0


def test_mdp_maintenance_prints_the_report(world) -> None:
    from my_data_platform.cli.main import app

    result = CliRunner().invoke(app, ["maintenance", "--retention-days", "7"])
    assert result.exit_code == 0, result.output
    assert '"bytes_reclaimed"' in result.output and '"snapshots_expired": 0' in result.output
    for key in ("branches_removed", "branches_kept_failed", "versioning_bytes_reclaimed"):
        assert f'"{key}"' in result.output


def test_weekly_schedule(world) -> None:
    _, _, defs = world
    schedule = defs.resolve_schedule_def("maintenance_schedule")
    assert schedule.job_name == "maintenance_job"
    _minute, _hour, dom, month, dow = schedule.cron_schedule.split()
    assert (dom, month) == ("*", "*") and dow.isdigit()  # once a week


def _store_files(root: Path) -> dict[str, int]:
    """The embedded version store's record files (objects, trees, commits, staging areas)."""
    return {
        str(p.relative_to(root)): p.stat().st_size
        for kind in ("objects", "trees", "commits", "staging")
        for p in (root / kind).rglob("*")
        if p.is_file()
    }


def test_model_reproducible_after_branch_retention_and_gc(world) -> None:
    """Issue 17 item 6: two published dataset versions, a model trained on the older one, the
    leftovers of killed and failed runs; maintenance with no retention and no grace removes
    the leftovers and their data, and retraining from the model's manifest still matches."""
    from my_data_platform.cli.main import app

    _data, instance, defs = world
    vs = version_store_from_settings()
    # a second published version: photos re-read (a new upstream version), dataset republished
    assert run_step(defs, instance, "photos", []).success
    assert run_step(defs, instance, "dataset", []).success
    tags = vs.list_tags()
    assert len(set(tags.values())) >= 2, tags
    oldest_tag = min(tags, key=lambda t: vs.get_commit(tags[t]).created_at)
    oldest = tags[oldest_tag]
    assert oldest != vs.branch_head("main")

    trained = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey(["training", "popularity_model"])],
        run_config={
            "ops": {
                "training__popularity_model": {
                    "config": {"dataset_commit": oldest_tag, "epochs": 2}
                }
            }
        },
    )
    assert trained.success
    uri = (
        trained.asset_materializations_for_node("training__popularity_model")[0]
        .metadata["manifest_uri"]
        .value
    )
    assert R.read_manifest(object_store_from_settings(), uri)["dataset_commit"] == oldest

    # a user's own branch (kept), then what killed and failed runs leave behind (removed)
    vs.create_branch("analysis")
    vs.put_object("analysis", "notes/mine.txt", b"mine")
    vs.commit("analysis", "my notes")
    root = vs.path  # type: ignore[attr-defined]
    before = _store_files(root)
    stamp = f"{dt.datetime.now(dt.UTC) - dt.timedelta(days=30):%Y%m%d%H%M%S}"
    merged = f"run-0000aaaa-{stamp}"  # killed between its merge and its branch delete
    vs.create_branch(merged, oldest_tag)
    failed = f"run-0000bbbb-{stamp}"  # audit failed: the objects stay staged
    vs.create_branch(failed)
    vs.put_objects(failed, {D.EXAMPLES: b"not parquet " * 200, D.CARD: b"# failed card\n"})
    unmerged = f"run-0000cccc-{stamp}"  # killed after its commit, before the merge
    vs.create_branch(unmerged)
    vs.put_object(unmerged, D.CARD, b"# a card main never saw\n" * 10)
    vs.commit(unmerged, "never merged")
    added = {p: n for p, n in _store_files(root).items() if p not in before}
    collectable = {p: n for p, n in added.items() if not p.startswith("staging/")}
    assert sum(p.startswith("objects/") for p in added) == 3

    report = _maintain(
        defs,
        instance,
        snapshot_retention_days=0,
        grace_s=0,
        failed_branch_retention_days=0,
        merge_small_files=False,
    )
    assert (report["branches_removed_merged"], report["branches_removed_expired"]) == (1, 2)
    assert report["branches_removed"] == 3 and report["branches_kept_failed"] == 0
    assert report["versioning_objects_deleted"] == 3
    assert report["versioning_bytes_reclaimed"] == sum(collectable.values())
    assert report["bytes_reclaimed"] >= report["versioning_bytes_reclaimed"]
    assert vs.list_branches() == ["analysis", "main"] and vs.list_tags() == tags
    assert _store_files(root) == before  # exactly the leftovers' own data is gone
    assert vs.check_consistency() == []  # type: ignore[attr-defined]
    assert vs.get_object("analysis", "notes/mine.txt") == b"mine"

    result = CliRunner().invoke(app, ["train", "--reproduce", uri, "--format", "json"])
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout)
    assert again["dataset_commit"] == oldest
    assert again["reproduction"]["matches"] is True, again["reproduction"]
