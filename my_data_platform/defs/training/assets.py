"""The popularity model, trained on one exact dataset commit and stored with its provenance.

The asset reads ``examples.parquet`` at a *commit id* (never a branch), trains the PyTorch
model deterministically, scores it beside two baselines and the generator's oracle on the same
splits, and publishes checkpoint + manifest + per-photo predictions to the object store.
``mdp model show`` prints the newest manifest; ``mdp train --reproduce MANIFEST`` retrains
from one and checks the metrics match.
"""

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import polars as pl

from my_data_platform.core import model_registry as R
from my_data_platform.core import training as T
from my_data_platform.defs.datasets.assets import KEY as DATASET_KEY
from my_data_platform.defs.datasets.assets import code_version, dataset_commit
from my_data_platform.defs.datasets.resources import VersioningResource
from my_data_platform.defs.lake.resources import ObjectStoreResource
from my_data_platform.defs.metadata import png_metadata, table_metadata

KEY = dg.AssetKey(["training", "popularity_model"])
ORACLE_FRACTION_TARGET = 0.90


class TrainingConfig(dg.Config):
    """Run config (Launchpad): which dataset version and which hyperparameters."""

    dataset_commit: str | None = None
    """A commit id, tag or branch; default: the commit ``datasets/popularity`` last published."""
    seed: int = 0
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    hidden: list[int] = [64, 32]
    use_embeddings: bool = True
    patience: int = 8
    device: str = "auto"
    """``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``."""


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


def load_ground_truth() -> pl.DataFrame | None:
    """The generator's hidden popularity (synthetic worlds only; ``None`` on real data)."""
    from my_data_platform.settings import get_settings

    path = Path(get_settings().ground_truth_dir) / "photos.parquet"
    return pl.read_parquet(path) if path.exists() else None


def train_from_commit(
    vs: Any, commit: str, config: T.TrainConfig
) -> tuple[Any, dict[str, Any], dict[str, Any], dict[str, Any] | None, pl.DataFrame]:
    """Model, metrics, baselines, oracle and per-photo predictions for one dataset commit."""
    df = T.load_dataset(vs, commit)
    model, metrics = T.train_popularity_model(df, config)
    base = T.baselines(df)
    gt = load_ground_truth()
    orc = T.oracle(df, gt) if gt is not None else None
    labelled = df.filter(pl.col("label").is_not_null())
    p = T.predict(model.cpu(), labelled, model.stats)
    preds = labelled.select(
        "photo_id", pl.col("split").cast(pl.String), pl.col("label").cast(pl.Int8)
    ).with_columns(p=pl.Series(np.asarray(p, dtype=np.float64)))
    return model, metrics, base, orc, preds


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


def _metrics_table(metrics: dict, base: dict, orc: dict | None) -> str:
    rows = [("model", metrics), *base.items()]
    if orc:
        rows.append(("oracle", orc))
    lines = [
        "| scorer | val ROC AUC | test ROC AUC | test log loss | test ECE |",
        "|---|---|---|---|---|",
    ]

    def f(v: Any) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    for name, r in rows:
        v, t = r["validation"], r["test"]
        lines.append(
            f"| {name} | {f(v['roc_auc'])} | {f(t['roc_auc'])} | {f(t['log_loss'])} "
            f"| {f(t.get('ece'))} |"
        )
    return "\n".join(lines)


@dg.asset(
    key=KEY,
    deps=[DATASET_KEY],
    group_name="training",
    kinds={"pytorch", "s3"},
    check_specs=[
        dg.AssetCheckSpec(
            "beats_baselines",
            asset=KEY,
            description="Test ROC AUC above the author prior and the logistic regression.",
        ),
        dg.AssetCheckSpec(
            "near_oracle",
            asset=KEY,
            description=f"Test ROC AUC at least {ORACLE_FRACTION_TARGET:.0%} of the oracle's.",
        ),
    ],
)
def popularity_model(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    object_store: ObjectStoreResource,
    versioning: VersioningResource,
):
    """Predicts whether a new photo becomes popular, from what is known one hour after upload
    (author history, early activity, caption meaning, image class). Trained on one audited
    dataset commit; the manifest next to the checkpoint names that commit, the code version,
    seed, device and hyperparameters, so anyone can retrain it and get the same numbers."""
    store = object_store.get_store()
    vs = versioning.get_store()
    commit = dataset_commit(context.instance, vs, config.dataset_commit)
    device = resolve_device(config.device)
    cfg = T.TrainConfig(
        seed=config.seed,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=config.weight_decay,
        hidden=tuple(config.hidden),
        use_embeddings=config.use_embeddings,
        device=device,
        patience=config.patience,
    )
    context.log.info("training on dataset commit %s on %s", commit, device)
    model, metrics, base, orc, preds = train_from_commit(vs, commit, cfg)
    headline = summary(metrics, base, orc)

    prefix = R.run_prefix(context.run_id)
    curve_png = T.plot_png(metrics["curve"], "training curve")
    test_preds = preds.filter(pl.col("split") == "test")
    calibration = T.calibration_curve(test_preds["label"].to_numpy(), test_preds["p"].to_numpy())
    calib_png = T.plot_png(calibration, "calibration (test)") if calibration else None
    buf = io.BytesIO()
    preds.write_parquet(buf)
    extra = {R.PREDICTIONS: buf.getvalue()}
    if curve_png:
        extra["curve.png"] = curve_png
    if calib_png:
        extra["calibration.png"] = calib_png
    manifest = T.build_manifest(
        dataset_commit=commit,
        code_version=code_version(),
        config=cfg,
        device=device,
        metrics=metrics,
        baselines=base,
        oracle=orc,
        checkpoint_uri=store.uri(f"{prefix}/{R.CHECKPOINT}"),
    )
    manifest.update(
        dagster_run_id=context.run_id,
        dataset_repository=vs.describe(),
        predictions_uri=store.uri(f"{prefix}/{R.PREDICTIONS}"),
        summary=headline,
    )
    manifest = R.publish(
        store, prefix, checkpoint=T.save_checkpoint(model, model.stats, cfg), manifest=manifest,
        extra=extra,
    )  # fmt: skip
    context.log.info("published model %s", manifest["manifest_uri"])

    frac = headline["fraction_of_oracle"]
    yield dg.AssetCheckResult(
        check_name="beats_baselines",
        passed=bool(headline["beats_baselines"]),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={k: v for k, v in headline.items() if isinstance(v, float)},
    )
    yield dg.AssetCheckResult(
        check_name="near_oracle",
        passed=frac is not None and frac >= ORACLE_FRACTION_TARGET,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"fraction_of_oracle": frac if frac is not None else float("nan")},
    )
    test = metrics["test"]
    yield dg.MaterializeResult(
        metadata={
            **table_metadata(preds.sort("photo_id")),
            "dataset_commit": commit,
            "manifest_uri": manifest["manifest_uri"],
            "checkpoint_uri": manifest["checkpoint_uri"],
            "predictions_key": f"{prefix}/{R.PREDICTIONS}",
            "device": device,
            "seed": cfg.seed,
            "best_epoch": metrics["best_epoch"],
            "train_seconds": round(float(metrics["seconds"]), 2),
            "test_roc_auc": test["roc_auc"],
            "test_log_loss": test["log_loss"],
            "validation_roc_auc": metrics["validation"]["roc_auc"],
            "fraction_of_oracle": frac if frac is not None else float("nan"),
            "metrics": dg.MetadataValue.md(_metrics_table(metrics, base, orc)),
            "training_curve": png_metadata(curve_png, "training curve"),
            "calibration": png_metadata(calib_png, "calibration"),
            "hyperparameters": dg.MetadataValue.json(cfg.to_dict()),
            "reproduce": dg.MetadataValue.md(
                f"`mdp train --reproduce {manifest['manifest_uri']} --format json`"
            ),
        }
    )


def reproduce_manifest(
    vs: Any, manifest: dict[str, Any], device: str | None = None
) -> dict[str, Any]:
    """Retrain from a manifest and return the same structure, plus how close it came."""
    cfg = T.TrainConfig.from_dict(manifest["config"])
    if device is not None:
        cfg = dataclasses.replace(cfg, device=device)
    _, metrics, base, orc, _ = train_from_commit(vs, manifest["dataset_commit"], cfg)
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
