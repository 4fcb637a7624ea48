"""kill -9 at each datasets/popularity crash point: main is unchanged or holds the whole new
version, the store stays consistent, and a rerun leaves exactly one new publish on main."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest

from my_data_platform.core import datasets as D
from my_data_platform.defs.datasets.lineage import KEY
from my_data_platform.defs.datasets.resources import version_store_from_settings
from my_data_platform.defs.lake.resources import object_store_from_settings
from my_data_platform.defs.metadata import latest_metadata
from my_data_platform.runner import (
    execute_plan,
    load_definitions,
    plan_refresh,
    write_instance_config,
)
from my_data_platform.settings import get_settings, reset_settings
from my_data_platform.synth import WorldConfig, generate_world
from my_data_platform_tests.conftest import _ENV_VARS
from my_data_platform_tests.defs.crash.steps import crash, leftover_temp_files, run_step

pytestmark = pytest.mark.slow  # a generated world through features, and killed child runs

# the smallest world the dataset audits pass on (as in test_training_asset)
WORLD = WorldConfig(days=3, users=40, photos=240, events_per_day=3_000, seed=11)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    data = tmp_path_factory.mktemp("crash-dataset") / "data"
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


def _assert_whole(vs, ref: str) -> None:
    """A dataset version is readable in full."""
    assert D.read_examples(vs.get_object(ref, D.EXAMPLES)).height > 0
    assert D.read_examples(vs.get_object(ref, D.IMAGES)).height > 0
    assert vs.get_object(ref, D.CARD)


@pytest.mark.parametrize("stage", ["start", "middle", "end"])
def test_dataset_commit_crash_points(world, stage: str) -> None:
    data, instance, defs = world
    vs = version_store_from_settings()
    point = f"dataset_commit.{stage}"
    for rep in (1, 2, 3):
        where = f"{point} rep {rep}"
        # a newer upstream materialization: the next dataset version differs (its card)
        assert run_step(defs, instance, "photos", []).success, where
        before = vs.branch_head("main")
        crash("dataset", [], point)
        assert vs.check_consistency() == [], where  # type: ignore[attr-defined]
        head = vs.branch_head("main")
        if stage == "end":  # merged: main holds the whole new version
            assert vs.get_commit(head).parents == (before,), where
            _assert_whole(vs, head)
        else:
            assert head == before, where
        assert leftover_temp_files(data / "versions") == [], where
        # the rerun: exactly one new publish on main, the one the asset reports
        assert run_step(defs, instance, "dataset", []).success, where
        published = vs.branch_head("main")
        assert vs.get_commit(published).parents == (before,), where
        _assert_whole(vs, published)
        assert latest_metadata(instance, KEY)["dataset_commit"] == published, where
        # tagged, even when the crash fell between the merge and the tag
        tags = [n for n, c in vs.list_tags().items() if c == published]
        assert [n for n in tags if n.startswith("popularity-")], where
        assert latest_metadata(instance, KEY)["tag"] in tags, where
    # every crash left its run branch behind (middle and end: committed; start: staged)
    assert len([b for b in vs.list_branches() if b.startswith("run-")]) >= 3
