"""``mdp model list``, ``mdp model show`` and ``mdp train --reproduce``: trained models and
their manifests."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from my_data_platform.cli._common import (
    console,
    fail,
    object_store,
    require_data_dir,
    version_store,
)

app = typer.Typer(help="Trained models: manifests in the object store.")


def _read_manifest(ref: str | None) -> dict[str, Any]:
    from my_data_platform.core.model_registry import ModelNotFoundError, read_manifest

    try:
        return read_manifest(object_store(), ref)
    except ModelNotFoundError as exc:
        fail(str(exc))


def _print_model(m: dict[str, Any], format: str) -> None:
    if format == "json":
        sys.stdout.write(json.dumps(m, default=str) + "\n")
        return
    if format != "table":
        fail(f"--format must be table or json, got {format!r}")

    def f(v: Any) -> str:
        return "n/a" if v is None else f"{float(v):.4f}"

    console.print(
        f"[bold]model[/] {m.get('manifest_uri', '')}\n"
        f"dataset commit {m['dataset_commit']}  seed {m['seed']}  device {m['device']}  "
        f"code {m.get('code_version', '?')}"
    )
    table = Table(title="ROC AUC / log loss")
    for col in ("scorer", "val ROC AUC", "test ROC AUC", "test log loss"):
        table.add_column(col)
    rows = [("model", m["metrics"]), *(m.get("baselines") or {}).items()]
    if m.get("oracle"):
        rows.append(("oracle", m["oracle"]))
    for name, r in rows:
        table.add_row(
            name, f(r["validation"].get("roc_auc")), f(r["test"].get("roc_auc")),
            f(r["test"].get("log_loss")),
        )  # fmt: skip
    console.print(table)
    rep = m.get("reproduction")
    if rep:
        verdict = "[green]matches[/]" if rep["matches"] else "[red]differs[/]"
        console.print(f"reproduction {verdict}: max |diff| {rep['max_abs_diff']}")


@app.command("list")
def model_list(
    format: Annotated[str, typer.Option("--format", "-f", help="table or json")] = "table",
) -> None:
    """Every trained model, oldest first: dataset commit, labels used and test ROC AUC, to
    compare models across dataset versions."""
    require_data_dir()
    from my_data_platform.core.model_registry import comparison_row, list_manifests

    rows = [comparison_row(m) for m in list_manifests(object_store())]
    if format == "json":
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
        return
    if format != "table":
        fail(f"--format must be table or json, got {format!r}")
    table = Table(title=f"{len(rows)} model(s)")
    for col in ("trained", "dataset commit", "image labels", "labels used", "test ROC AUC"):
        table.add_column(col)
    for r in rows:
        auc = r["test_roc_auc"]
        table.add_row(
            str(r["trained_at"]), str(r["dataset_commit"])[:16],
            str(r["image_labels_sha256"] or "n/a")[:12], str(r["image_labels_used"] or "n/a"),
            "n/a" if auc is None else f"{auc:.4f}",
        )  # fmt: skip
    console.print(table)


@app.command("show")
def model_show(
    manifest: Annotated[
        str | None, typer.Argument(help="Manifest path/URI/key; default: the newest model.")
    ] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table or json")] = "table",
) -> None:
    """The newest model's provenance manifest: dataset commit, seed, device, metrics."""
    require_data_dir()
    _print_model(_read_manifest(manifest), format)


def train(
    reproduce: Annotated[
        str | None,
        typer.Option(help="Retrain from this manifest (path, URI or object key) and compare."),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="Override the manifest's device (e.g. cpu).")
    ] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table or json")] = "table",
) -> None:
    """Retrain the popularity model from a manifest; exit 3 if the metrics differ (> 1e-6).

    To train a new model, materialize it: `mdp run --select training/popularity_model`.
    """
    if reproduce is None:
        fail(
            "give --reproduce MANIFEST (see `mdp model show`); to train a new model run "
            "`mdp run --select training/popularity_model`"
        )
    require_data_dir()
    from my_data_platform.core.versioning import VersioningError
    from my_data_platform.defs.training.reproduce import reproduce_manifest

    m = _read_manifest(reproduce)
    try:
        out = reproduce_manifest(version_store(), m, device=device)
    except VersioningError as exc:
        fail(f"dataset commit {m['dataset_commit']} cannot be read: {exc}")
    _print_model(out, format)
    if not out["reproduction"]["matches"] and (device is None or device == m.get("device")):
        raise typer.Exit(3)
