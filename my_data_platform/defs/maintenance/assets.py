"""Weekly housekeeping: warehouse snapshots and files, lake leftovers, temp files, and the
dataset version store (run-branch retention, and garbage collection of the embedded store).

``maintenance_job`` runs on ``maintenance_schedule`` (``MDP_MAINTENANCE_CRON``, weekly) and by
hand (Launchpad, or ``mdp maintenance``). It holds the warehouse writer lock, so it never runs
inside a warehouse write; docs/maintenance.md says what it keeps and why.
"""

import datetime as dt
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from my_data_platform.core.maintenance import (
    WarehouseMaintenance,
    maintain_warehouse,
    stale_temp_files,
)
from my_data_platform.core.objectstore import ObjectInfo, ObjectStore
from my_data_platform.core.versioning import DEFAULT_BRANCH, VersionStore
from my_data_platform.core.versioning.base import LockTimeoutError
from my_data_platform.core.versioning.retention import RetentionReport, apply_branch_retention
from my_data_platform.core.warehouse import CATALOG_ALIAS
from my_data_platform.defs.datasets.assets import SNAPSHOT_METADATA
from my_data_platform.defs.datasets.resources import VersioningResource
from my_data_platform.defs.lake.objects import (
    EVENTS_PREFIX,
    EVENTS_QUARANTINE_PREFIX,
    referenced_lake_keys,
)
from my_data_platform.defs.lake.resources import ObjectStoreResource
from my_data_platform.defs.warehouse.resources import WarehouseResource

_GENERATION_TIME = re.compile(r"-(\d{8}T\d{12}Z)-[0-9a-zA-Z]+\.parquet$")


class MaintenanceConfig(dg.Config):
    """Launchpad overrides; each defaults to its setting."""

    snapshot_retention_days: float | None = None
    """Expire warehouse snapshots older than this many days; default
    ``MDP_WAREHOUSE_SNAPSHOT_RETENTION_DAYS``."""
    grace_s: float | None = None
    """Leave temp and unreferenced files younger than this; default ``MDP_MAINTENANCE_GRACE_S``."""
    merge_small_files: bool = True
    """Merge adjacent small warehouse files (``ducklake_merge_adjacent_files``)."""
    failed_branch_retention_days: float | None = None
    """Keep dataset run branches of failed audits this many days after their last activity;
    default ``MDP_FAILED_BRANCH_RETENTION_DAYS``."""


def dataset_snapshots(vs: VersionStore, *, limit: int = 10_000) -> set[int]:
    """Every warehouse snapshot a published dataset was built from: the ``warehouse_snapshot``
    of each commit reachable from ``main`` or a tag (merge commits' second parents included)."""
    heads = [vs.branch_head(DEFAULT_BRANCH), *vs.list_tags().values()]
    seen: set[str] = set()
    kept: set[int] = set()
    todo = list(dict.fromkeys(heads))
    while todo and len(seen) < limit:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        commit = vs.get_commit(ref)
        raw = commit.metadata.get(SNAPSHOT_METADATA)
        if raw is not None and raw.isdigit():
            kept.add(int(raw))
        todo.extend(p for p in commit.parents if p not in seen)
    return kept


def lake_leftovers(store: ObjectStore, *, older_than: dt.datetime) -> list[ObjectInfo]:
    """Lake event objects no day's pointer names: a superseded generation whose delete failed,
    or the files of a publish killed before its pointer. A generation younger than
    ``older_than`` may be a publish in progress, so it is left alone."""
    referenced = referenced_lake_keys(store)
    cutoff = older_than.strftime("%Y%m%dT%H%M%S%fZ")
    found = []
    for prefix in (EVENTS_PREFIX, EVENTS_QUARANTINE_PREFIX):
        for o in store.list(prefix):
            if o.key in referenced:
                continue
            m = _GENERATION_TIME.search(o.key)
            if m is None or m.group(1) < cutoff:  # no generation: a legacy name, never rewritten
                found.append(o)
    return found


def _data_bytes(store: ObjectStore, data_path: str) -> int:
    prefix = store.key_of(data_path.rstrip("/") + "/")
    if prefix is None:
        return 0
    return sum(o.size for o in store.list(prefix))


def _remove(paths: Iterable[tuple[Path, int]]) -> int:
    freed = 0
    for path, size in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        freed += size
    return freed


_ACTIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def active_run_ids(instance: dg.DagsterInstance) -> list[str]:
    """Runs that may still be writing a dataset run branch (named by their id's prefix)."""
    return [
        r.run_id for r in instance.get_runs(filters=dg.RunsFilter(statuses=_ACTIVE_RUN_STATUSES))
    ]


@dataclass
class VersioningMaintenance:
    """Branch retention on any backend, and the embedded store's garbage collection."""

    retention: RetentionReport
    objects_deleted: int = 0
    files_deleted: int = 0
    bytes_reclaimed: int = 0
    gc: str = "embedded store"
    """Who collected the garbage: ``embedded store``, ``lakeFS`` (its own GC job) or why not."""


def maintain_versions(
    vs: VersionStore,
    *,
    failed_retention: dt.timedelta,
    grace: dt.timedelta,
    protect: list[str],
    log: Any,
) -> VersioningMaintenance:
    """Remove merged and expired run branches first, so the garbage collection that follows
    frees what only they referenced. A lock held by a long write postpones the collection to
    the next pass (a warning), it does not fail the housekeeping."""
    retention = apply_branch_retention(
        vs, failed_retention=failed_retention, grace=grace, protect=protect
    )
    report = VersioningMaintenance(retention)
    try:
        gc = vs.collect_garbage(grace_s=grace.total_seconds())
    except LockTimeoutError as e:
        log.warning("dataset store garbage collection postponed: %s", e)
        report.gc = f"postponed: {e}"
        return report
    if gc is None:
        report.gc = "lakeFS (its own garbage-collection job; docs/maintenance.md)"
    else:
        report.objects_deleted = gc.objects_deleted
        report.files_deleted = gc.files_deleted
        report.bytes_reclaimed = gc.bytes_reclaimed
    return report


@dg.op(
    description=(
        "Merges small warehouse files, expires warehouse snapshots past the retention (keeping "
        "every snapshot a published dataset was built from), deletes files no snapshot "
        "references, lake objects no day references and stale temp files; removes merged and "
        "expired dataset run branches and collects the embedded version store's garbage. "
        "Reports bytes reclaimed."
    ),
    tags={"dagster/concurrency_key": "warehouse_maintenance"},
)
def maintain(
    context: dg.OpExecutionContext,
    config: MaintenanceConfig,
    warehouse: WarehouseResource,
    object_store: ObjectStoreResource,
    versioning: VersioningResource,
) -> dg.Output[None]:
    from my_data_platform.settings import get_settings

    s = get_settings()
    retention = dt.timedelta(
        days=config.snapshot_retention_days
        if config.snapshot_retention_days is not None
        else s.warehouse_snapshot_retention_days
    )
    grace = dt.timedelta(
        seconds=config.grace_s if config.grace_s is not None else s.maintenance_grace_s
    )
    now = dt.datetime.now(dt.UTC)
    store = object_store.get_store()
    vs = versioning.get_store()
    keep = dataset_snapshots(vs) if vs.repository_exists() else set()
    failed_days = (
        config.failed_branch_retention_days
        if config.failed_branch_retention_days is not None
        else s.failed_branch_retention_days
    )
    with warehouse.writing(), warehouse.connect() as conn:
        wh: WarehouseMaintenance = maintain_warehouse(
            conn,
            CATALOG_ALIAS,
            older_than=now - retention,
            keep=keep,
            orphan_grace=grace,
            data_bytes=lambda: _data_bytes(store, warehouse.data_path),
            merge=config.merge_small_files,
        )
    leftovers = lake_leftovers(store, older_than=now - grace)
    for o in leftovers:
        store.delete(o.key)
    temps = stale_temp_files([s.data_dir], grace_s=grace.total_seconds())
    temp_bytes = _remove(temps)
    # last: a store that names a missing record fails the step loudly (nothing is collected),
    # after the warehouse, lake and temp housekeeping is done
    versions = maintain_versions(
        vs,
        failed_retention=dt.timedelta(days=failed_days),
        grace=grace,
        protect=active_run_ids(context.instance),
        log=context.log,
    )
    lake_bytes = sum(o.size for o in leftovers)
    total = wh.bytes_reclaimed + lake_bytes + temp_bytes + versions.bytes_reclaimed
    ret = versions.retention
    context.log.info(
        "reclaimed %d bytes: warehouse %d (%d snapshots expired, %d kept for datasets), "
        "lake leftovers %d (%d objects), temp files %d (%d), dataset versions %d (%d objects; "
        "branches removed: %d merged, %d expired failed; %d failed kept)",
        total, wh.bytes_reclaimed, len(wh.snapshots_expired), len(wh.snapshots_kept_for_datasets),
        lake_bytes, len(leftovers), temp_bytes, len(temps), versions.bytes_reclaimed,
        versions.objects_deleted, len(ret.removed_merged), len(ret.removed_expired),
        len(ret.kept_failed),
    )  # fmt: skip
    return dg.Output(
        None,
        metadata={
            "bytes_reclaimed": total,
            "warehouse_bytes_reclaimed": wh.bytes_reclaimed,
            "warehouse_bytes_after": wh.bytes_after,
            "snapshots_before": wh.snapshots_before,
            "snapshots_expired": len(wh.snapshots_expired),
            "snapshots_kept_for_datasets": dg.MetadataValue.json(wh.snapshots_kept_for_datasets),
            "dataset_snapshots": dg.MetadataValue.json(sorted(keep)),
            "files_merged": wh.files_merged,
            "files_created_by_merge": wh.files_created_by_merge,
            "old_files_deleted": wh.old_files_deleted,
            "orphans_deleted": wh.orphans_deleted,
            "lake_leftovers_deleted": len(leftovers),
            "lake_bytes_reclaimed": lake_bytes,
            "temp_files_deleted": len(temps),
            "temp_bytes_reclaimed": temp_bytes,
            "retention_days": retention.total_seconds() / 86400,
            "branches_removed": len(ret.removed_merged) + len(ret.removed_expired),
            "branches_removed_merged": len(ret.removed_merged),
            "branches_removed_expired": len(ret.removed_expired),
            "branches_kept_failed": len(ret.kept_failed),
            "branches_in_progress": len(ret.in_progress),
            "branch_retention": dg.MetadataValue.json(
                [
                    {"branch": d.branch, "status": d.status, "action": d.action, "why": d.reason}
                    for d in ret.decisions
                ]
            ),
            "failed_branch_retention_days": failed_days,
            "versioning_objects_deleted": versions.objects_deleted,
            "versioning_files_deleted": versions.files_deleted,
            "versioning_bytes_reclaimed": versions.bytes_reclaimed,
            "versioning_gc": versions.gc,
        },
    )


@dg.job(
    description=(
        "Warehouse, lake and dataset-version housekeeping (docs/maintenance.md); weekly, or "
        "by hand."
    ),
    tags={"mdp/source": "maintenance"},
)
def maintenance_job():
    maintain()


@dg.definitions
def maintenance() -> dg.Definitions:
    """``MDP_MAINTENANCE_CRON`` (weekly) in ``MDP_SCHEDULE_TIMEZONE``."""
    from my_data_platform.settings import get_settings

    s = get_settings()
    schedule = dg.ScheduleDefinition(
        name="maintenance_schedule",
        job=maintenance_job,
        cron_schedule=s.maintenance_cron,
        execution_timezone=s.schedule_timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Weekly warehouse and lake housekeeping.",
    )
    return dg.Definitions(jobs=[maintenance_job], schedules=[schedule])
