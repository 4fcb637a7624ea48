"""Rolling main back to an earlier version, on both backends: one new commit, history kept."""

from __future__ import annotations

from typing import Any

import pytest

from my_data_platform.core.versioning import (
    NoChangesError,
    RefNotFoundError,
    VersionStore,
)
from my_data_platform.core.versioning.revert import (
    RevertConflictError,
    RevertMismatchError,
    revert,
    tree,
)

A1 = b"PAR1 version one of a"
A2 = b"PAR1 version two of a, longer"
B = b"b text\n"
C = b"c is new in v2"


def _contents(vs: VersionStore, ref: str) -> dict[str, bytes]:
    return {o.path: vs.get_object(ref, o.path) for o in vs.list_objects(ref)}


def _two_versions(vs: VersionStore) -> tuple[str, str]:
    """v1 (a, b) and v2 (a changed, b deleted, c added), each merged to main from a branch."""
    vs.create_branch("build-1", "main")
    vs.put_objects("build-1", {"a.parquet": A1, "b.txt": B})
    v1 = vs.commit("build-1", "v1").id
    vs.merge("build-1", "main")
    vs.create_branch("build-2", "main")
    vs.put_object("build-2", "a.parquet", A2)
    vs.delete_object("build-2", "b.txt")
    vs.put_object("build-2", "c.bin", C)
    v2 = vs.commit("build-2", "v2").id
    vs.merge("build-2", "main")
    assert _contents(vs, "main") == {"a.parquet": A2, "c.bin": C}
    return v1, v2


def test_revert_makes_one_commit_with_v1s_tree(store: VersionStore) -> None:
    v1, v2 = _two_versions(store)
    before = store.resolve_ref("main")
    log_before = [c.id for c in store.log("main")]

    head = revert(store, v1, reverted_by="alice", reason="bad labels")

    assert store.resolve_ref("main") == head.id
    assert head.id not in (v1, v2, before)
    assert _contents(store, "main") == {"a.parquet": A1, "b.txt": B}
    assert tree(store, "main") == tree(store, v1)  # same paths, sizes and checksums
    assert store.diff(v1, "main") == []
    # provenance on the commit main resolves to
    assert head.metadata["reverted_to"] == v1
    assert head.metadata["reverted_from"] == before
    assert head.metadata["reverted_by"] == "alice"
    assert head.metadata["reason"] == "bad labels"
    assert head.message == f"revert main to {v1[:12]} ({v1[:12]}): bad labels"
    # history kept: every earlier commit is still in main's log, and v2 still resolves
    log_after = [c.id for c in store.log("main")]
    assert log_after[0] == head.id
    assert set(log_before) <= set(log_after)
    assert store.resolve_ref(v2) == v2
    assert _contents(store, v2) == {"a.parquet": A2, "c.bin": C}
    # the work branch is gone
    assert not [b for b in store.list_branches() if b.startswith("revert-")]


def test_revert_to_a_tag_then_again_is_no_change(store: VersionStore) -> None:
    v1, _ = _two_versions(store)
    store.create_tag("good", v1)
    head = revert(store, "good", reverted_by="bob", reason="roll back")
    assert head.metadata["reverted_to"] == v1
    assert "(good)" in head.message
    with pytest.raises(NoChangesError, match="nothing to revert"):
        revert(store, v1, reverted_by="bob", reason="again")
    assert store.resolve_ref("main") == head.id  # nothing was written
    assert not [b for b in store.list_branches() if b.startswith("revert-")]


def test_revert_forward_again_restores_v2(store: VersionStore) -> None:
    v1, v2 = _two_versions(store)
    revert(store, v1, reverted_by="a", reason="bad")
    head = revert(store, v2, reverted_by="a", reason="it was fine after all")
    assert _contents(store, "main") == {"a.parquet": A2, "c.bin": C}
    assert head.metadata["reverted_to"] == v2


def test_revert_to_missing_ref(store: VersionStore) -> None:
    _two_versions(store)
    before = store.resolve_ref("main")
    with pytest.raises(RefNotFoundError, match="no-such-tag"):
        revert(store, "no-such-tag", reverted_by="a", reason="x")
    with pytest.raises(RefNotFoundError, match="0" * 64):
        revert(store, "0" * 64, reverted_by="a", reason="x")
    assert store.resolve_ref("main") == before


@pytest.mark.parametrize("reason", ["", "   "])
def test_revert_needs_a_reason(store: VersionStore, reason: str) -> None:
    v1, _ = _two_versions(store)
    with pytest.raises(ValueError, match="reason"):
        revert(store, v1, reverted_by="a", reason=reason)


def _move_main_after_work_commit(
    store: VersionStore, monkeypatch: pytest.MonkeyPatch, objects: dict[str, bytes]
) -> None:
    """Simulate another writer: right after the rollback commits its work branch, a change
    to ``objects`` lands on main."""
    real_commit = store.commit

    def commit(branch: str, message: str, *args: Any, **kwargs: Any) -> Any:
        out = real_commit(branch, message, *args, **kwargs)
        if branch.startswith("revert-"):
            store.create_branch("other-writer", "main")
            store.put_objects("other-writer", objects)
            real_commit("other-writer", "concurrent write")
            store.merge("other-writer", "main")
        return out

    monkeypatch.setattr(store, "commit", commit)


def test_conflict_keeps_the_work_branch(
    store: VersionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, _ = _two_versions(store)
    _move_main_after_work_commit(store, monkeypatch, {"a.parquet": b"someone else's a"})
    moved_to = None
    with pytest.raises(RevertConflictError, match="kept on branch 'revert-") as info:
        revert(store, v1, reverted_by="a", reason="bad")
    moved_to = store.resolve_ref("main")
    assert info.value.paths == ["a.parquet"]
    assert info.value.work_branch in store.list_branches()
    # the prepared rollback is intact on the kept branch; main has only the other write
    assert _contents(store, info.value.work_branch) == {"a.parquet": A1, "b.txt": B}
    assert store.get_object(moved_to, "a.parquet") == b"someone else's a"


def test_non_conflicting_concurrent_write_is_reported(
    store: VersionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, _ = _two_versions(store)
    _move_main_after_work_commit(store, monkeypatch, {"d.txt": b"added meanwhile"})
    with pytest.raises(RevertMismatchError, match=r"in 1 path\(s\): d.txt"):
        revert(store, v1, reverted_by="a", reason="bad")
