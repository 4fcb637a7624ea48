"""After ``revert`` + ``record_revert``, training/popularity_model trains on the rolled-back
commit by default (no dataset_commit in the run config)."""

import io
from collections.abc import Iterator

import dagster as dg
import polars as pl
import pytest

from my_data_platform.core import datasets as D
from my_data_platform.core import model_registry as R
from my_data_platform.core.versioning.revert import revert, tree
from my_data_platform.defs.datasets.lineage import KEY, dataset_commit, record_revert
from my_data_platform.defs.lake.resources import object_store_from_settings
from my_data_platform.synth import WorldConfig
from my_data_platform_tests.conftest import pipeline_world

pytestmark = pytest.mark.slow  # a generated world, a published dataset and model training

CONFIG = WorldConfig(days=3, users=40, photos=240, events_per_day=3_000, seed=11)
SELECT = '+key:"datasets/popularity"'


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    with pipeline_world(tmp_path_factory, "revert", CONFIG, SELECT) as w:
        yield w


def test_training_reads_the_reverted_commit(world: dict) -> None:
    from my_data_platform.defs.datasets.resources import version_store_from_settings

    assert all(o.success for o in world["outcomes"]), [o.failed_steps for o in world["outcomes"]]
    vs = version_store_from_settings()
    instance = world["instance"]
    good = world["mats"]["datasets/popularity"]["dataset_commit"]
    assert dataset_commit(instance, vs, None) == good
    # a bad version lands on main: half of the training examples lost
    examples = D.read_examples(vs.get_object(good, D.EXAMPLES))
    bad_rows = examples.filter((pl.col("split") != "train") | (pl.int_range(pl.len()) % 2 == 0))
    assert 0 < bad_rows.height < examples.height
    vs.create_branch("bad-publish", "main")
    buf = io.BytesIO()
    bad_rows.write_parquet(buf)
    vs.put_object("bad-publish", D.EXAMPLES, buf.getvalue())
    bad = vs.commit("bad-publish", "bad publish").id
    vs.merge("bad-publish", "main")
    vs.delete_branch("bad-publish")
    # ...and is recorded as published, as the dataset asset would: training would read it
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=KEY, metadata={"dataset_commit": bad})
    )
    assert dataset_commit(instance, vs, None) == bad

    head = revert(vs, good, reverted_by="tester", reason="half the examples lost")
    record_revert(instance, head.id, head.metadata)
    assert tree(vs, head.id) == tree(vs, good)
    assert dataset_commit(instance, vs, None) == head.id

    job = world["defs"].resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey(["training", "popularity_model"])],
        run_config={"ops": {"training__popularity_model": {"config": {"epochs": 2}}}},
    )
    assert result.success
    md = result.asset_materializations_for_node("training__popularity_model")[0].metadata
    assert md["dataset_commit"].value == head.id
    # it trained and predicted on the restored rows, not the bad version's
    assert md["dagster/row_count"].value == examples.height != bad_rows.height
    manifest = R.read_manifest(object_store_from_settings())
    assert manifest["dataset_commit"] == head.id
