"""Training on one dataset commit, shared by the model asset and ``mdp train --reproduce``:
the same call trains, scores and compares, so a manifest can be checked by retraining."""

import dataclasses
import json
from typing import Any

import dagster as dg
import numpy as np
import polars as pl

from my_data_platform.core import training as T
from my_data_platform.core.training.baselines import baseline_scores, oracle_scores
from my_data_platform.defs.datasets.lineage import code_version
from my_data_platform.defs.features.resources import GroundTruthResource


def resolve_device(name: str) -> str:
    import torch

    name = name.strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise dg.Failure(description=f"device {name!r} requested but CUDA is not available")
    if name != "cpu" and not name.startswith("cuda"):
        raise dg.Failure(description=f"device must be auto, cpu or cuda, got {name!r}")
    return name


def train_from_commit(
    vs: Any, commit: str, config: T.TrainConfig, ground_truth: pl.DataFrame | None
) -> tuple[Any, dict[str, Any], dict[str, Any], dict[str, Any] | None, pl.DataFrame, pl.DataFrame]:
    """Model, metrics, baselines, oracle, per-photo predictions and the test split's per-row
    scores for one dataset commit.

    ``ground_truth`` is the generator's hidden per-photo popularity (synthetic worlds only;
    ``None`` on real data, and then there is no oracle). The last frame
    (:func:`scores_on_test_split`) is what the model's checks compare on, row by row."""
    df = T.load_dataset(vs, commit)
    model, metrics = T.train_popularity_model(df, config)
    base = T.baselines(df)
    orc = T.oracle(df, ground_truth) if ground_truth is not None else None
    labelled = df.filter(pl.col("label").is_not_null())
    p = T.predict(model.cpu(), labelled, model.stats)
    preds = labelled.select(
        "photo_id", pl.col("split").cast(pl.String), pl.col("label").cast(pl.Int8)
    ).with_columns(p=pl.Series(np.asarray(p, dtype=np.float64)))
    return model, metrics, base, orc, preds, scores_on_test_split(labelled, preds, ground_truth)


def scores_on_test_split(
    labelled: pl.DataFrame, preds: pl.DataFrame, ground_truth: pl.DataFrame | None
) -> pl.DataFrame:
    """One row per test photo: ``photo_id``, ``label``, the model's ``p``, each baseline's
    score and the ``oracle`` score (null without ground truth). Every scorer is on the same
    rows, so the checks can resample them in pairs (``core.training.compare``)."""
    base = baseline_scores(labelled)
    out = preds.with_columns(**{name: pl.Series(s) for name, s in base.items()}).filter(
        pl.col("split") == "test"
    )
    if ground_truth is not None:
        orc = oracle_scores(labelled, ground_truth).select(
            "photo_id", pl.col("_oracle_score").alias("oracle")
        )
        out = out.join(orc, on="photo_id", how="left")
    else:
        out = out.with_columns(oracle=pl.lit(None, pl.Float64))
    return out.drop("split")


def summary(metrics: dict, base: dict, orc: dict | None) -> dict[str, Any]:
    """The headline comparison on the test split (also what ``make demo`` prints)."""
    model_auc = metrics["test"]["roc_auc"]
    out: dict[str, Any] = {
        "model": model_auc,
        **{name: b["test"]["roc_auc"] for name, b in base.items()},
        "oracle": orc["test"]["roc_auc"] if orc else None,
    }
    others = [b["test"]["roc_auc"] for b in base.values()]
    out["beats_baselines"] = model_auc is not None and all(
        auc is not None and model_auc > auc for auc in others
    )
    out["fraction_of_oracle"] = (
        model_auc / out["oracle"] if orc and model_auc is not None and out["oracle"] else None
    )
    return out


def reproduce_manifest(
    vs: Any,
    manifest: dict[str, Any],
    device: str | None = None,
    ground_truth: GroundTruthResource | None = None,
) -> dict[str, Any]:
    """Retrain from a manifest and return the same structure, plus how close it came.

    ``ground_truth`` defaults to the settings' (the CLI has no resources): the truth in the
    object store, so a reproduction on another host scores the same oracle."""
    if ground_truth is None:
        from my_data_platform.defs.features.resources import ground_truth_resource_from_settings

        with dg.build_resources({"gt": ground_truth_resource_from_settings()}) as res:
            gt = res.gt.photos()
    else:
        gt = ground_truth.photos()
    cfg = T.TrainConfig.from_dict(manifest["config"])
    if device is not None:
        cfg = dataclasses.replace(cfg, device=device)
    _, metrics, base, orc, _, _ = train_from_commit(vs, manifest["dataset_commit"], cfg, gt)
    out = {
        "kind": "popularity_model_reproduction",
        "reproduced_from": manifest.get("manifest_uri"),
        "manifest_uri": manifest.get("manifest_uri"),
        "dataset_commit": manifest["dataset_commit"],
        "code_version": code_version(),
        "recorded_code_version": manifest.get("code_version"),
        "seed": cfg.seed,
        "device": cfg.device,
        "config": cfg.to_dict(),
        "metrics": {k: v for k, v in metrics.items() if k != "stats"},
        "baselines": base,
        "oracle": orc,
        "summary": summary(metrics, base, orc),
        "library_versions": T.library_versions(),
    }
    diff = T.metrics_max_diff(manifest.get("metrics", {}), metrics)
    out["reproduction"] = {
        "max_abs_diff": diff if np.isfinite(diff) else None,
        "tolerance": 1e-6,
        "matches": bool(diff <= 1e-6),
    }
    return json.loads(json.dumps(out, default=str))
