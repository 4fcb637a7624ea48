"""training/popularity_model through Dagster on a tiny world: manifest, CLI, reproduction."""

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from typer.testing import CliRunner

from my_data_platform.cli import app
from my_data_platform.core import model_registry as R
from my_data_platform.defs.lake.resources import object_store_from_settings
from my_data_platform.settings import reset_settings
from my_data_platform.synth import WorldConfig
from my_data_platform_tests.conftest import pipeline_world

pytestmark = pytest.mark.slow  # a generated world, a published dataset and model training


CONFIG = WorldConfig(days=3, users=40, photos=240, events_per_day=3_000, seed=11)
SELECT = '+key:"training/popularity_model"'


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    with pipeline_world(tmp_path_factory, "training", CONFIG, SELECT) as w:
        yield w


def _cli(*args: str, code: int = 0) -> dict:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == code, res.output
    return json.loads(res.stdout) if code == 0 else {"output": res.output}


def test_model_trained_on_the_published_commit(world: dict) -> None:
    from my_data_platform.defs.datasets.resources import version_store_from_settings

    assert all(o.success for o in world["outcomes"]), [o.failed_steps for o in world["outcomes"]]
    md = world["mats"]["training/popularity_model"]
    assert md["dataset_commit"] == world["mats"]["datasets/popularity"]["dataset_commit"]
    assert md["dataset_commit"] == version_store_from_settings().branch_head("main")
    assert md["device"] == "cpu" and md["seed"] == 0
    assert 0.5 < md["test_roc_auc"] <= 1.0
    for key in ("metrics", "training_curve", "calibration"):
        assert md[key]  # markdown table and two PNG images
    assert "data:image/png;base64," in md["training_curve"]
    # the checkpoint, predictions and manifest are in the object store
    store = object_store_from_settings()
    manifest = R.read_manifest(store)
    assert manifest["manifest_uri"] == md["manifest_uri"]
    assert Path(manifest["checkpoint_uri"]).is_file()
    preds = pl.read_parquet(store.get_bytes(md["predictions_key"]))
    assert preds.columns == ["photo_id", "split", "label", "p"]
    assert preds["p"].is_between(0, 1).all() and preds.height == md["dagster/row_count"]


def test_model_show_json_interface(world: dict) -> None:
    m = _cli("model", "show", "--format", "json")
    md = world["mats"]["training/popularity_model"]
    assert m["manifest_uri"] == md["manifest_uri"]
    assert m["dataset_commit"] == md["dataset_commit"]
    assert m["seed"] == 0 and m["device"] == "cpu"
    assert m["metrics"]["test"]["roc_auc"] == pytest.approx(md["test_roc_auc"])
    assert set(m["baselines"]) == {"author_prior", "logistic_regression"}
    for b in m["baselines"].values():
        assert 0.0 <= b["test"]["roc_auc"] <= 1.0
    assert 0.5 < m["oracle"]["test"]["roc_auc"] <= 1.0  # the hidden popularity ranks well
    assert m["code_version"].startswith("0.1.0")
    assert m["config"]["hidden"] == [64, 32]
    assert {"torch", "polars", "numpy", "python"} <= set(m["library_versions"])
    assert m["dagster_run_id"]


def test_reproduce_from_manifest_matches(world: dict) -> None:
    uri = world["mats"]["training/popularity_model"]["manifest_uri"]
    original = R.read_manifest(object_store_from_settings(), uri)
    again = _cli("train", "--reproduce", uri, "--format", "json")
    assert again["reproduction"]["matches"] is True
    assert again["reproduction"]["max_abs_diff"] <= 1e-6
    assert again["dataset_commit"] == original["dataset_commit"]
    for split in ("validation", "test"):
        for k in ("roc_auc", "log_loss", "brier", "ece"):
            assert again["metrics"][split][k] == pytest.approx(
                original["metrics"][split][k], abs=1e-6
            )
    assert again["baselines"]["logistic_regression"]["test"]["roc_auc"] == pytest.approx(
        original["baselines"]["logistic_regression"]["test"]["roc_auc"], abs=1e-9
    )


def test_reproduce_from_a_copied_manifest_file(world: dict, tmp_path: Path) -> None:
    uri = world["mats"]["training/popularity_model"]["manifest_uri"]
    copy = tmp_path / "manifest.json"
    copy.write_text(Path(uri).read_text())
    again = _cli("train", "--reproduce", str(copy), "--format", "json")
    assert again["reproduction"]["matches"] is True


def test_bad_manifest_is_a_clear_error(world: dict, tmp_path: Path) -> None:
    bad = tmp_path / "not-a-manifest.json"
    bad.write_text(json.dumps({"hello": 1}))
    out = _cli("train", "--reproduce", str(bad), "--format", "json", code=2)["output"]
    assert "not-a-manifest.json" in out and "dataset_commit" in out
    missing = _cli("train", "--reproduce", "models/nope/manifest.json", code=2)["output"]
    assert "models/nope/manifest.json" in missing
    assert "--reproduce" in _cli("train", code=2)["output"]


def test_training_on_an_older_commit_by_tag(world: dict) -> None:
    """The run config picks a dataset version by tag; the manifest records its commit id."""
    from my_data_platform.defs.datasets.resources import version_store_from_settings

    vs = version_store_from_settings()
    tag, commit = next(iter(vs.list_tags().items()))
    defs = world["defs"]
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=world["instance"],
        asset_selection=[dg.AssetKey(["training", "popularity_model"])],
        run_config={
            "ops": {
                "training__popularity_model": {
                    "config": {"dataset_commit": tag, "epochs": 3, "seed": 7}
                }
            }
        },
    )
    assert result.success
    md = result.asset_materializations_for_node("training__popularity_model")[0].metadata
    assert md["dataset_commit"].value == commit and md["seed"].value == 7
    newest = R.read_manifest(object_store_from_settings())
    assert newest["dataset_commit"] == commit
    assert newest["config"]["epochs"] == 3 and newest["seed"] == 7


def test_no_model_yet_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MDP_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MDP_OBJECT_STORE", raising=False)
    reset_settings()
    try:
        out = _cli("model", "show", "--format", "json", code=2)["output"]
        assert "no model has been trained yet" in out
    finally:
        reset_settings()
