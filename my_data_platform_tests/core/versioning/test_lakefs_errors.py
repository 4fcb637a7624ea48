"""lakeFS errors a user can act on, over real HTTP through the official SDK: a protected branch
or read-only repository (403), a failed hook (412), a lost commit race (409), throttling and
unavailability (429, 502, 503, 504) retried with backoff and ``Retry-After``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from my_data_platform.core.versioning import (
    AuthenticationError,
    BackendUnavailableError,
    CommitConflictError,
    HookFailedError,
    LakeFSVersionStore,
    MergeConflictError,
    PermissionDeniedError,
    ProtectedBranchError,
    RefExistsError,
    VersioningError,
)
from my_data_platform.core.versioning.lakefs_connection import retry_after
from my_data_platform_tests.core.versioning.conftest import lakefs_store
from my_data_platform_tests.core.versioning.faults import (
    COMMIT_TO_PROTECTED,
    INSUFFICIENT_PERMISSIONS,
    READ_ONLY_REPOSITORY,
    SLOW_DOWN,
    TOO_MANY_TRIES,
    WRITE_TO_PROTECTED,
    FaultyLakeFS,
)

COMMITS = r"/branches/[^/]+/commits$"
MERGES = r"/merge/main$"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FaultyLakeFS]:
    with FaultyLakeFS(tmp_path / "lakefs") as s:
        yield s


@pytest.fixture
def store(server: FaultyLakeFS) -> LakeFSVersionStore:
    """A repository whose main holds one commit, and a store that records its waits."""
    s = lakefs_store(server)
    s.create_repository()
    s.put_object("main", "base.txt", b"base")
    s.commit("main", "base")
    s.waits = []  # type: ignore[attr-defined]
    s._sleep = s.waits.append  # type: ignore[attr-defined,method-assign]
    return s


def _staged_run_branch(store: LakeFSVersionStore, name: str = "run-1") -> None:
    store.create_branch(name, "main")
    store.put_object(name, "data.txt", b"new data")


# ------------------------------------------------------------------ 403: protection, policies
def test_writes_and_commits_to_a_protected_branch_say_so(
    server: FaultyLakeFS, store: LakeFSVersionStore
) -> None:
    head = store.branch_head("main")
    server.protect_branch("datasets", "main")  # the real rules API
    with pytest.raises(ProtectedBranchError) as exc:
        store.put_object("main", "x.txt", b"x")
    err = exc.value
    assert err.branch == "main" and err.reason == WRITE_TO_PROTECTED and not err.read_only
    msg = str(err)
    assert "branch 'main' is protected" in msg and WRITE_TO_PROTECTED in msg
    assert "upload 'x.txt' to branch 'main'" in msg  # the operation
    assert "another branch and merge it into 'main'" in msg  # what to do
    assert "branch protection rules" in msg
    assert not isinstance(err, AuthenticationError)  # not a credentials problem
    # the server's message survives a delete too (the SDK's Object.delete drops it)
    with pytest.raises(ProtectedBranchError, match="cannot write to protected branch"):
        store.delete_object("main", "base.txt")
    with pytest.raises(ProtectedBranchError) as exc:
        store.commit("main", "direct commit", allow_empty=True)
    assert exc.value.reason == COMMIT_TO_PROTECTED and "commit on branch 'main'" in str(exc.value)
    assert server.calls("POST", COMMITS) == 2  # the base commit, and one refused: no retries
    # what the message recommends works: lakeFS protection allows merging into the branch
    _staged_run_branch(store)
    store.commit("run-1", "on a branch")
    merged = store.merge("run-1", "main")
    assert store.branch_head("main") == merged != head
    assert store.get_object("main", "data.txt") == b"new data"


def test_a_refused_merge_names_the_destination_and_keeps_both_sides(
    server: FaultyLakeFS, store: LakeFSVersionStore
) -> None:
    head = store.branch_head("main")
    _staged_run_branch(store)
    committed = store.commit("run-1", "ready").id
    server.forbid_merge_into("main")  # a read-only repository: lakeFS's only 403 on a merge
    with pytest.raises(ProtectedBranchError) as exc:
        store.merge("run-1", "main")
    err = exc.value
    assert err.branch == "main" and err.operation == "merge 'run-1' into 'main'"
    assert err.read_only and READ_ONLY_REPOSITORY in str(err)
    assert server.calls("POST", MERGES) == 1
    assert store.branch_head("main") == head and store.branch_head("run-1") == committed


def test_a_read_only_repository_is_not_called_a_protected_branch(
    server: FaultyLakeFS, store: LakeFSVersionStore
) -> None:
    server.fail("POST", COMMITS, 403, READ_ONLY_REPOSITORY)
    store.put_object("main", "x.txt", b"x")
    with pytest.raises(ProtectedBranchError) as exc:
        store.commit("main", "x")
    assert exc.value.read_only
    msg = str(exc.value)
    assert "the repository is read-only" in msg and "is protected" not in msg
    assert "lakeFS repository 'datasets'" in msg and "writable" in msg


def test_a_403_without_protection_is_a_permission_error_naming_the_operation(
    server: FaultyLakeFS, store: LakeFSVersionStore
) -> None:
    server.fail("POST", COMMITS, 403, INSUFFICIENT_PERMISSIONS)
    store.put_object("main", "x.txt", b"x")
    with pytest.raises(PermissionDeniedError) as exc:
        store.commit("main", "x")
    err = exc.value
    assert isinstance(err, AuthenticationError) and not isinstance(err, ProtectedBranchError)
    assert err.endpoint == server.endpoint
    msg = str(err)
    assert "commit on branch 'main'" in msg and "HTTP 403" in msg
    assert INSUFFICIENT_PERMISSIONS in msg and "LAKEFS_ACCESS_KEY_ID" in msg
    assert server.secret_access_key not in msg and server.secret_access_key not in repr(err)


# ------------------------------------------------------------------ 412: hooks
def test_a_failed_pre_commit_hook_is_reported_verbatim_and_nothing_is_committed(
    server: FaultyLakeFS, store: LakeFSVersionStore
) -> None:
    _staged_run_branch(store)
    head = store.branch_head("run-1")
    server.fail_hook("pre-commit", "column 'label' has 3 nulls\nsee the docs", branch="run-1")
    with pytest.raises(HookFailedError) as exc:
        store.commit("run-1", "rejected")
    err = exc.value
    assert err.hook_message.startswith("pre-commit hook aborted, run id ")
    assert "action failed: column 'label' has 3 nulls\nsee the docs" in err.hook_message
    assert err.branch == "run-1" and err.operation == "commit on branch 'run-1'"
    assert "column 'label' has 3 nulls\nsee the docs" in str(err)
    assert "pre-commit hook aborted" in str(err) and "rejected by a hook" in str(err)
    assert server.calls("POST", COMMITS) == 2  # base + one: a hook's verdict is not retried
    assert store.branch_head("run-1") == head
    assert [c.path for c in store.uncommitted("run-1")] == ["data.txt"]  # still staged


def test_a_failed_pre_merge_hook_leaves_main_alone(
    server: FaultyLakeFS, store: LakeFSVersionStore
) -> None:
    head = store.branch_head("main")
    _staged_run_branch(store)
    store.commit("run-1", "ready")
    server.fail_hook("pre-merge", "datasets must be merged on weekdays", branch="main")
    with pytest.raises(HookFailedError) as exc:
        store.merge("run-1", "main")
    assert "action failed: datasets must be merged on weekdays" in exc.value.hook_message
    assert exc.value.branch == "main"
    assert store.branch_head("main") == head


def test_a_plain_precondition_failure_is_not_blamed_on_a_hook(
    server: FaultyLakeFS, store: LakeFSVersionStore
) -> None:
    server.fail("POST", COMMITS, 412, "Precondition failed")
    store.put_object("main", "x.txt", b"x")
    with pytest.raises(VersioningError, match="precondition failed") as exc:
        store.commit("main", "x")
    assert not isinstance(exc.value, HookFailedError)


# ------------------------------------------------------------------ 409: conflicts
def test_409_on_commit_is_a_commit_conflict_and_keeps_the_staged_changes(
    server: FaultyLakeFS, store: LakeFSVersionStore
) -> None:
    _staged_run_branch(store)
    server.fail("POST", COMMITS, 409, "conflict found", times=1)
    with pytest.raises(CommitConflictError) as exc:
        store.commit("run-1", "lost the race")
    err = exc.value
    assert not isinstance(err, RefExistsError) and "already exists" not in str(err)
    assert err.branch == "run-1" and err.reason == "conflict found"
    assert "commit again" in str(err)
    assert [c.path for c in store.uncommitted("run-1")] == ["data.txt"]
    # committing again (what the message says) works once the race is over
    assert store.commit("run-1", "again").message == "again"


def test_409_on_create_branch_and_tag_still_mean_exists(store: LakeFSVersionStore) -> None:
    store.create_branch("run-1", "main")
    with pytest.raises(RefExistsError, match="branch 'run-1' already exists"):
        store.create_branch("run-1", "main")
    store.create_tag("v1", "main")
    with pytest.raises(RefExistsError, match="tag 'v1' already exists"):
        store.create_tag("v1", "main")


def test_409_on_merge_is_a_merge_conflict_with_its_paths(store: LakeFSVersionStore) -> None:
    store.create_branch("run-1", "main")
    store.put_object("run-1", "base.txt", b"theirs")
    store.commit("run-1", "theirs")
    store.put_object("main", "base.txt", b"ours")
    store.commit("main", "ours")
    with pytest.raises(MergeConflictError) as exc:
        store.merge("run-1", "main")
    assert exc.value.paths == ["base.txt"]


# ------------------------------------------------------------------ retries
@pytest.mark.parametrize(
    ("status", "message"),
    [(429, TOO_MANY_TRIES), (503, SLOW_DOWN), (502, "Bad Gateway"), (504, "Gateway Timeout")],
)
def test_transient_answers_are_retried_until_success(
    server: FaultyLakeFS, store: LakeFSVersionStore, status: int, message: str
) -> None:
    server.fail("GET", r"/branches$", status, message, times=3)
    assert store.list_branches() == ["main"]
    assert server.calls("GET", r"/branches$") == 4
    assert len(store.waits) == 3  # type: ignore[attr-defined]
    # exponential backoff with jitter, within backoff_max
    assert all(0 < w <= store.backoff_max for w in store.waits)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("status", "message"), [(429, TOO_MANY_TRIES), (503, SLOW_DOWN)])
def test_a_commit_is_retried_when_lakefs_did_not_act_on_it(
    server: FaultyLakeFS, store: LakeFSVersionStore, status: int, message: str
) -> None:
    _staged_run_branch(store)
    before = store.branch_head("run-1")
    server.fail("POST", COMMITS, status, message, times=2)
    c = store.commit("run-1", "after throttling")
    assert server.calls("POST", COMMITS) == 1 + 3  # base, then two refusals and the commit
    assert store.log("run-1", limit=2)[1].id == before  # exactly one new commit
    assert store.branch_head("run-1") == c.id


def test_a_commit_is_retried_while_lakefs_says_the_branch_is_locked(
    server: FaultyLakeFS, store: LakeFSVersionStore
) -> None:
    _staged_run_branch(store)
    server.fail("POST", COMMITS, 500, "branch is currently locked, try again later", times=1)
    store.commit("run-1", "after the lock")
    assert server.calls("POST", COMMITS) == 1 + 2


@pytest.mark.parametrize("status", [500, 502, 504])
def test_an_ambiguous_answer_to_a_commit_is_not_retried(
    server: FaultyLakeFS, store: LakeFSVersionStore, status: int
) -> None:
    _staged_run_branch(store)
    server.fail("POST", COMMITS, status, "upstream went away", times=1)
    with pytest.raises(VersioningError) as exc:
        store.commit("run-1", "maybe")
    msg = str(exc.value)
    assert f"HTTP {status}" in msg and "may or may not have been applied" in msg
    assert "check branch 'run-1'" in msg
    assert server.calls("POST", COMMITS) == 1 + 1


@pytest.mark.parametrize("status", [429, 503])
def test_retries_are_bounded_and_the_error_names_endpoint_and_attempts(
    server: FaultyLakeFS, tmp_path: Path, status: int
) -> None:
    store = lakefs_store(server, max_retries=3)
    store.create_repository()
    store.create_branch("run-1", "main")
    store.put_object("run-1", "x.txt", b"x")
    waits: list[float] = []
    store._sleep = waits.append  # type: ignore[method-assign]
    server.fail("POST", COMMITS, status, "still busy")
    with pytest.raises(BackendUnavailableError) as exc:
        store.commit("run-1", "never")
    err = exc.value
    assert err.attempts == 4 and err.endpoint == server.endpoint
    msg = str(err)
    assert server.endpoint in msg and "commit on branch 'run-1'" in msg
    assert "after 4 attempts" in msg and f"HTTP {status}" in msg and "still busy" in msg
    assert server.calls("POST", COMMITS) == 4 and len(waits) == 3
    assert store.uncommitted("run-1")  # nothing was committed


def test_retry_after_is_honoured_and_capped(
    server: FaultyLakeFS, store: LakeFSVersionStore
) -> None:
    store.retry_after_max = 2.5
    server.fail("GET", r"/branches$", 429, TOO_MANY_TRIES, times=1, headers={"Retry-After": "2"})
    server.fail("GET", r"/branches$", 503, SLOW_DOWN, times=1, headers={"retry-after": "3600"})
    assert store.list_branches() == ["main"]
    assert store.waits == [2.0, 2.5]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"RETRY-AFTER": " 1.5 "}, 1.5),
        ({"Retry-After": "Sun, 06 Dec 2026 10:00:30 GMT"}, 30.0),
        # hostile or broken values never make a negative, infinite-NaN or unparsed wait
        ({"Retry-After": "-5"}, 0.0),
        ({"Retry-After": "Sat, 05 Dec 2026 10:00:00 GMT"}, 0.0),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": ""}, None),
        ({}, None),
        (None, None),
    ],
)
def test_retry_after_header_values(header: dict[str, str] | None, expected: float | None) -> None:
    now = datetime(2026, 12, 6, 10, 0, 0, tzinfo=UTC)
    assert retry_after(header, now=now) == expected


@pytest.mark.parametrize("value", ["inf", "1e309", "99999999999"])
def test_a_huge_retry_after_waits_at_most_the_cap(
    server: FaultyLakeFS, store: LakeFSVersionStore, value: str
) -> None:
    store.retry_after_max = 1.25
    server.fail("GET", r"/branches$", 429, TOO_MANY_TRIES, times=1, headers={"Retry-After": value})
    assert store.list_branches() == ["main"]
    assert store.waits == [1.25]  # type: ignore[attr-defined]
