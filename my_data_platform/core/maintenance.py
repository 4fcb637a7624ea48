"""Housekeeping for the warehouse and the data dir, built on DuckLake's own functions.

DuckLake keeps every snapshot, and every file a snapshot references, until told otherwise; a
killed writer leaves orphan files in its data path and ``.tmp-*`` files beside what it was
writing. :func:`maintain_warehouse` merges small files, expires old snapshots (keeping the ones
a published dataset was built from, so a model stays reproducible), deletes the files nothing
references any more, and reports the bytes reclaimed. :func:`stale_temp_files` finds temp files
old enough that no running write can own them. The caller holds the warehouse writer lock.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from my_data_platform.core.fsutil import TEMP_PREFIX

OBJECT_STORE_TEMP_PREFIX = "mdp-write-"
"""``ObjectStore.writing`` stages each object in a ``mdp-write-*`` folder of the system temp dir."""


@dataclass
class WarehouseMaintenance:
    """What one maintenance pass did: counts, and bytes as the data path listed them."""

    snapshots_before: int = 0
    snapshots_expired: list[int] = field(default_factory=list)
    snapshots_kept_for_datasets: list[int] = field(default_factory=list)
    files_merged: int = 0
    files_created_by_merge: int = 0
    old_files_deleted: int = 0
    orphans_deleted: int = 0
    bytes_before: int = 0
    bytes_after: int = 0

    @property
    def bytes_reclaimed(self) -> int:
        return max(0, self.bytes_before - self.bytes_after)


def snapshots(conn: duckdb.DuckDBPyConnection, catalog: str) -> list[tuple[int, dt.datetime]]:
    rows = conn.execute(
        "SELECT snapshot_id, snapshot_time FROM ducklake_snapshots(?) ORDER BY snapshot_id",
        [catalog],
    ).fetchall()
    return [(int(i), t) for i, t in rows]


def current_snapshot(conn: duckdb.DuckDBPyConnection, catalog: str) -> int:
    (snapshot,) = conn.execute("SELECT id FROM ducklake_current_snapshot(?)", [catalog]).fetchone()
    return int(snapshot)


def expirable(
    all_snapshots: Iterable[tuple[int, dt.datetime]],
    *,
    older_than: dt.datetime,
    keep: Iterable[int],
) -> tuple[list[int], list[int]]:
    """(to expire, kept for datasets): snapshots older than ``older_than``, except those in
    ``keep`` and the newest one (the warehouse as it is now is never expired)."""
    rows = sorted(all_snapshots)
    if not rows:
        return [], []
    newest = rows[-1][0]
    keep = set(keep)
    old = [i for i, t in rows if t < older_than and i != newest]
    return [i for i in old if i not in keep], [i for i in old if i in keep]


def maintain_warehouse(
    conn: duckdb.DuckDBPyConnection,
    catalog: str,
    *,
    older_than: dt.datetime,
    keep: Iterable[int],
    orphan_grace: dt.timedelta,
    data_bytes: Callable[[], int],
    merge: bool = True,
) -> WarehouseMaintenance:
    """One pass: merge adjacent small files, expire snapshots older than ``older_than`` except
    ``keep``, delete the files of expired snapshots, and orphans older than ``orphan_grace``
    (younger ones may belong to a write in progress). ``data_bytes`` sizes the data path."""
    report = WarehouseMaintenance(bytes_before=data_bytes())
    report.snapshots_before = len(snapshots(conn, catalog))
    if merge:
        for _schema, _table, processed, created in conn.execute(
            "CALL ducklake_merge_adjacent_files(?)", [catalog]
        ).fetchall():
            report.files_merged += int(processed)
            report.files_created_by_merge += int(created)
    expire, kept = expirable(snapshots(conn, catalog), older_than=older_than, keep=keep)
    report.snapshots_kept_for_datasets = kept
    if expire:
        done = conn.execute(
            "CALL ducklake_expire_snapshots(?, versions => ?::UBIGINT[])", [catalog, expire]
        ).fetchall()
        report.snapshots_expired = sorted(int(r[0]) for r in done)
    report.old_files_deleted = len(
        conn.execute(
            "CALL ducklake_cleanup_old_files(?, cleanup_all => true)", [catalog]
        ).fetchall()
    )
    cutoff = dt.datetime.now(dt.UTC) - orphan_grace
    report.orphans_deleted = len(
        conn.execute(
            "CALL ducklake_delete_orphaned_files(?, older_than => ?)", [catalog, cutoff]
        ).fetchall()
    )
    report.bytes_after = data_bytes()
    return report


def tree_bytes(root: Path) -> int:
    """Bytes of the regular files under ``root`` (symbolic links are not followed)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            total += st.st_size
    return total


def stale_temp_files(
    roots: Iterable[Path], *, grace_s: float, now: float | None = None
) -> list[tuple[Path, int]]:
    """``.tmp-*`` files under ``roots`` and ``mdp-write-*`` staging folders in the system temp
    dir, last modified more than ``grace_s`` ago, with their sizes. Symbolic links are not
    followed, so nothing outside the roots is ever listed."""
    now = time.time() if now is None else now
    found: list[tuple[Path, int]] = []
    for root in roots:
        if not root.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                if not name.startswith(TEMP_PREFIX):
                    continue
                path = Path(dirpath, name)
                try:
                    st = path.lstat()
                except FileNotFoundError:
                    continue
                if now - st.st_mtime > grace_s:
                    found.append((path, st.st_size))
    staging = Path(tempfile.gettempdir())
    for folder in staging.glob(f"{OBJECT_STORE_TEMP_PREFIX}*"):
        try:
            st = folder.lstat()
        except FileNotFoundError:
            continue
        if folder.is_dir() and not folder.is_symlink() and now - st.st_mtime > grace_s:
            found.append((folder, tree_bytes(folder)))
    return sorted(found)
