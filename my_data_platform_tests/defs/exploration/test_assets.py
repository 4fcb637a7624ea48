"""exploration/fiftyone_dataset and training/fiftyone_predictions through Dagster, on a tiny
world whose dataset was published by the real pipeline."""

from __future__ import annotations

import io
from collections.abc import Iterator

import dagster as dg
import polars as pl
import pytest

from my_data_platform.core import datasets as D
from my_data_platform.core import exploration as X
from my_data_platform.core import features as F
from my_data_platform.defs.datasets.resources import version_store_from_settings
from my_data_platform.defs.exploration.assets import (
    DATASET_KEY,
    MODEL_KEY,
    fiftyone_dataset,
    fiftyone_predictions,
)
from my_data_platform.defs.exploration.resources import FiftyOneResource
from my_data_platform.defs.lake.resources import object_store_from_settings
from my_data_platform.synth import WorldConfig
from my_data_platform_tests.conftest import pipeline_world
from my_data_platform_tests.defs.exploration.tiny import mongo_uri  # noqa: F401

pytestmark = pytest.mark.slow  # a generated world, the whole graph and the bundled mongod


CONFIG = WorldConfig(days=3, users=40, photos=240, events_per_day=3_000, seed=5)
DB = "mdp-test-assets"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, mongo_uri: str) -> Iterator[dict]:  # noqa: F811
    sel = "not group:exploration and not group:training"
    with pipeline_world(tmp_path_factory, "exploration", CONFIG, sel) as w:
        outcomes = w["outcomes"]
        assert all(o.success for o in outcomes), [o.failed_steps for o in outcomes]
        resources = dict(w["defs"].resources)
        resources["fiftyone"] = FiftyOneResource(database_uri=mongo_uri, database_name=DB)
        yield {"data": w["data"], "instance": w["instance"], "resources": resources}


def _published(instance: dg.DagsterInstance) -> str:
    event = instance.get_latest_materialization_event(DATASET_KEY)
    return event.asset_materialization.metadata["dataset_commit"].value


def test_fiftyone_dataset_of_the_published_commit(world: dict, mongo_uri: str) -> None:  # noqa: F811
    instance, resources = world["instance"], world["resources"]
    commit = _published(instance)
    examples = D.read_examples(version_store_from_settings().get_object(commit, D.EXAMPLES))

    result = dg.materialize([fiftyone_dataset], resources=resources, instance=instance)
    md = result.asset_materializations_for_node("exploration__fiftyone_dataset")[0].metadata
    assert md["dataset_commit"].value == commit
    assert md["fiftyone_dataset"].value == X.dataset_name(commit)
    assert md["dagster/row_count"].value == examples.height
    assert md["samples_written"].value == examples.height
    assert md["fiftyone_app"].value == f"mdp explore {commit}"
    assert md["similarity_index"].value == X.SIMILARITY_KEY
    fields = {c.name for c in md["dagster/column_schema"].value.columns}
    assert {"photo_id", "ground_truth", "image_content", "caption_embedding"} <= fields
    assert set(F.FEATURE_COLUMNS) <= fields
    assert X.dataset_name(commit) in md["preview"].value

    fo = X.connect_fiftyone(mongo_uri, DB)
    ds = fo.load_dataset(X.dataset_name(commit))
    assert sorted(ds.values("photo_id")) == sorted(examples["photo_id"].to_list())
    counts = examples["split"].value_counts()
    for split, n in counts.iter_rows():
        assert ds.match_tags(split).count() == n
    lake = object_store_from_settings()
    keys = dict(zip(*ds.values(["photo_id", "filepath"]), strict=True))
    assert keys[examples["photo_id"][0]].startswith(str(lake.uri("landing")))

    # again, naming the version by its tag: same commit, nothing rewritten, no duplicates
    tag = next(t for t, c in version_store_from_settings().list_tags().items() if c == commit)
    again = dg.materialize(
        [fiftyone_dataset],
        resources=resources,
        instance=instance,
        run_config={"ops": {"exploration__fiftyone_dataset": {"config": {"dataset_commit": tag}}}},
    )
    md2 = again.asset_materializations_for_node("exploration__fiftyone_dataset")[0].metadata
    assert md2["dataset_commit"].value == commit and md2["samples_written"].value == 0
    assert len(fo.load_dataset(X.dataset_name(commit))) == examples.height


def test_test_set_predictions_are_written_back(world: dict, mongo_uri: str) -> None:  # noqa: F811
    instance, resources = world["instance"], world["resources"]
    commit = _published(instance)
    examples = D.read_examples(version_store_from_settings().get_object(commit, D.EXAMPLES))
    # a stand-in for training/popularity_model: its predictions file and its metadata
    preds = examples.select("photo_id", "split", "label").with_columns(
        p=((pl.col("photo_id") * 37 % 100) / 100.0).cast(pl.Float64)
    )
    buf = io.BytesIO()
    preds.write_parquet(buf)
    key = "models/test-run/predictions.parquet"
    object_store_from_settings().put_bytes(key, buf.getvalue())
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=MODEL_KEY,
            metadata={"dataset_commit": commit, "predictions_key": key},
        )
    )

    result = dg.materialize([fiftyone_predictions], resources=resources, instance=instance)
    md = result.asset_materializations_for_node("training__fiftyone_predictions")[0].metadata
    test = X.prediction_frame(preds.filter(pl.col("split") == "test"))
    assert md["dagster/row_count"].value == test.height
    assert md["mistakes"].value == int((~test["correct"]).sum())
    worst = test.filter(~pl.col("correct")).sort("loss", descending=True)["photo_id"][0]
    assert f"| {worst} |" in md["worst_mistakes"].value
    assert f"mdp explore {commit}" in md["worst_mistakes"].value

    fo = X.connect_fiftyone(mongo_uri, DB)
    ds = fo.load_dataset(X.dataset_name(commit))
    assert ds.exists("popularity_prediction").count() == test.height
    assert set(ds.exists("popularity_prediction").distinct("tags")) == {"test"}
    top = ds.exists("prediction_loss").sort_by("prediction_loss", reverse=True).first()
    assert top.photo_id == test.sort("loss", descending=True)["photo_id"][0]
    assert ds.info["predictions"]["predictions_key"] == key

    # re-materializing rewrites the same values
    again = dg.materialize([fiftyone_predictions], resources=resources, instance=instance)
    md2 = again.asset_materializations_for_node("training__fiftyone_predictions")[0].metadata
    assert md2["dagster/row_count"].value == test.height and md2["cleared"].value == 0
    assert ds.exists("popularity_prediction").count() == test.height


def test_predictions_without_a_model_fail_clearly(world: dict) -> None:
    with dg.instance_for_test() as empty:
        result = dg.materialize(
            [fiftyone_predictions], resources=world["resources"], instance=empty,
            raise_on_error=False,
        )  # fmt: skip
    assert not result.success
    failure = result.failure_data_for_node("training__fiftyone_predictions")
    assert "training/popularity_model has never been materialized" in str(failure.error)
