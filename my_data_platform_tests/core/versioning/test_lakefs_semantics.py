"""The lakeFS test server follows lakeFS's rules (as lakeFS v1.84.0's source has them), not
just its shapes: each test names the rule; ``lakefs_server.py``'s docstring says where in the
lakeFS source it comes from. The spec checks stay on: every exchange here is validated too."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import lakefs
import pytest
import urllib3
from lakefs_sdk.exceptions import ApiException
from lakefs_sdk.models import (
    BranchCreation,
    BranchProtectionRule,
    CommitCreation,
    Merge,
    TagCreation,
)

from my_data_platform.core.versioning import (
    LakeFSVersionStore,
    MergeConflictError,
    RefExistsError,
    VersioningError,
)
from my_data_platform_tests.core.versioning.conftest import lakefs_store
from my_data_platform_tests.core.versioning.lakefs_http import page, page_amount
from my_data_platform_tests.core.versioning.lakefs_server import (
    COMMIT_TO_PROTECTED,
    INVALID_ENDPOINT,
    INVALID_REPOSITORY,
    MERGE_STRATEGY_KEY,
    TOO_MANY_TRIES,
    WRITE_TO_PROTECTED,
    LakeFSTestServer,
)

REPO = "datasets"


@pytest.fixture
def store(lakefs_server: LakeFSTestServer) -> LakeFSVersionStore:
    s = lakefs_store(lakefs_server)
    s.create_repository()
    return s


@pytest.fixture
def sdk(lakefs_server: LakeFSTestServer) -> Any:
    """The generated SDK itself, to see statuses and bodies the store translates away."""
    client = lakefs.Client(
        host=lakefs_server.endpoint,
        username=lakefs_server.access_key_id,
        password=lakefs_server.secret_access_key,
    )
    return client.sdk_client


class Raw:
    """Plain HTTP with the server's credentials, for requests the SDK would never send."""

    def __init__(self, server: LakeFSTestServer) -> None:
        self.base = f"{server.endpoint}/api/v1"
        self.http = urllib3.PoolManager(retries=False)
        self.auth = urllib3.make_headers(
            basic_auth=f"{server.access_key_id}:{server.secret_access_key}"
        )

    def __call__(self, method: str, path: str, **kw: Any) -> urllib3.BaseHTTPResponse:
        headers = {**self.auth, **kw.pop("headers", {})}
        return self.http.request(method, self.base + path, headers=headers, **kw)


@pytest.fixture
def raw(lakefs_server: LakeFSTestServer) -> Raw:
    return Raw(lakefs_server)


def api_error(e: pytest.ExceptionInfo[ApiException]) -> tuple[int, str]:
    return e.value.status, json.loads(e.value.body)["message"]


def commit_files(store: LakeFSVersionStore, branch: str, files: dict[str, bytes]) -> str:
    for path, data in files.items():
        store.put_object(branch, path, data)
    return store.commit(branch, f"write {sorted(files)}").id


# ------------------------------------------------------------------ objects
def test_delete_of_a_missing_object_is_204(store: LakeFSVersionStore, raw: Raw, sdk: Any) -> None:
    """``Graveler.deleteUnsafe``: a key found nowhere is "nothing to do", not an error."""
    resp = raw("DELETE", f"/repositories/{REPO}/branches/main/objects", fields={"path": "nope"})
    assert resp.status == 204 and resp.data == b""
    sdk.objects_api.delete_object(REPO, "main", "also/nope")  # no exception
    assert store.uncommitted("main") == []
    resp = raw("DELETE", f"/repositories/{REPO}/branches/no-branch/objects", fields={"path": "x"})
    assert resp.status == 404  # the branch, though, must exist


def test_range_not_satisfiable_has_an_error_body(store: LakeFSVersionStore, raw: Raw) -> None:
    store.put_object("main", "abc.txt", b"abc")
    url = f"/repositories/{REPO}/refs/main/objects"
    resp = raw("GET", url, fields={"path": "abc.txt"}, headers={"Range": "bytes=3-"})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == "bytes */3"
    assert resp.json() == {"message": "Requested Range Not Satisfiable"}
    ok = raw("GET", url, fields={"path": "abc.txt"}, headers={"Range": "bytes=1-"})
    assert (ok.status, ok.data, ok.headers["Content-Range"]) == (206, b"bc", "bytes 1-2/3")


def test_diff_entries_fill_size_bytes(store: LakeFSVersionStore, sdk: Any) -> None:
    c1 = commit_files(store, "main", {"keep": b"k", "grow": b"12", "drop": b"12345"})
    store.put_object("main", "grow", b"1234567")
    store.delete_object("main", "drop")
    store.put_object("main", "new", b"123")
    staged = sdk.branches_api.diff_branch(REPO, "main").results
    assert {(d.path, d.type, d.size_bytes) for d in staged} == {
        ("drop", "removed", 5),  # a removed entry: the size it had
        ("grow", "changed", 7),
        ("new", "added", 3),
    }
    c2 = store.commit("main", "c2").id
    committed = sdk.refs_api.diff_refs(REPO, c1, c2, type="two_dot").results
    assert {(d.path, d.type, d.size_bytes) for d in committed} == {
        ("drop", "removed", 5),
        ("grow", "changed", 7),
        ("new", "added", 3),
    }


# ------------------------------------------------------------------ pagination
def test_amount_zero_or_negative_means_100_and_above_1000_is_refused(
    store: LakeFSVersionStore, raw: Raw, lakefs_server: LakeFSTestServer
) -> None:
    store.put_objects("main", {f"o/{i:03}": b"" for i in range(101)})
    url = f"/repositories/{REPO}/refs/main/objects/ls"
    for amount in ("0", "-1"):
        body = raw("GET", url, fields={"amount": amount}).json()
        assert body["pagination"]["results"] == 100 and body["pagination"]["has_more"] is True
        assert body["pagination"]["next_offset"] == "o/099"
    # lakeFS's request validator refuses what the spec's [-1, 1000] excludes
    assert raw("GET", url, fields={"amount": "1001"}).status == 400
    assert raw("GET", url, fields={"amount": "-2"}).status == 400
    assert [v.kind for v in lakefs_server.take_violations()] == ["request", "request"]
    # and the controller's own rule, for what gets through (paginationAmount)
    assert [page_amount({"amount": a}) for a in ("0", "-1", "7", "1000", "5000", "")] == [
        100,
        100,
        7,
        1000,
        1000,
        100,
    ]
    last = page(list(range(3)), str, {"amount": "0"})
    assert last["pagination"] == {
        "has_more": False,
        "next_offset": "",
        "results": 3,
        "max_per_page": 1000,
    }


# ------------------------------------------------------------------ routing & names
def test_unknown_route_is_lakefs_invalid_endpoint(
    store: LakeFSVersionStore, raw: Raw, lakefs_server: LakeFSTestServer
) -> None:
    """chi's catch-all under /api/v1 is ``InvalidAPIEndpointHandler``: 404, not 400."""
    resp = raw("GET", "/no/such/route")
    assert (resp.status, resp.json()) == (404, {"message": INVALID_ENDPOINT})
    resp = raw("PATCH", f"/repositories/{REPO}")  # a spec path, not a spec method
    assert resp.status == 404
    assert len(lakefs_server.take_violations()) == 2
    # a spec operation the test server does not implement says so
    revert = {"ref": "main", "parent_number": 1}
    resp = raw("POST", f"/repositories/{REPO}/branches/main/revert", json=revert)
    assert resp.status == 501 and "revert" in resp.json()["message"].lower()


@pytest.mark.parametrize("bad", ["ab", "Datasets", "data_sets", "-data", "x" * 64])
def test_repository_names_follow_lakefs_rule(
    raw: Raw, lakefs_server: LakeFSTestServer, bad: str
) -> None:
    resp = raw("POST", "/repositories", json={"name": bad, "storage_namespace": "local://x"})
    assert resp.status == 400
    assert len(lakefs_server.take_violations()) == 1  # the spec's pattern refused it
    resp = raw("GET", f"/repositories/{bad}")
    assert (resp.status, resp.json()) == (400, {"message": INVALID_REPOSITORY})
    good = raw("POST", "/repositories", json={"name": "ok-1", "storage_namespace": "local://x"})
    assert good.status in (201, 409)


def test_branch_and_tag_names_never_collide(store: LakeFSVersionStore, sdk: Any) -> None:
    """``Catalog.CreateBranch`` / ``CreateTag`` look the name up in the other namespace (and
    among commit ids) and answer 409 ``conflict found``."""
    head = commit_files(store, "main", {"a": b"a"})
    store.create_tag("v1", "main")
    with pytest.raises(ApiException) as e:
        sdk.branches_api.create_branch(REPO, BranchCreation(name="v1", source="main"))
    assert api_error(e) == (409, "tag ID v1: conflict found")
    store.create_branch("dev", "main")
    with pytest.raises(ApiException) as e:
        sdk.tags_api.create_tag(REPO, TagCreation(id="dev", ref="main"))
    assert api_error(e) == (409, "branch name dev: conflict found")
    with pytest.raises(ApiException) as e:
        sdk.branches_api.create_branch(REPO, BranchCreation(name=head, source="main"))
    assert api_error(e) == (409, f"commit ID {head}: conflict found")
    with pytest.raises(RefExistsError):  # the store sees the same rule
        store.create_branch("v1", "main")
    # lakeFS accepts branch ids the spec allows but our own names do not (\w[-\w]*)
    with pytest.raises(ApiException) as e:
        sdk.branches_api.create_branch(REPO, BranchCreation(name="-x", source="main"))
    assert e.value.status == 400
    # each kind resolves in its own namespace, and through getCommit
    assert sdk.tags_api.get_tag(REPO, "v1").commit_id == head
    assert sdk.commits_api.get_commit(REPO, "v1").id == head
    assert sdk.commits_api.get_commit(REPO, "dev").id == head


# ------------------------------------------------------------------ merges
def test_merge_never_fast_forwards(store: LakeFSVersionStore, sdk: Any) -> None:
    main_head = commit_files(store, "main", {"a": b"a"})
    store.create_branch("feature", "main")
    feature_head = commit_files(store, "feature", {"b": b"b"})

    merged = store.merge("feature", "main", message="ship it", metadata={"by": "ci"})

    assert merged not in (main_head, feature_head)  # a new commit, not the source's
    commit = store.get_commit(merged)
    assert commit.parents == (main_head, feature_head)  # [destination head, source head]
    assert commit.message == "ship it"
    assert commit.metadata == {"by": "ci", MERGE_STRATEGY_KEY: "default"}
    assert store.diff("main", "feature") == []
    # nothing new on the source: lakeFS says "no changes" (400), the store keeps the head
    with pytest.raises(ApiException) as e:
        sdk.refs_api.merge_into_branch(REPO, "feature", "main")
    assert api_error(e) == (400, "no changes")
    assert store.merge("feature", "main") == merged


def test_merge_default_message_and_strategies(store: LakeFSVersionStore, sdk: Any) -> None:
    commit_files(store, "main", {"x": b"0"})
    store.create_branch("feature", "main")
    commit_files(store, "feature", {"x": b"theirs"})
    commit_files(store, "main", {"x": b"ours"})
    with pytest.raises(MergeConflictError):
        store.merge("feature", "main")
    with pytest.raises(ApiException) as e:  # lakeFS's 409 body is an (empty) MergeResult
        sdk.refs_api.merge_into_branch(REPO, "feature", "main")
    assert e.value.status == 409 and json.loads(e.value.body) == {"reference": ""}

    ref = sdk.refs_api.merge_into_branch(REPO, "feature", "main", Merge(strategy="source-wins"))
    commit = store.get_commit(ref.reference)
    assert commit.message == "Merge 'feature' into 'main'"
    assert commit.metadata == {MERGE_STRATEGY_KEY: "source-wins"}
    assert store.get_object("main", "x") == b"theirs"

    commit_files(store, "feature", {"x": b"again", "y": b"y"})
    commit_files(store, "main", {"x": b"mine"})
    ref = sdk.refs_api.merge_into_branch(REPO, "feature", "main", Merge(strategy="dest-wins"))
    assert store.get_commit(ref.reference).metadata[MERGE_STRATEGY_KEY] == "dest-wins"
    assert (store.get_object("main", "x"), store.get_object("main", "y")) == (b"mine", b"y")


# ------------------------------------------------------------------ contention
def test_contention_can_target_only_merges_into_main(
    store: LakeFSVersionStore, lakefs_server: LakeFSTestServer
) -> None:
    store.create_branch("feature", "main")
    commit_files(store, "feature", {"f": b"f"})
    lakefs_server.fail_next(2, 429, "slow down", method="POST", path=r"/merge/main$")
    store.create_branch("other", "main")  # not a merge: untouched
    merged = store.merge("feature", "main")  # 429, 429, then the merge
    assert store.branch_head("main") == merged
    merges = [p for m, p in lakefs_server.requests if m == "POST" and "/merge/" in p]
    assert len(merges) == 3

    lakefs_server.fail_next(1, 503, match=lambda method, path: path.endswith("/merge/other"))
    assert store.merge("feature", "other")  # one 503, then done
    merges = [p for m, p in lakefs_server.requests if m == "POST" and "/merge/" in p]
    assert merges[-2:] == [merges[-1]] * 2


def test_a_commit_that_loses_the_race_gets_429(
    store: LakeFSVersionStore, lakefs_server: LakeFSTestServer, sdk: Any
) -> None:
    head = store.branch_head("main")
    store.put_object("main", "a", b"a")
    lakefs_server.race_next_commit("main")
    with pytest.raises(ApiException) as e:
        sdk.commits_api.commit(REPO, "main", CommitCreation(message="m"))
    assert api_error(e) == (429, TOO_MANY_TRIES)
    assert store.branch_head("main") == head and store.get_object("main", "a") == b"a"
    lakefs_server.race_next_commit("main")
    commit = store.commit("main", "retried")  # the store retries a 429: nothing was done
    assert commit.parents == (head,)
    commits = [p for m, p in lakefs_server.requests if m == "POST" and p.endswith("/commits")]
    assert len(commits) == 3


# ------------------------------------------------------------------ branch protection
def test_branch_protection_blocks_writes_and_commits_not_merges(
    store: LakeFSVersionStore, lakefs_server: LakeFSTestServer, sdk: Any
) -> None:
    rules = sdk.repositories_api.get_branch_protection_rules_with_http_info(REPO)
    assert rules.data == [] and rules.headers["ETag"] == ""
    store.create_branch("feature", "main")
    commit_files(store, "feature", {"f": b"f"})
    lakefs_server.protect_branch(REPO, "main")
    lakefs_server.protect_branch(REPO, "release-*")
    assert [r.pattern for r in sdk.repositories_api.get_branch_protection_rules(REPO)] == [
        "main",
        "release-*",
    ]

    with pytest.raises(ApiException) as e:
        sdk.objects_api.upload_object(REPO, "main", "x", content=b"x")
    assert api_error(e) == (403, WRITE_TO_PROTECTED)
    with pytest.raises(ApiException) as e:
        sdk.objects_api.delete_object(REPO, "main", "f")
    assert api_error(e) == (403, WRITE_TO_PROTECTED)
    with pytest.raises(ApiException) as e:
        sdk.commits_api.commit(REPO, "main", CommitCreation(message="m", allow_empty=True))
    assert api_error(e) == (403, COMMIT_TO_PROTECTED)
    with pytest.raises(VersioningError, match=COMMIT_TO_PROTECTED):
        store.commit("main", "m", allow_empty=True)

    merged = store.merge("feature", "main")  # the way to change a protected branch
    assert store.branch_head("main") == merged and store.get_object("main", "f") == b"f"
    store.create_branch("release-1", "main")
    with pytest.raises(ApiException) as e:
        sdk.objects_api.upload_object(REPO, "release-1", "x", content=b"x")
    assert e.value.status == 403
    store.put_object("feature", "g", b"g")  # an unprotected branch is not affected


def test_branch_protection_etag_guards_concurrent_edits(
    store: LakeFSVersionStore, sdk: Any, raw: Raw
) -> None:
    """``settings.Manager.Save``: If-Match "" creates only; a value must be the current ETag.
    (The SDK drops an empty ``if_match``, so "create only" goes over plain HTTP.)"""
    api = sdk.repositories_api
    rule = [BranchProtectionRule(pattern="main")]
    url = f"/repositories/{REPO}/settings/branch_protection"
    create_only = {"If-Match": "", "Content-Type": "application/json"}
    assert raw("PUT", url, body=b'[{"pattern": "main"}]', headers=create_only).status == 204
    again = raw("PUT", url, body=b'[{"pattern": "x"}]', headers=create_only)
    assert (again.status, again.json()) == (412, {"message": "Precondition failed"})
    etag = api.get_branch_protection_rules_with_http_info(REPO).headers["ETag"]
    assert etag
    api.set_branch_protection_rules(REPO, [], if_match=etag)
    with pytest.raises(ApiException) as e:  # the ETag changed with the rules
        api.set_branch_protection_rules(REPO, rule, if_match=etag)
    assert e.value.status == 412
    api.set_branch_protection_rules(REPO, rule)  # no If-Match: unconditional
    assert [r.pattern for r in api.get_branch_protection_rules(REPO)] == ["main"]


# ------------------------------------------------------------------ hooks
HOOK_MESSAGE = re.compile(
    r"^(update branch main: )?pre-(commit|merge) hook aborted, run id '[0-9a-z]+': "
    r"1 error occurred:\n\t\* hook run id '0000_0000' failed on action 'test_action' "
    r"hook 'test_hook': action failed: (.*)\n\n$"
)


def test_failing_pre_commit_hook_is_412(
    store: LakeFSVersionStore, lakefs_server: LakeFSTestServer, sdk: Any
) -> None:
    head = store.branch_head("main")
    store.put_object("main", "a", b"a")
    store.create_branch("dev", "main")
    lakefs_server.fail_hook("pre-commit", "row count is zero", branch="main")
    with pytest.raises(ApiException) as e:
        sdk.commits_api.commit(REPO, "main", CommitCreation(message="m"))
    status, message = api_error(e)
    m = HOOK_MESSAGE.match(message)
    assert status == 412 and m and m.group(2) == "commit" and m.group(3) == "row count is zero"
    with pytest.raises(VersioningError, match="pre-commit hook aborted"):
        store.commit("main", "m")
    assert store.branch_head("main") == head and store.get_object("main", "a") == b"a"
    store.put_object("dev", "d", b"d")
    store.commit("dev", "other branches commit")  # the hook is for main only
    lakefs_server.clear_hooks()
    assert store.commit("main", "m").parents == (head,)


def test_failing_pre_merge_hook_is_412_and_conflicts_come_first(
    store: LakeFSVersionStore, lakefs_server: LakeFSTestServer, sdk: Any
) -> None:
    commit_files(store, "main", {"x": b"0"})
    store.create_branch("feature", "main")
    commit_files(store, "feature", {"y": b"y"})
    head = store.branch_head("main")
    lakefs_server.fail_hook("pre-merge", "not on a Friday")
    with pytest.raises(ApiException) as e:
        sdk.refs_api.merge_into_branch(REPO, "feature", "main")
    status, message = api_error(e)
    m = HOOK_MESSAGE.match(message)
    assert status == 412 and m and m.group(1) and m.group(3) == "not on a Friday"
    assert store.branch_head("main") == head

    commit_files(store, "feature", {"x": b"theirs"})
    commit_files(store, "main", {"x": b"ours"})
    with pytest.raises(MergeConflictError):  # the merge is computed before the hook runs
        store.merge("feature", "main")
    with pytest.raises(ValueError, match="pre-commit"):
        lakefs_server.fail_hook("post-commit", "x")


def test_validation_stays_on_for_servers_outside_the_fixture(tmp_path: Path) -> None:
    with LakeFSTestServer(tmp_path / "s") as server:
        assert server.validate
