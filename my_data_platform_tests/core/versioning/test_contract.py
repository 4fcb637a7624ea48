"""One contract, two backends: the embedded store and lakeFS (official SDK over HTTP).

Every test in the first part runs on both backends through the ``store`` fixture; the last
part covers what only a remote backend has (credentials, unreachable endpoints, retries).
"""

from __future__ import annotations

import socket
import time

import pytest

from my_data_platform.core.versioning import (
    AuthenticationError,
    BackendUnavailableError,
    Change,
    InvalidNameError,
    LakeFSVersionStore,
    MergeConflictError,
    NoChangesError,
    ObjectNotFoundError,
    RefExistsError,
    RefNotFoundError,
    UncommittedChangesError,
    VersioningError,
    VersionStore,
)
from my_data_platform_tests.core.versioning.conftest import lakefs_store
from my_data_platform_tests.core.versioning.lakefs_server import LakeFSTestServer


def commit_files(store: VersionStore, branch: str, files: dict[str, bytes | None], msg: str) -> str:
    for path, data in files.items():
        if data is None:
            store.delete_object(branch, path)
        else:
            store.put_object(branch, path, data)
    return store.commit(branch, msg).id


def contents(store: VersionStore, ref: str) -> dict[str, bytes]:
    return {e.path: store.get_object(ref, e.path) for e in store.list_objects(ref)}


# ---------------------------------------------------------------------------------- contract
def test_repository_is_created_once_with_a_main_branch(store: VersionStore) -> None:
    assert store.repository_exists()
    head = store.branch_head("main")
    store.create_repository()  # idempotent
    assert store.branch_head("main") == head
    assert store.list_branches() == ["main"]
    assert store.list_objects("main") == []
    assert store.log("main")[0].id == head


def test_write_commit_and_read_at_branch_tag_and_commit(store: VersionStore) -> None:
    store.create_branch("run-1", "main")
    entry = store.put_object("run-1", "data/train.parquet", b"v1")
    assert (entry.path, entry.size) == ("data/train.parquet", 2)
    c1 = store.commit("run-1", "first version", {"rows": "10", "run_id": "abc"})
    assert c1.message == "first version"
    assert c1.metadata == {"rows": "10", "run_id": "abc"}
    assert store.branch_head("run-1") == c1.id
    store.create_tag("v1", c1.id)

    commit_files(store, "run-1", {"data/train.parquet": b"v2"}, "second version")

    assert store.get_object("run-1", "data/train.parquet") == b"v2"
    assert store.get_object(c1.id, "data/train.parquet") == b"v1"
    assert store.get_object("v1", "data/train.parquet") == b"v1"
    assert store.resolve_ref("v1") == c1.id
    assert store.resolve_ref(c1.id) == c1.id
    assert store.get_commit("v1").metadata == {"rows": "10", "run_id": "abc"}


def test_a_short_commit_id_resolves_like_the_full_one(store: VersionStore) -> None:
    """``mdp datasets log`` shows 12 digits; users paste them back (lakeFS takes short ids)."""
    store.create_branch("run-1", "main")
    cid = commit_files(store, "run-1", {"a.txt": b"v1"}, "first")
    assert store.resolve_ref(cid[:12]) == cid
    assert store.resolve_ref(cid[:6]) == cid
    assert store.get_object(cid[:12], "a.txt") == b"v1"
    assert store.get_commit(cid[:12]).id == cid
    missing = next(p for p in ("000000", "ffffff", "abcdef") if not cid.startswith(p))
    with pytest.raises(RefNotFoundError):
        store.resolve_ref(missing)
    with pytest.raises(RefNotFoundError):
        store.resolve_ref(cid[:5])  # too short to be taken for a commit


def test_staged_writes_are_visible_on_the_branch_only(store: VersionStore) -> None:
    store.create_branch("wip", "main")
    head = store.branch_head("wip")
    store.put_object("wip", "a.bin", b"\x00\x01")
    assert store.get_object("wip", "a.bin") == b"\x00\x01"
    assert store.uncommitted("wip") == [Change("a.bin", "added")]
    assert store.branch_head("wip") == head  # staging does not move the head
    with pytest.raises(ObjectNotFoundError):
        store.get_object(head, "a.bin")
    with pytest.raises(ObjectNotFoundError):
        store.get_object("main", "a.bin")


def test_branches_are_isolated(store: VersionStore) -> None:
    commit_files(store, "main", {"shared.txt": b"base"}, "base")
    store.create_branch("a", "main")
    store.create_branch("b", "main")
    commit_files(store, "a", {"shared.txt": b"from a", "only_a.txt": b"a"}, "a")
    store.put_object("b", "staged_b.txt", b"b")

    assert contents(store, "a") == {"shared.txt": b"from a", "only_a.txt": b"a"}
    assert contents(store, "b") == {"shared.txt": b"base", "staged_b.txt": b"b"}
    assert contents(store, "main") == {"shared.txt": b"base"}


def test_list_objects_prefix_sizes_and_checksums(store: VersionStore) -> None:
    store.create_branch("x", "main")
    files = {f"images/{i:03d}.jpg": bytes([i % 7]) * (i + 1) for i in range(30)}
    files["labels.csv"] = b"id,label\n"
    files["images/dup.jpg"] = files["images/003.jpg"]
    store.put_objects("x", files)
    store.commit("x", "many")

    images = store.list_objects("x", prefix="images/")
    assert [e.path for e in images] == sorted(p for p in files if p.startswith("images/"))
    by_path = {e.path: e for e in store.list_objects("x")}
    assert len(by_path) == len(files)
    assert all(by_path[p].size == len(d) for p, d in files.items())
    assert by_path["images/dup.jpg"].checksum == by_path["images/003.jpg"].checksum
    assert by_path["images/004.jpg"].checksum != by_path["images/003.jpg"].checksum


def test_delete_object_is_staged_and_idempotent(store: VersionStore) -> None:
    commit_files(store, "main", {"keep.txt": b"k", "drop.txt": b"d"}, "two files")
    store.delete_object("main", "drop.txt")
    store.delete_object("main", "never-existed.txt")  # a no-op, not an error
    assert store.uncommitted("main") == [Change("drop.txt", "removed")]
    store.commit("main", "drop one")
    assert [e.path for e in store.list_objects("main")] == ["keep.txt"]
    with pytest.raises(ObjectNotFoundError):
        store.get_object("main", "drop.txt")


def test_merge_fast_forward(store: VersionStore) -> None:
    commit_files(store, "main", {"a.txt": b"a"}, "base")
    store.create_branch("feature", "main")
    commit_files(store, "feature", {"b.txt": b"b"}, "add b")
    feature_head = store.branch_head("feature")

    result = store.merge("feature", "main")

    assert result == store.branch_head("main")
    assert contents(store, "main") == {"a.txt": b"a", "b.txt": b"b"}
    assert store.diff("main", "feature") == []
    assert feature_head in {c.id for c in store.log("main")}


def test_merge_three_way_combines_both_sides(store: VersionStore) -> None:
    base = {"keep.txt": b"k", "ours.txt": b"o0", "theirs.txt": b"t0", "gone.txt": b"g"}
    commit_files(store, "main", base, "base")
    store.create_branch("feature", "main")
    feature_head = commit_files(
        store, "feature", {"theirs.txt": b"t1", "new.txt": b"n", "gone.txt": None}, "feature"
    )
    main_head = commit_files(store, "main", {"ours.txt": b"o1", "gone.txt": None}, "main moved")

    result = store.merge("feature", "main", message="merge feature", metadata={"by": "test"})

    assert store.branch_head("main") == result
    assert contents(store, "main") == {
        "keep.txt": b"k",
        "ours.txt": b"o1",
        "theirs.txt": b"t1",
        "new.txt": b"n",
    }
    merge_commit = store.get_commit(result)
    assert set(merge_commit.parents) == {main_head, feature_head}
    assert merge_commit.message == "merge feature"
    assert merge_commit.metadata.get("by") == "test"
    assert contents(store, "feature")["ours.txt"] == b"o0"  # the source did not move


def test_merge_conflict_lists_paths_and_changes_nothing(store: VersionStore) -> None:
    commit_files(store, "main", {"a.txt": b"0", "b.txt": b"0", "c.txt": b"0"}, "base")
    store.create_branch("feature", "main")
    commit_files(store, "feature", {"a.txt": b"theirs", "b.txt": None, "c.txt": b"same"}, "f")
    main_head = commit_files(
        store, "main", {"a.txt": b"ours", "b.txt": b"ours", "c.txt": b"same"}, "m"
    )

    with pytest.raises(MergeConflictError) as exc:
        store.merge("feature", "main")

    assert exc.value.paths == ["a.txt", "b.txt"]  # c.txt changed identically: no conflict
    assert "a.txt" in str(exc.value)
    assert store.branch_head("main") == main_head
    assert store.get_object("main", "a.txt") == b"ours"


def test_merge_with_nothing_to_merge_is_not_an_error(store: VersionStore) -> None:
    commit_files(store, "main", {"a.txt": b"a"}, "base")
    store.create_branch("feature", "main")
    head = store.branch_head("main")
    assert store.merge("feature", "main") == head  # same commit
    assert store.merge("main", "feature") == head
    commit_files(store, "feature", {"b.txt": b"b"}, "b")
    merged = store.merge("feature", "main")
    assert store.merge("feature", "main") == merged  # merging twice changes nothing
    assert store.branch_head("main") == merged


def test_merge_into_a_branch_with_uncommitted_changes_is_refused(store: VersionStore) -> None:
    store.create_branch("feature", "main")
    commit_files(store, "feature", {"f.txt": b"f"}, "f")
    store.put_object("main", "dirty.txt", b"d")
    with pytest.raises(UncommittedChangesError):
        store.merge("feature", "main")
    assert store.get_object("main", "dirty.txt") == b"d"  # staging untouched


@pytest.mark.parametrize("main_moved", [False, True], ids=["fast-forward", "merge-commit"])
def test_merge_into_a_branch_whose_staged_write_was_deleted(
    store: VersionStore, main_moved: bool
) -> None:
    """Issue 14's sequence. A write then a delete of a path never committed on ``main`` is
    no change, so ``main`` is clean and the merge goes ahead; the merge drops ``main``'s old
    staging area, so the merged object is visible (lakeFS's rule, see docs/versioning.md)."""
    store.create_branch("b2", "main")
    if main_moved:
        commit_files(store, "main", {"m.txt": b"m"}, "main moved")
    store.put_object("main", "d/c", b"")
    b2_head = commit_files(store, "b2", {"d/c": b""}, "add d/c")
    store.delete_object("main", "d/c")
    assert store.uncommitted("main") == []

    main_head = store.branch_head("main")
    merged = store.merge("b2", "main")

    if main_moved:
        assert set(store.get_commit(merged).parents) == {main_head, b2_head}
    expected = {"m.txt": b"m", "d/c": b""} if main_moved else {"d/c": b""}
    assert contents(store, "main") == expected
    assert contents(store, store.branch_head("main")) == expected
    assert store.uncommitted("main") == []


def test_merge_reads_the_committed_state_of_the_source(store: VersionStore) -> None:
    store.create_branch("feature", "main")
    commit_files(store, "feature", {"committed.txt": b"c"}, "c")
    store.put_object("feature", "staged.txt", b"s")
    store.merge("feature", "main")
    assert [e.path for e in store.list_objects("main")] == ["committed.txt"]


def test_commit_with_no_changes(store: VersionStore) -> None:
    head = store.branch_head("main")
    with pytest.raises(NoChangesError):
        store.commit("main", "nothing")
    store.put_object("main", "x.txt", b"x")
    store.delete_object("main", "x.txt")  # staged, then unstaged: still nothing to commit
    assert store.uncommitted("main") == []
    with pytest.raises(NoChangesError):
        store.commit("main", "nothing again")
    assert store.branch_head("main") == head
    empty = store.commit("main", "audit marker", {"audit": "passed"}, allow_empty=True)
    assert empty.parents == (head,)
    assert store.branch_head("main") == empty.id


def test_tags(store: VersionStore) -> None:
    c1 = commit_files(store, "main", {"a.txt": b"1"}, "one")
    assert store.create_tag("release-1", "main") == c1
    commit_files(store, "main", {"a.txt": b"2"}, "two")
    assert store.list_tags() == {"release-1": c1}
    assert store.get_object("release-1", "a.txt") == b"1"  # tags never move
    with pytest.raises(RefExistsError):
        store.create_tag("release-1", "main")
    with pytest.raises(RefNotFoundError):
        store.create_tag("release-2", "no-such-branch")
    store.create_branch("from-tag", "release-1")
    assert store.branch_head("from-tag") == c1


def test_log_is_newest_first_with_metadata(store: VersionStore) -> None:
    ids = []
    for i in range(4):
        store.put_object("main", f"f{i}.txt", str(i).encode())
        ids.append(store.commit("main", f"commit {i}", {"step": str(i)}).id)
    log = store.log("main", limit=3)
    assert [c.id for c in log] == ids[::-1][:3]
    assert [c.message for c in log] == ["commit 3", "commit 2", "commit 1"]
    assert [c.metadata["step"] for c in log] == ["3", "2", "1"]
    assert log[0].parents == (ids[2],)
    assert log[0].created_at >= log[-1].created_at
    full = store.log("main")
    assert len(full) == 5 and full[-1].message  # 4 commits + the repository's first commit
    assert [c.id for c in store.log(ids[1])] == [ids[1], ids[0], full[-1].id]


def test_diff_between_refs(store: VersionStore) -> None:
    c1 = commit_files(store, "main", {"same": b"s", "changed": b"1", "removed": b"r"}, "c1")
    store.create_tag("before", c1)
    c2 = commit_files(store, "main", {"changed": b"2", "removed": None, "added": b"a"}, "c2")
    expected = [
        Change("added", "added"),
        Change("changed", "changed"),
        Change("removed", "removed"),
    ]
    assert store.diff("before", "main") == expected
    assert store.diff(c1, c2) == expected
    assert store.diff(c2, c1) == [
        Change("added", "removed"),
        Change("changed", "changed"),
        Change("removed", "added"),
    ]
    assert store.diff("main", c2) == []
    store.put_object("main", "staged", b"x")
    assert store.diff(c2, "main") == []  # diff compares committed states


def test_delete_branch(store: VersionStore) -> None:
    store.create_branch("tmp", "main")
    head = commit_files(store, "tmp", {"t.txt": b"t"}, "t")
    store.delete_branch("tmp")
    assert store.list_branches() == ["main"]
    with pytest.raises(RefNotFoundError):
        store.branch_head("tmp")
    with pytest.raises(RefNotFoundError):
        store.get_object("tmp", "t.txt")
    assert store.get_object(head, "t.txt") == b"t"  # commits outlive their branch
    with pytest.raises(RefNotFoundError):
        store.delete_branch("tmp")
    with pytest.raises(VersioningError):
        store.delete_branch("main")
    store.create_branch("tmp", "main")  # the name can be reused
    assert store.list_objects("tmp") == []


def test_errors_for_missing_refs_objects_and_bad_names(store: VersionStore) -> None:
    with pytest.raises(RefNotFoundError):
        store.get_object("no-such-ref", "a.txt")
    with pytest.raises(RefNotFoundError):
        store.get_object("0" * 64, "a.txt")
    with pytest.raises(ObjectNotFoundError):
        store.get_object("main", "missing.txt")
    with pytest.raises(RefNotFoundError):
        store.resolve_ref("nope")
    with pytest.raises(RefNotFoundError):
        store.list_objects("nope")
    with pytest.raises(RefNotFoundError):
        store.log("nope")
    with pytest.raises(RefNotFoundError):
        store.create_branch("x", "nope")
    with pytest.raises(RefNotFoundError):
        store.put_object("nope", "a.txt", b"a")
    with pytest.raises(RefNotFoundError):
        store.commit("nope", "m")
    with pytest.raises(RefNotFoundError):
        store.merge("nope", "main")
    with pytest.raises(RefNotFoundError):
        store.diff("main", "nope")
    store.create_branch("dup", "main")
    with pytest.raises(RefExistsError):
        store.create_branch("dup", "main")
    for bad in ("", "has/slash", "has space", "a" * 64):
        with pytest.raises(InvalidNameError):
            store.create_branch(bad, "main")
    for bad_path in ("", "/abs", "a/../b", "a//b"):
        with pytest.raises(InvalidNameError):
            store.put_object("main", bad_path, b"x")


# ---------------------------------------------------------------------------------- lakeFS only
def test_lakefs_bad_credentials_name_the_endpoint_not_the_secret(
    lakefs_server: LakeFSTestServer,
) -> None:
    secret = "super-secret-value-123"
    store = LakeFSVersionStore(
        lakefs_server.endpoint, lakefs_server.access_key_id, secret, "datasets"
    )
    with pytest.raises(AuthenticationError) as exc:
        store.list_branches()
    err = exc.value
    assert isinstance(err, BackendUnavailableError)
    assert err.endpoint == lakefs_server.endpoint
    assert lakefs_server.endpoint in str(err) and "401" in str(err)
    assert secret not in str(err) and secret not in repr(err)
    assert secret not in repr(store) and secret not in store.describe()
    assert len(lakefs_server.requests) == 1  # a 401 is not retried


def test_lakefs_unreachable_endpoint_retries_then_fails_clearly() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    store = LakeFSVersionStore(
        endpoint, "AKIA", "secret-xyz", "datasets", max_retries=3, backoff_base=0.05
    )
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailableError) as exc:
        store.branch_head("main")
    elapsed = time.monotonic() - t0
    assert exc.value.endpoint == endpoint
    assert endpoint in str(exc.value) and "after 4 attempts" in str(exc.value)
    assert "secret-xyz" not in str(exc.value)
    assert elapsed >= 0.05 * (1 + 2 + 4) * 0.5  # it backed off between attempts


def test_lakefs_transient_errors_are_retried(lakefs_server: LakeFSTestServer) -> None:
    store = lakefs_store(lakefs_server)
    store.create_repository()
    lakefs_server.fail_next(2, status=503)
    assert store.list_branches() == ["main"]
    lakefs_server.fail_next(1, status=429)
    store.put_object("main", "a.txt", b"a")
    lakefs_server.fail_next(1, status=503)  # a commit is retried when the server did not act
    c = store.commit("main", "after a 503")
    assert store.branch_head("main") == c.id
    lakefs_server.fail_next(10, status=500)
    with pytest.raises(BackendUnavailableError, match="HTTP 500"):
        store.list_branches()


def test_lakefs_commit_is_not_retried_after_an_ambiguous_500(
    lakefs_server: LakeFSTestServer,
) -> None:
    store = lakefs_store(lakefs_server)
    store.create_repository()
    store.put_object("main", "a.txt", b"a")
    before = len(lakefs_server.requests)
    lakefs_server.fail_next(1, status=500)
    with pytest.raises(VersioningError, match="HTTP 500"):
        store.commit("main", "maybe committed")
    commit_calls = [r for r in lakefs_server.requests[before:] if r[1].endswith("/commits")]
    assert len(commit_calls) == 1


def test_lakefs_from_env(lakefs_server: LakeFSTestServer) -> None:
    env = {
        "LAKEFS_ENDPOINT": lakefs_server.endpoint,
        "LAKEFS_ACCESS_KEY_ID": lakefs_server.access_key_id,
        "LAKEFS_SECRET_ACCESS_KEY": lakefs_server.secret_access_key,
        "MDP_LAKEFS_REPOSITORY": "from-env",
        "MDP_LAKEFS_STORAGE_NAMESPACE": "local://from-env",
    }
    store = LakeFSVersionStore.from_env(env)
    store.create_repository()
    assert store.repository == "from-env" and store.list_branches() == ["main"]
    with pytest.raises(VersioningError, match="LAKEFS_SECRET_ACCESS_KEY"):
        LakeFSVersionStore.from_env({"LAKEFS_ENDPOINT": "http://x", "LAKEFS_ACCESS_KEY_ID": "k"})


def test_lakefs_creating_a_repository_needs_a_storage_namespace(
    lakefs_server: LakeFSTestServer,
) -> None:
    store = lakefs_store(lakefs_server, storage_namespace=None)
    assert not store.repository_exists()
    with pytest.raises(VersioningError, match="MDP_LAKEFS_STORAGE_NAMESPACE"):
        store.create_repository()


def test_lakefs_endpoint_credentials_in_the_url_are_never_shown() -> None:
    store = LakeFSVersionStore("http://user:pw-in-url@127.0.0.1:1", "AKIA", "s", "datasets")
    assert "pw-in-url" not in repr(store) and "pw-in-url" not in store.describe()
