"""``mdp model diff``: two registered models, trained on two dataset versions, compared."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from my_data_platform.cli import _common, app
from my_data_platform.core import datasets as D
from my_data_platform.core import model_registry as R
from my_data_platform.core.training.checkpoints import build_manifest
from my_data_platform.core.training.train import TrainConfig
from my_data_platform.core.versioning import VersionStore

IDS_A = list(range(1, 41))
IDS_B = list(range(4, 46))  # 1-3 removed, 41-45 added
FLIPPED = {10, 12}  # label 0 -> 1 and 1 -> 0
EDITED = 20  # a feature value corrected


def _examples(ids: list[int], *, flipped: set[int] = frozenset(), edited: int | None = None):
    return pl.DataFrame(
        {
            "photo_id": ids,
            "label": [int((i % 3 == 0) != (i in flipped)) for i in ids],
            "likes_1h": [999.0 if i == edited else float(i) for i in ids],
        }
    )


def _publish(vs: VersionStore, name: str, examples: pl.DataFrame, labels: dict, code: str) -> str:
    """A dataset version the way datasets/popularity publishes one (build, branch, commit,
    merge), from a few dozen photos by 12 authors."""
    ids = list(range(1, 46))
    photos = pl.DataFrame(
        {"photo_id": ids, "user_id": [i % 12 for i in ids], "object_key": [f"p/{i}" for i in ids]}
    )
    manifest = pl.DataFrame(
        {
            "key": [f"p/{i}" for i in ids], "sha256": [f"{i:064x}" for i in ids],
            "bytes": [100] * 45, "width": [8] * 45, "height": [8] * 45, "format": ["PNG"] * 45,
            "decodable": [True] * 45,
        }
    )  # fmt: skip
    objects, _, _ = D.build_dataset(examples, photos, manifest, {})
    objects[D.LABELS] = json.dumps(labels, sort_keys=True).encode()
    vs.create_branch(name, "main")
    vs.put_objects(name, objects)
    cid = vs.commit(name, f"publish {name}", {"code_version": code}).id
    vs.merge(name, "main")
    vs.delete_branch(name)
    return cid


def _labels(sha: str, used: int) -> dict[str, Any]:
    return {
        "popularity": {"source": "user feedback", "label_window_hours": 24},
        "image_content": {"labels_sha256": sha, "labels_used": used, "label_methods": ["vote"]},
    }


def _register(commit: str, when: dt.datetime, run_id: str, **kw: Any) -> dict[str, Any]:
    """Publish a model manifest through the registry, as training/popularity_model does."""
    store = _common.object_store()
    m = build_manifest(
        dataset_commit=commit, code_version=kw["code"], config=kw["config"], device="cpu",
        metrics=kw["metrics"], baselines=kw["baselines"], oracle=kw["oracle"],
        checkpoint_uri="unused", library_versions={"torch": "2.13.0"},
    )  # fmt: skip
    m["labels"] = kw["labels"]
    return R.publish(store, R.run_prefix(run_id, when), checkpoint=b"weights", manifest=m)


@pytest.fixture
def two_models(data_env: Path) -> dict[str, Any]:
    vs = _common.version_store()
    la, lb = _labels("a" * 64, 100), _labels("b" * 64, 120)
    ca = _publish(vs, "v1", _examples(IDS_A), la, "0.1.0+gaaaaaaaaaaaa")
    cb = _publish(
        vs, "v2", _examples(IDS_B, flipped=FLIPPED, edited=EDITED), lb, "0.1.0+gbbbbbbbbbbbb"
    )
    a = _register(
        ca, dt.datetime(2026, 1, 1, 8, tzinfo=dt.UTC), "aaaa1111-run", code="0.1.0+g111111111111",
        config=TrainConfig(seed=0, lr=1e-3), labels=la, oracle=None,
        metrics={
            "validation": {"roc_auc": 0.71, "log_loss": 0.60},
            "test": {"roc_auc": 0.70, "log_loss": 0.61, "brier": 0.20},
            "curve": [{"epoch": 1, "loss": 0.7}], "best_epoch": 5,
        },
        baselines={"author_prior": {"test": {"roc_auc": 0.60}}},
    )  # fmt: skip
    b = _register(
        cb, dt.datetime(2026, 1, 2, 8, tzinfo=dt.UTC), "bbbb2222-run", code="0.1.0+g222222222222",
        config=TrainConfig(seed=7, lr=5e-4), labels=lb, oracle={"test": {"roc_auc": 0.90}},
        metrics={
            "validation": {"roc_auc": 0.74, "log_loss": 0.58},
            "test": {"roc_auc": 0.75, "log_loss": 0.57, "ece": 0.05},
            "curve": [{"epoch": 1, "loss": 0.6}], "best_epoch": 9,
        },
        baselines={
            "author_prior": {"test": {"roc_auc": 0.62}},
            "logistic_regression": {"test": {"roc_auc": 0.66}},
        },
    )  # fmt: skip
    return {"a": a, "b": b, "ca": ca, "cb": cb, "vs": vs}


def _invoke(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


def test_list_shows_the_ids_diff_takes(two_models: dict[str, Any]) -> None:
    code, out, err = _invoke("model", "list", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["model_id"] for r in rows] == [
        "20260101T080000Z-aaaa1111",
        "20260102T080000Z-bbbb2222",
    ]
    assert [r["dataset_commit"] for r in rows] == [two_models["ca"], two_models["cb"]]
    code, out, _ = _invoke("model", "list")
    assert code == 0 and "20260101T080000Z-aaaa1111" in out


def test_diff_json_metrics_params_labels_and_dataset(two_models: dict[str, Any]) -> None:
    code, out, err = _invoke(
        "model", "diff", "20260101T080000Z-aaaa1111", "20260102T080000Z-bbbb2222", "-f", "json"
    )
    assert code == 0, err
    d = json.loads(out)
    assert d["a"]["dataset_commit"] == two_models["ca"] and d["b"]["model_id"].endswith("bbbb2222")

    metrics = {r["metric"]: r for r in d["metrics"]}
    assert metrics["test.roc_auc"]["a"] == 0.70 and metrics["test.roc_auc"]["b"] == 0.75
    assert metrics["test.roc_auc"]["delta"] == pytest.approx(0.05)
    assert metrics["validation.log_loss"]["delta"] == pytest.approx(-0.02)
    assert metrics["best_epoch"] == {"metric": "best_epoch", "a": 5, "b": 9, "delta": 4}
    # a metric only one model has is shown, as missing on the other side
    assert metrics["test.brier"] == {"metric": "test.brier", "a": 0.2, "b": None, "delta": None}
    assert metrics["test.ece"]["a"] is None and metrics["test.ece"]["b"] == 0.05
    assert metrics["baselines.logistic_regression.test.roc_auc"]["a"] is None
    assert metrics["baselines.author_prior.test.roc_auc"]["delta"] == pytest.approx(0.02)
    assert metrics["oracle.test.roc_auc"] == {
        "metric": "oracle.test.roc_auc", "a": None, "b": 0.9, "delta": None,
    }  # fmt: skip
    assert not any(name.startswith("curve") for name in metrics)  # a curve is not a metric

    assert d["code_version"] == {
        "a": "0.1.0+g111111111111", "b": "0.1.0+g222222222222", "same": False,
    }  # fmt: skip
    params = d["training_params"]
    assert params["seed"] == {"a": 0, "b": 7} and params["config.seed"] == {"a": 0, "b": 7}
    assert params["config.lr"] == {"a": 1e-3, "b": 5e-4}
    assert "config.epochs" not in params and "device" not in params  # equal: not listed
    assert d["label_provenance"] == {
        "image_content.labels_sha256": {"a": "a" * 64, "b": "b" * 64},
        "image_content.labels_used": {"a": 100, "b": 120},
    }

    ds = d["dataset"]
    assert (ds["a"], ds["b"], ds["same_commit"]) == (two_models["ca"], two_models["cb"], False)
    assert ds["code_version"] == {"a": "0.1.0+gaaaaaaaaaaaa", "b": "0.1.0+gbbbbbbbbbbbb"}
    assert {(o["path"], o["type"]) for o in ds["objects"]} >= {
        (D.EXAMPLES, "changed"), (D.LABELS, "changed"),
    }  # fmt: skip
    ex = ds["examples"]
    assert ex["examples"] == {"a": len(IDS_A), "b": len(IDS_B)}
    assert (ex["added"], ex["removed"], ex["changed"]) == (5, 3, 3)
    assert ex["sample"] == {
        "added": [41, 42, 43, 44, 45],
        "removed": [1, 2, 3],
        "changed": [10, 12, 20],
    }
    assert ex["unchanged"] == len(set(IDS_A) & set(IDS_B)) - 3
    assert ex["changed_columns"] == {"label": 2, "likes_1h": 1}
    assert ex["label_changes"] == {"total": 2, "by_transition": {"0->1": 1, "1->0": 1}}
    assert ex["split_moves"] == 0  # splits are by author: an example never moves
    # per-split counts, checked against the published examples themselves
    for side, commit in (("a", two_models["ca"]), ("b", two_models["cb"])):
        published = D.read_examples(two_models["vs"].get_object(commit, D.EXAMPLES))
        for split, counts in ex["splits"].items():
            part = published.filter(pl.col("split") == split)
            assert counts[side]["examples"] == part.height
            assert counts[side]["authors"] == part["author_id"].n_unique()
    assert sum(c["examples_delta"] for c in ex["splits"].values()) == len(IDS_B) - len(IDS_A)


def test_diff_text_by_prefix_and_latest(two_models: dict[str, Any]) -> None:
    code, out, err = _invoke("model", "diff", "20260101", "latest")
    assert code == 0, err
    assert "20260101T080000Z-aaaa1111" in out and "20260102T080000Z-bbbb2222" in out
    assert "test.roc_auc" in out and "+0.0500" in out and "missing" in out
    assert "+5 added, -3 removed, ~3 changed" in out
    assert "label changes: 2 (0->1: 1, 1->0: 1)" in out
    assert "seed: 0 -> 7" in out and "image_content.labels_used: 100 -> 120" in out
    assert "0.1.0+g111111111111" in out and "0.1.0+g222222222222" in out


def test_same_model_same_dataset(two_models: dict[str, Any]) -> None:
    code, out, err = _invoke("model", "diff", "latest", "20260102T080000Z-bbbb2222", "-f", "json")
    assert code == 0, err
    d = json.loads(out)
    assert all(r["delta"] in (0, None) for r in d["metrics"])
    assert d["training_params"] == {} and d["label_provenance"] == {}
    assert d["dataset"]["same_commit"] is True and d["dataset"]["objects"] == []


@pytest.mark.parametrize(
    "ref",
    ["20270101T000000Z-nope", "../../../../etc/passwd", "models/popularity/x/manifest.json", ""],
)
def test_unknown_model_is_a_one_line_error_naming_it(two_models: dict[str, Any], ref: str) -> None:
    code, out, err = _invoke("model", "diff", ref, "latest")
    assert code != 0 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and repr(ref) in lines[0], err


def test_ambiguous_prefix_and_bad_format(two_models: dict[str, Any]) -> None:
    code, _, err = _invoke("model", "diff", "2026", "latest")
    assert code != 0 and "ambiguous" in err and "20260101T080000Z-aaaa1111" in err
    code, _, err = _invoke("model", "diff", "latest", "latest", "--format", "yaml")
    assert code != 0 and "--format" in err


def test_an_unreadable_dataset_still_compares_the_metrics(two_models: dict[str, Any]) -> None:
    """A dataset commit whose examples are not Parquet (damaged, or hostile): the diff says
    so in the dataset section and still compares what the manifests hold."""
    vs = two_models["vs"]
    vs.create_branch("bad", "main")
    vs.put_objects("bad", {D.EXAMPLES: b"PAR1 this is not parquet PAR1"})
    bad = vs.commit("bad", "damaged", {}).id
    _register(
        bad, dt.datetime(2026, 1, 3, tzinfo=dt.UTC), "cccc3333-run", code="0.1.0+g333333333333",
        config=TrainConfig(), labels=None, oracle=None, baselines={},
        metrics={"test": {"roc_auc": 0.5}},
    )  # fmt: skip
    code, out, err = _invoke("model", "diff", "20260101T080000Z-aaaa1111", "20260103", "-f", "json")
    assert code == 0, err
    d = json.loads(out)
    assert d["dataset"].keys() == {"error"} and "Error" in d["dataset"]["error"]
    test_auc = next(r for r in d["metrics"] if r["metric"] == "test.roc_auc")
    assert test_auc["delta"] == pytest.approx(-0.2)
    code, out, _ = _invoke("model", "diff", "20260101T080000Z-aaaa1111", "20260103")
    assert code == 0 and "dataset diff unavailable" in out


def test_examples_diff_edge_cases() -> None:
    """NaN and null features equal themselves (no phantom changes); duplicated ids (a damaged
    or hostile file) are refused rather than paired n x m."""
    a = pl.DataFrame({"photo_id": [1, 2, 3], "x": [float("nan"), None, 1.0], "label": [0, 1, 0]})
    same = R.diff_examples(a, a.clone())
    assert (same["changed"], same["added"], same["removed"], same["unchanged"]) == (0, 0, 0, 3)
    b = a.with_columns(pl.Series("x", [float("nan"), 2.0, 1.0]))  # null -> 2.0 is a change
    assert R.diff_examples(a, b)["changed_columns"] == {"x": 1}
    dup = pl.concat([a, a.head(1)])
    with pytest.raises(ValueError, match=r"repeat photo_id values \(e.g. \[1\]\)"):
        R.diff_examples(a, dup)
    with pytest.raises(ValueError, match="no 'photo_id' column"):
        R.diff_examples(a, a.drop("photo_id"))
