"""Branch retention (both backends) and the embedded store's garbage collection.

Retention must remove exactly the run branches write-audit-publish leaves behind (merged ones
at once, failed audits after the retention) and never ``main``, a tag or a user's branch, even
one named almost like a run branch. Garbage collection must free exactly what a deleted
branch alone referenced, keep everything reachable readable, and survive being killed."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from pathlib import Path

import pytest

from my_data_platform.core.versioning import (
    LocalVersionStore,
    RefNotFoundError,
    VersioningError,
    VersionStore,
)
from my_data_platform.core.versioning.retention import (
    apply_branch_retention,
    run_branch_created_at,
)

DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)


def _run_branch(run: str, created: dt.datetime) -> str:
    return f"run-{run}-{created:%Y%m%d%H%M%S}"


def test_run_branch_names() -> None:
    assert run_branch_created_at("run-0a1b2c3d-20261206091500") == dt.datetime(
        2026, 12, 6, 9, 15, tzinfo=dt.UTC
    )
    for other in (
        "main",
        "run-notes",
        "run-0a1b2c3d-2026120609150",  # 13 digits
        "run-0A1B2C3D-20261206091500",  # the asset writes lower-case hex
        "run-0a1b2c3d-20261399091500",  # month 13
        "run-0a1b2c3d-20261206091500-copy",
        "xrun-0a1b2c3d-20261206091500",
        "revert-20261206T091500Z-ab12",
    ):
        assert run_branch_created_at(other) is None, other


def test_is_ancestor(store: VersionStore) -> None:
    store.create_branch("b")
    store.put_object("b", "a.txt", b"a")
    first = store.commit("b", "first").id
    store.put_object("b", "a.txt", b"b")
    second = store.commit("b", "second").id
    assert store.is_ancestor(first, second) and store.is_ancestor(second, "b")
    assert store.is_ancestor(first, first)
    assert not store.is_ancestor(second, first)
    assert not store.is_ancestor(first, "main")
    store.merge("b", "main")
    assert store.is_ancestor(second, "main") and store.is_ancestor("main", "main")


def test_branch_retention(store: VersionStore) -> None:
    """One of each kind of branch; two passes, the second 15 days later."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    store.put_object("main", "data/base.txt", b"base")
    store.commit("main", "base")
    store.create_tag("popularity-base", "main")

    merged = _run_branch("aaaaaaaa", now - 3 * DAY)  # killed between merge and delete
    store.create_branch(merged)
    store.put_object(merged, "data/x.txt", b"x")
    store.commit(merged, "publish")
    store.put_object("main", "data/other.txt", b"o")  # main moved on: a real merge commit
    store.commit("main", "meanwhile")
    merge_commit = store.merge(merged, "main")
    assert store.get_commit(merge_commit).parents[1] == store.branch_head(merged)
    store.create_tag("popularity-x", "main")

    failed = _run_branch("bbbbbbbb", now - 3 * DAY)  # audit failed: staged, uncommitted
    failed_old = _run_branch("b0b0b0b0", now - 20 * DAY)
    for b in (failed, failed_old):
        store.create_branch(b)
        store.put_object(b, "data/bad.txt", b"bad")
    # died after its commit, before the merge: 20 days old by name, but committed just now
    unmerged = _run_branch("cccccccc", now - 20 * DAY)
    store.create_branch(unmerged)
    store.put_object(unmerged, "data/c.txt", b"c")
    store.commit(unmerged, "commit main lacks")
    young = _run_branch("dddddddd", now - dt.timedelta(minutes=5))  # a publish writing now
    store.create_branch(young)
    store.put_object(young, "data/d.txt", b"d")
    running = _run_branch("eeeeeeee", now - 20 * DAY)  # its Dagster run is still going
    store.create_branch(running)
    # a user's branches: never touched, whatever their state
    users = [
        "my-experiment",
        "run-notes",
        "run-aaaaaaaa-2026010100000",
        "run-ffffffff-20261399000000",
    ]
    for b in users:
        store.create_branch(b)
        store.put_object(b, "data/mine.txt", b"mine")
    store.commit("my-experiment", "my own commit")
    tags = store.list_tags()
    main_head = store.branch_head("main")

    report = apply_branch_retention(
        store,
        failed_retention=14 * DAY,
        grace=HOUR,
        protect=["eeeeeeee-1111-2222-3333-444444444444"],
        now=now,
    )
    assert report.removed_merged == [merged]
    assert report.removed_expired == [failed_old]
    assert sorted(report.kept_failed) == sorted([failed, unmerged])
    assert sorted(report.in_progress) == sorted([young, running])
    assert store.list_branches() == sorted(["main", failed, unmerged, young, running, *users])
    assert store.list_tags() == tags and store.branch_head("main") == main_head
    assert store.get_object("popularity-x", "data/x.txt") == b"x"  # what the branch merged
    [unmerged_decision] = [d for d in report.decisions if d.branch == unmerged]
    assert unmerged_decision.last_activity > unmerged_decision.created_at + 19 * DAY

    later = apply_branch_retention(store, failed_retention=14 * DAY, grace=HOUR, now=now + 15 * DAY)
    assert sorted(later.removed_expired) == sorted([failed, unmerged, young])
    # the run that was in progress never wrote: an empty branch holds nothing main lacks
    assert later.removed_merged == [running] and later.kept_failed == []
    assert store.list_branches() == sorted(["main", *users])
    assert store.list_tags() == tags and store.branch_head("main") == main_head
    for b in users:
        assert store.get_object(b, "data/mine.txt") == b"mine"


def test_merged_branch_with_staged_changes_is_a_failed_one(store: VersionStore) -> None:
    """Head in main but something staged: the staged data exists nowhere else, so it is kept
    for the retention like a failed audit, not removed as merged."""
    now = dt.datetime.now(dt.UTC)
    b = _run_branch("abcdef01", now - 2 * DAY)
    store.create_branch(b)
    store.put_object(b, "data/staged.txt", b"s")
    report = apply_branch_retention(store, failed_retention=14 * DAY, grace=HOUR, now=now)
    assert report.kept_failed == [b] and report.removed_merged == []
    report = apply_branch_retention(store, failed_retention=dt.timedelta(0), grace=HOUR, now=now)
    assert report.removed_expired == [b] and store.list_branches() == ["main"]


def test_lakefs_collects_its_own_garbage(lakefs_server) -> None:
    from my_data_platform_tests.core.versioning.conftest import lakefs_store

    assert lakefs_store(lakefs_server).collect_garbage(grace_s=0) is None


# ---------------------------------------------------------------------- garbage collection
def _files(store: LocalVersionStore) -> dict[str, int]:
    """Every record file (objects, trees, commits, staging areas) with its size."""
    out = {}
    for kind in ("objects", "trees", "commits", "staging"):
        for p in (store.path / kind).rglob("*"):
            if p.is_file():
                out[str(p.relative_to(store.path))] = p.stat().st_size
    return out


@pytest.fixture
def local(tmp_path: Path) -> LocalVersionStore:
    s = LocalVersionStore(tmp_path / "store", "datasets", durable=False)
    s.create_repository()
    s.put_objects("main", {"shared.bin": b"S" * 1000, "main.bin": b"M" * 500})
    s.commit("main", "first")
    s.create_tag("popularity-first", "main")
    s.put_object("main", "main.bin", b"N" * 700)
    s.commit("main", "second")
    return s


def test_gc_frees_exactly_what_a_deleted_branch_referenced(local: LocalVersionStore) -> None:
    # a branch with staged data only: its blobs are referenced by its staging area alone
    local.create_branch("wip")
    local.put_object("wip", "w.bin", b"W" * 600)
    local.delete_object("wip", "main.bin")
    before_branch = _files(local)
    local.create_branch("exp")
    local.put_objects("exp", {"u1.bin": b"1" * 3000, "u2.bin": b"2" * 4000, "s.bin": b"S" * 1000})
    dead = local.commit("exp", "unique data").id
    local.put_object("exp", "u3.bin", b"3" * 5000)  # staged only
    assert local.collect_garbage(grace_s=0).files_deleted == 0  # nothing unreferenced yet

    local.delete_branch("exp")
    leftovers = {p: n for p, n in _files(local).items() if p not in before_branch}
    blobs = [p for p in leftovers if p.startswith("objects/")]
    assert len(blobs) == 3  # u1, u2, u3; s.bin's bytes are main's too
    assert sum(leftovers[p] for p in blobs) == 3000 + 4000 + 5000

    young = local.collect_garbage(grace_s=3600)
    assert young.files_deleted == 0 and young.kept_young == len(leftovers)

    gc = local.collect_garbage(grace_s=0)
    assert gc.objects_deleted == 3 and gc.trees_deleted == 1 and gc.commits_deleted == 1
    assert gc.bytes_reclaimed == sum(leftovers.values())
    assert _files(local) == before_branch  # exactly the branch's own files are gone
    assert local.check_consistency() == []
    with pytest.raises(RefNotFoundError):
        local.resolve_ref(dead)
    # everything reachable still reads back: main, its tag, the staged branch
    assert local.get_object("popularity-first", "main.bin") == b"M" * 500
    assert local.get_object("main", "main.bin") == b"N" * 700
    assert local.get_object("main", "shared.bin") == b"S" * 1000
    assert local.get_object("wip", "w.bin") == b"W" * 600
    assert [c.path for c in local.uncommitted("wip")] == ["main.bin", "w.bin"]
    again = local.collect_garbage(grace_s=0)
    assert again.files_deleted == 0 and again.bytes_reclaimed == 0


def test_gc_collects_orphan_staging_areas(local: LocalVersionStore) -> None:
    """A kill between a ref swap and its staging cleanup leaves a staging file no ref names."""
    orphan = local.path / "staging" / f"{uuid.uuid4().hex}.jsonl"
    orphan.write_bytes(b'{"h":null,"p":"x"}\n')
    gc = local.collect_garbage(grace_s=0)
    assert gc.staging_deleted == 1 and not orphan.exists()


def test_gc_racing_a_writer_that_found_its_blob_already_stored(
    local: LocalVersionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack: a writer's blob already exists as garbage (so it is not rewritten), a
    collection deletes it before the writer stages it. The writer must notice and re-store."""
    local.create_branch("gone")
    local.put_object("gone", "g.bin", b"G" * 2000)
    local.commit("gone", "to be deleted")
    local.delete_branch("gone")
    real = local._store_blob
    collected = []

    def store_then_collect(data: bytes) -> tuple[str, int]:
        out = real(data)  # finds the garbage blob, writes nothing
        collected.append(local.collect_garbage(grace_s=0))  # the collection wins the lock
        return out

    monkeypatch.setattr(local, "_store_blob", store_then_collect)
    local.create_branch("new")
    local.put_object("new", "again.bin", b"G" * 2000)
    monkeypatch.undo()
    assert collected[0].objects_deleted == 1  # the collection did delete it
    assert local.get_object("new", "again.bin") == b"G" * 2000
    assert local.check_consistency() == []
    local.commit("new", "commit")
    assert local.check_consistency() == []


def test_gc_refuses_when_a_referenced_record_is_missing(local: LocalVersionStore) -> None:
    """What a missing commit's parents reach is unknown: nothing may be collected then."""
    local.create_branch("exp")
    local.put_object("exp", "u.bin", b"u" * 100)
    local.commit("exp", "x")
    local.delete_branch("exp")
    first = local.resolve_ref("popularity-first")
    local._commit_path(first).unlink()
    before = _files(local)
    with pytest.raises(VersioningError, match="nothing collected"):
        local.collect_garbage(grace_s=0)
    assert _files(local) == before


def test_gc_killed_midway_leaves_a_readable_store(
    local: LocalVersionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    local.create_branch("exp")
    for i in range(3):
        local.put_object("exp", f"u{i}.bin", bytes([i]) * 100)
        local.commit("exp", f"c{i}")
    local.delete_branch("exp")
    real_unlink = Path.unlink
    calls = []

    def dying_unlink(self: Path, missing_ok: bool = False) -> None:
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        calls.append(self)
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", dying_unlink)
    with pytest.raises(KeyboardInterrupt):
        local.collect_garbage(grace_s=0)
    monkeypatch.undo()
    assert len(calls) == 2 and all("commits" in str(p) for p in calls)  # commits go first
    assert local.check_consistency() == []
    rest = local.collect_garbage(grace_s=0)
    assert rest.commits_deleted == 1 and rest.trees_deleted == 3 and rest.objects_deleted == 3
    assert local.check_consistency() == []
    assert local.get_object("main", "main.bin") == b"N" * 700


def test_gc_keeps_a_blob_written_but_not_yet_staged(local: LocalVersionStore) -> None:
    """A writer stores its blobs before it stages them: the grace period covers the gap."""
    sha, _ = local._store_blob(b"in flight" * 10)
    path = local._object_path(sha)
    gc = local.collect_garbage(grace_s=60)
    assert path.exists() and gc.kept_young == 1
    old = time.time() - 120
    os.utime(path, (old, old))
    assert local.collect_garbage(grace_s=60).objects_deleted == 1 and not path.exists()


def test_maintenance_postpones_gc_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    """A long write holding the repository lock postpones the collection (reported), it does
    not fail the weekly housekeeping."""
    import logging
    import threading

    from my_data_platform.defs.maintenance.assets import maintain_versions

    s = LocalVersionStore(tmp_path / "store", "datasets", lock_timeout=0.2, durable=False)
    s.create_repository()
    held, release = threading.Event(), threading.Event()

    def writer() -> None:
        with s._locked():
            held.set()
            release.wait(10)

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert held.wait(5)
        report = maintain_versions(
            s, failed_retention=DAY, grace=HOUR, protect=[], log=logging.getLogger(__name__)
        )
    finally:
        release.set()
        t.join()
    assert report.gc.startswith("postponed") and report.bytes_reclaimed == 0
    done = maintain_versions(
        s, failed_retention=DAY, grace=HOUR, protect=[], log=logging.getLogger(__name__)
    )
    assert done.gc == "embedded store"


def test_gc_touches_only_the_stores_own_records(local: LocalVersionStore) -> None:
    """Files in the store's folders that are not content-addressed records (a README, a
    folder, a link to a file outside) are not the store's to delete."""
    outside = local.root / "outside.txt"
    outside.write_bytes(b"precious")
    fan = local.path / "objects" / "ab"
    fan.mkdir(exist_ok=True)
    strangers = [
        fan / "README",
        local.path / "trees" / "notes.txt",
        fan / ("c" * 62 + ".bak"),
        local.path / "staging" / "notes.jsonl",
    ]
    for p in strangers:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"not a record")
    (fan / ("d" * 62)).mkdir()  # a folder named like an object
    (fan / ("e" * 62)).symlink_to(outside)  # a link named like an object
    gc = local.collect_garbage(grace_s=0)
    assert gc.files_deleted == 0
    assert all(p.exists() for p in strangers) and (fan / ("d" * 62)).is_dir()
    assert outside.read_bytes() == b"precious" and (fan / ("e" * 62)).is_symlink()
