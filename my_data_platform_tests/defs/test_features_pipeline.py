"""The features group through Dagster on a tiny world: examples, checks, online == offline."""

from __future__ import annotations

import json
from collections.abc import Iterator

import dagster as dg
import polars as pl
import pytest
from typer.testing import CliRunner

from my_data_platform.cli import app
from my_data_platform.core import features as F
from my_data_platform.defs.features.objects import feature_object
from my_data_platform.defs.lake.resources import object_store_from_settings
from my_data_platform.runner import execute_plan, plan_refresh
from my_data_platform.synth import WorldConfig
from my_data_platform_tests.conftest import pipeline_world

pytestmark = pytest.mark.slow  # materializes the feature and dataset graph on a generated world


CONFIG = WorldConfig(days=3, users=40, photos=240, events_per_day=3_000, seed=5)
TABLES = [
    "caption_embeddings",
    "image_embeddings",
    "image_predictions",
    "photo_activity",
    "labels",
    "training_examples",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    with pipeline_world(tmp_path_factory, "features", CONFIG) as w:
        yield w


def _table(name: str) -> pl.DataFrame:
    return pl.read_parquet(object_store_from_settings().get_bytes(feature_object(name)))


def test_graph_runs_and_checks_pass(world: dict) -> None:
    outcomes = world["outcomes"]
    assert [o.failed_steps for o in outcomes if not o.success] == []
    # model-quality checks only warn (a 240-photo world is too small to promise a margin)
    assert [c for o in outcomes for c in o.failed_checks if not c.endswith("(warn)")] == []
    mats = {k: md for o in outcomes for k, md in o.materializations.items()}
    for name in TABLES:
        assert f"features/{name}" in mats
    # the probe learnt from the simulated annotators' consensus, never from the hidden truth
    preds = mats["features/image_predictions"]
    assert preds["labelled_photos"] > 50 and preds["held_out_n"] > 10
    assert preds["held_out_accuracy"] >= 0.8
    emb = _table("image_embeddings")
    assert emb.height == _table("image_predictions").height
    assert emb["embedding"].drop_nulls().list.len().unique().to_list() == [64]


def test_examples_match_labels_and_respect_prediction_time(world: dict) -> None:
    ex = _table("training_examples")
    lab = _table("labels")
    labelled = lab.filter(pl.col("label_status") == "labelled")
    assert ex.height == labelled.height > 50
    assert ex["photo_id"].is_unique().all()
    assert (
        lab.filter(pl.col("label_status") == "too_young")["label"].null_count()
        == lab.filter(pl.col("label_status") == "too_young").height
    )
    joined = ex.join(
        labelled.select("photo_id", "uploaded_at", pl.col("label").alias("l")), on="photo_id"
    )
    assert (joined["label"] == joined["l"]).all()
    delay = F.FeatureConfig().prediction_delay
    assert (joined["prediction_ts"] == joined["uploaded_at"] + delay).all()
    assert set(F.FEATURE_COLUMNS) <= set(ex.columns)
    assert {"predicted_class", "confidence", "caption_embedding"} <= set(ex.columns)
    assert 0.05 < float(ex["label"].mean()) < 0.95


def test_online_equals_offline(world: dict) -> None:
    ex = _table("training_examples").sample(8, seed=1)
    runner = CliRunner()
    for row in ex.iter_rows(named=True):
        ts = row["prediction_ts"].isoformat()
        res = runner.invoke(
            app, ["features", "get", str(row["photo_id"]), "--as-of", ts, "--format", "json"]
        )
        assert res.exit_code == 0, res.output
        online = json.loads(res.stdout)
        for col in [*F.FEATURE_COLUMNS, "predicted_class", "confidence"]:
            assert online[col] == row[col], (row["photo_id"], col, online[col], row[col])
        assert online["caption_embedding"] == pytest.approx(list(row["caption_embedding"]), abs=0)


def test_rematerializing_features_is_identical(world: dict) -> None:
    before = {t: _table(t) for t in TABLES}
    defs, instance = world["defs"], world["instance"]
    again = execute_plan(defs, instance, plan_refresh(defs, instance, "group:features"))
    assert all(o.success for o in again)
    assert _table("caption_embeddings").equals(before["caption_embeddings"])
    for t in TABLES:
        assert _table(t).equals(before[t]), t
    mats = {k: md for o in again for k, md in o.materializations.items()}
    assert mats["features/caption_embeddings"]["encoded_now"] == 0  # incremental: nothing new


def _mdp_json(*args: str) -> object:
    res = CliRunner().invoke(app, [*args, "--format", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_dataset_published_to_main_by_commit_id(world: dict) -> None:
    from my_data_platform.core import datasets as D
    from my_data_platform.defs.datasets.resources import version_store_from_settings

    mats = {k: md for o in world["outcomes"] for k, md in o.materializations.items()}
    md = mats["datasets/popularity"]
    assert md["published"] is True
    assert "data:image/png;base64," in md["label_balance"]  # the plot people look at
    vs = version_store_from_settings()
    assert vs.branch_head("main") == md["dataset_commit"]
    assert vs.list_tags()[md["tag"]] == md["dataset_commit"]
    assert md["branch"] not in vs.list_branches()  # published run branches are cleaned up
    ex = D.read_examples(vs.get_object(md["dataset_commit"], D.EXAMPLES))
    assert ex.equals(
        D.assign_splits(
            _table("training_examples"), ex.select("photo_id", pl.col("author_id").alias("user_id"))
        )
    )
    assert set(ex["split"].unique().to_list()) == {"train", "validation", "test"}
    log = _mdp_json("datasets", "log")
    assert log[0]["id"] == md["dataset_commit"]
    assert log[0]["metadata"]["dagster_run_id"]
    assert "upstream:features/training_examples" in log[0]["metadata"]
    shown = _mdp_json("datasets", "show", md["dataset_commit"])
    assert sum(s["examples"] for s in shown["splits"].values()) == ex.height


def test_republishing_identical_data_keeps_main(world: dict) -> None:
    from my_data_platform.defs.datasets.resources import version_store_from_settings

    vs = version_store_from_settings()
    defs, instance = world["defs"], world["instance"]
    sel = 'key:"datasets/popularity"'
    # upstream may have been re-materialized by earlier tests: publish that state first
    assert all(o.success for o in execute_plan(defs, instance, plan_refresh(defs, instance, sel)))
    head = vs.branch_head("main")
    again = execute_plan(defs, instance, plan_refresh(defs, instance, sel))
    assert all(o.success for o in again)
    md = again[0].materializations["datasets/popularity"]
    assert md["unchanged"] is True and md["dataset_commit"] == head
    assert vs.branch_head("main") == head


def test_failed_audit_leaves_main_untouched(world: dict) -> None:
    from my_data_platform.defs.datasets.resources import version_store_from_settings

    store = object_store_from_settings()
    key = feature_object("training_examples")
    good = store.get_bytes(key)
    vs = version_store_from_settings()
    head = vs.branch_head("main")
    try:
        bad = pl.read_parquet(good).with_columns(
            photo_likes_24h=pl.when(pl.col("photo_id") % 7 == 0)
            .then(None)
            .otherwise(pl.col("photo_likes_24h"))
        )
        with store.writing(key, ".parquet") as path:
            bad.write_parquet(path)
        defs, instance = world["defs"], world["instance"]
        out = execute_plan(
            defs, instance, plan_refresh(defs, instance, 'key:"datasets/popularity"')
        )
        assert not out[0].success
        assert "no_nulls" in " ".join(out[0].failed_steps) + " ".join(out[0].failed_checks)
        assert vs.branch_head("main") == head
        kept = [b for b in vs.list_branches() if b.startswith("run-")]
        assert kept, "the audited branch is kept for debugging"
        obs = instance.fetch_observations(dg.AssetKey(["datasets", "popularity"]), limit=1)
        md = obs.records[0].asset_observation.metadata
        assert md["published"].value is False and md["branch"].value == kept[-1]
        assert "no_nulls" in md["failed_checks"].value
        # the kept branch holds the rejected data; main does not
        assert vs.get_object(kept[-1], "examples.parquet") != vs.get_object(
            "main", "examples.parquet"
        )
    finally:
        store.put_bytes(key, good)


def test_write_audit_publish_on_lakefs_over_http(world: dict, tmp_path) -> None:
    """The same asset against the lakeFS backend: the official SDK over HTTP to the test server."""
    from my_data_platform.core.versioning import LakeFSVersionStore
    from my_data_platform.defs.datasets.assets import popularity_dataset
    from my_data_platform.defs.datasets.resources import LakeFSVersioningResource
    from my_data_platform_tests.core.versioning.lakefs_server import LakeFSTestServer

    resources = dict(world["defs"].resources)
    with LakeFSTestServer(tmp_path / "lakefs") as server:
        resources["versioning"] = LakeFSVersioningResource(
            endpoint=server.endpoint,
            access_key_id=server.access_key_id,
            secret_access_key=server.secret_access_key,
            storage_namespace="local://datasets",
        )
        # the warehouse table it loads as an input, as a source
        photos = dg.AssetSpec(["warehouse", "photos"])
        result = dg.materialize(
            [popularity_dataset, photos], resources=resources, instance=world["instance"]
        )
        assert result.success
        md = result.asset_materializations_for_node("datasets__popularity")[0].metadata
        commit = md["dataset_commit"].value
        lake = LakeFSVersionStore(
            server.endpoint, server.access_key_id, server.secret_access_key, "datasets"
        )
        assert lake.branch_head("main") == commit
        assert {o.path for o in lake.list_objects(commit)} == {
            "README.md",
            "examples.parquet",
            "images.parquet",
            "labels.json",
        }
        labels_used = json.loads(lake.get_object(commit, "labels.json"))
        assert labels_used["image_content"]["labels_used"] > 50
        assert lake.log("main")[0].id == commit
        calls = set(server.requests)
        assert ("POST", "/api/v1/repositories/datasets/branches") in calls  # run branch
        assert any(m == "POST" and "/merge/main" in p for m, p in calls)  # published by merge
        assert lake.list_tags()[md["tag"].value] == commit
