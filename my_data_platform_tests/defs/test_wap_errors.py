"""Write-audit-publish of datasets/popularity against a lakeFS that refuses to publish: a
read-only repository, a failing hook, a commit conflict. A protected main is no refusal: lakeFS
protection blocks direct writes and commits, never merges, and publishing only merges. A
refused run fails with lakeFS's reason, main is untouched and the run branch is kept with the
audited data; throttling is retried unseen."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from my_data_platform.core import datasets as D
from my_data_platform.core.versioning import LakeFSVersionStore, ProtectedBranchError
from my_data_platform.defs.datasets.assets import popularity_dataset
from my_data_platform.defs.datasets.lineage import KEY
from my_data_platform.defs.datasets.resources import LakeFSVersioningResource
from my_data_platform.synth import WorldConfig
from my_data_platform_tests.conftest import pipeline_world
from my_data_platform_tests.core.versioning.faults import (
    READ_ONLY_REPOSITORY,
    SLOW_DOWN,
    TOO_MANY_TRIES,
    FaultyLakeFS,
    hook_failure,
)

pytestmark = pytest.mark.slow  # a generated world through features, then the dataset over HTTP

# the smallest world the dataset audits pass on (as in test_training_asset)
CONFIG = WorldConfig(days=3, users=40, photos=240, events_per_day=3_000, seed=11)
# everything the dataset reads, not the dataset itself: it is published to lakeFS below
SELECT = '+key:"datasets/popularity" and not key:"datasets/popularity"'
FILES = {D.CARD, D.EXAMPLES, D.IMAGES, D.LABELS}
RUN_COMMIT = r"/branches/run-[^/]+/commits$"
HOOK_OUTPUT = "label column has nulls in 3 rows\n(rule: datasets/no-null-labels)"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    with pipeline_world(tmp_path_factory, "wap-errors", CONFIG, SELECT) as w:
        assert all(o.success for o in w["outcomes"]), [o.failed_steps for o in w["outcomes"]]
        yield w


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FaultyLakeFS]:
    with FaultyLakeFS(tmp_path / "lakefs") as s:
        yield s


def _materialize(world: dict, server: FaultyLakeFS) -> dg.ExecuteInProcessResult:
    resources = dict(world["defs"].resources)
    resources["versioning"] = LakeFSVersioningResource(
        endpoint=server.endpoint,
        access_key_id=server.access_key_id,
        secret_access_key=server.secret_access_key,
        storage_namespace="local://datasets",
    )
    photos = dg.AssetSpec(["warehouse", "photos"])  # the warehouse input, as a source
    return dg.materialize(
        [popularity_dataset, photos],
        resources=resources,
        instance=world["instance"],
        raise_on_error=False,
    )


def _lake(server: FaultyLakeFS) -> LakeFSVersionStore:
    return LakeFSVersionStore(
        server.endpoint,
        server.access_key_id,
        server.secret_access_key,
        "datasets",
        storage_namespace="local://datasets",
    )


def _failure(result: dg.ExecuteInProcessResult) -> tuple[str, dict]:
    (event,) = result.get_step_failure_events()
    data = event.step_failure_data.user_failure_data
    assert data is not None, event.step_failure_data.error
    return data.description or "", {k: v.value for k, v in data.metadata.items()}


SCENARIOS = {
    # a read-only repository: the one 403 real lakeFS gives a merge
    "read-only-repository": (
        lambda s: s.forbid_merge_into("main"),
        "merge",
        "ProtectedBranchError",
        ["the repository is read-only", READ_ONLY_REPOSITORY],
    ),
    "pre-commit-hook": (
        lambda s: s.fail("POST", RUN_COMMIT, 412, hook_failure("pre-commit", "h", HOOK_OUTPUT)),
        "commit",
        "HookFailedError",
        ["rejected by a hook", "pre-commit hook aborted", HOOK_OUTPUT],
    ),
    "pre-merge-hook": (
        lambda s: s.fail_hook("pre-merge", HOOK_OUTPUT, branch="main"),
        "merge",
        "HookFailedError",
        ["rejected by a hook", "pre-merge hook aborted", HOOK_OUTPUT],
    ),
    "commit-conflict": (
        lambda s: s.fail("POST", RUN_COMMIT, 409, "conflict found"),
        "commit",
        "CommitConflictError",
        ["conflicted with a concurrent change", "conflict found", "commit again"],
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_refused_publish_fails_the_run_and_keeps_the_branch(
    world: dict, server: FaultyLakeFS, scenario: str
) -> None:
    configure, step, error, phrases = SCENARIOS[scenario]
    lake = _lake(server)
    lake.create_repository()
    main_before = lake.branch_head("main")
    configure(server)

    result = _materialize(world, server)

    assert not result.success
    description, md = _failure(result)
    for phrase in phrases:
        assert phrase in description, (phrase, description)
    branch = md["branch"]
    assert re.fullmatch(r"run-[0-9a-f]{8}-\d{14}", branch)
    assert f"branch {branch!r} is kept" in description and "main is untouched" in description
    assert md["published"] is False and md["failed_step"] == step and md["error"] == error
    if error == "HookFailedError":
        assert HOOK_OUTPUT in md["hook_message"]  # the hook's words, verbatim
    # main is untouched; the branch is kept with the audited data on it
    assert lake.branch_head("main") == main_before and lake.list_objects("main") == []
    assert branch in lake.list_branches()
    if step == "commit":  # staged, waiting for a commit
        assert {c.path for c in lake.uncommitted(branch)} == FILES
        assert lake.branch_head(branch) == main_before
    else:  # committed on the branch, waiting for the merge
        assert lake.uncommitted(branch) == []
        assert lake.get_commit(branch).metadata["dagster_run_id"] == result.run_id
    assert {o.path for o in lake.list_objects(branch)} == FILES
    assert D.read_examples(lake.get_object(branch, D.EXAMPLES)).height > 0
    # the outcome is on the asset, as after a failed audit
    obs = world["instance"].fetch_observations(KEY, limit=1).records[0].asset_observation
    assert obs.metadata["published"].value is False
    assert obs.metadata["branch"].value == branch
    assert obs.metadata["failed_step"].value == step


def test_a_protected_main_still_publishes_through_the_run_branch(
    world: dict, server: FaultyLakeFS
) -> None:
    lake = _lake(server)
    lake.create_repository()
    server.protect_branch("datasets", "main")  # lakeFS's own rules API, as an admin would
    with pytest.raises(ProtectedBranchError):
        lake.put_object("main", "direct.txt", b"x")  # the rule holds for direct writes

    result = _materialize(world, server)

    assert result.success
    md = result.asset_materializations_for_node("datasets__popularity")[0].metadata
    assert md["published"].value is True
    assert lake.branch_head("main") == md["dataset_commit"].value
    assert {o.path for o in lake.list_objects("main")} == FILES
    assert md["branch"].value not in lake.list_branches()


def test_throttling_while_publishing_is_retried_unseen(world: dict, server: FaultyLakeFS) -> None:
    lake = _lake(server)
    lake.create_repository()
    server.fail("POST", RUN_COMMIT, 429, TOO_MANY_TRIES, times=2)
    server.fail("POST", r"/merge/main$", 503, SLOW_DOWN, times=1, headers={"Retry-After": "0"})

    result = _materialize(world, server)

    assert result.success
    md = result.asset_materializations_for_node("datasets__popularity")[0].metadata
    assert md["published"].value is True
    assert lake.branch_head("main") == md["dataset_commit"].value
    assert {o.path for o in lake.list_objects("main")} == FILES
    assert md["branch"].value not in lake.list_branches()  # published: cleaned up
    assert md["branch_deleted"].value is True
    assert server.calls("POST", RUN_COMMIT) == 3 and server.calls("POST", r"/merge/main$") == 2


def test_a_refused_branch_delete_does_not_fail_a_published_run(
    world: dict, server: FaultyLakeFS
) -> None:
    lake = _lake(server)
    lake.create_repository()
    server.fail(
        "DELETE",
        r"/branches/run-[^/]+$",
        412,
        hook_failure("pre-delete-branch", "keep_run_branches", "run branches are kept 7 days"),
    )

    result = _materialize(world, server)

    assert result.success  # main holds the dataset: a leftover branch is no reason to fail
    md = result.asset_materializations_for_node("datasets__popularity")[0].metadata
    assert md["published"].value is True and md["branch_deleted"].value is False
    assert lake.branch_head("main") == md["dataset_commit"].value
    assert md["branch"].value in lake.list_branches()
