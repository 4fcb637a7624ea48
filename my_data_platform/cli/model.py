"""``mdp model list``, ``mdp model show``, ``mdp model diff`` and ``mdp train --reproduce``:
trained models and their manifests."""

from __future__ import annotations

import json
import math
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
    """Every trained model, oldest first: its id (for `mdp model diff`), dataset commit, labels
    used and test ROC AUC, to compare models across dataset versions."""
    require_data_dir()
    from my_data_platform.core.model_registry import comparison_row, list_manifests

    rows = [comparison_row(m) for m in list_manifests(object_store())]
    if format == "json":
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
        return
    if format != "table":
        fail(f"--format must be table or json, got {format!r}")
    table = Table(title=f"{len(rows)} model(s)")
    for col in ("model", "dataset commit", "image labels", "labels used", "test ROC AUC"):
        table.add_column(col, no_wrap=col == "model")
    for r in rows:
        auc = r["test_roc_auc"]
        table.add_row(
            str(r["model_id"]), str(r["dataset_commit"])[:16],
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


def _num(v: Any) -> str:
    if v is None:
        return "missing"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _print_diff(d: dict[str, Any]) -> None:
    """The text form of :func:`~my_data_platform.core.model_registry.diff_models`."""
    for side in ("a", "b"):
        m = d[side]
        console.print(
            f"[bold]{side.upper()}[/] {m['model_id'] or m['manifest_key']}  dataset "
            f"{str(m['dataset_commit'])[:16]}  code {m['code_version']}",
            soft_wrap=True, highlight=False,
        )  # fmt: skip
    table = Table(title="metrics (delta = B - A)")
    for col in ("metric", "A", "B", "delta"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for r in d["metrics"]:
        dv = r["delta"]
        delta = "" if dv is None else f"{dv:+.4f}" if isinstance(dv, float) else f"{dv:+d}"
        table.add_row(r["metric"], _num(r["a"]), _num(r["b"]), delta)
    console.print(table)

    ds = d["dataset"] or {"error": "not compared"}
    if "error" in ds:
        console.print(f"[yellow]dataset diff unavailable:[/] {ds['error']}", soft_wrap=True)
    elif ds["same_commit"]:
        console.print(f"dataset: both trained on commit {ds['a']}", highlight=False)
    else:
        ex = ds["examples"]
        objects = ", ".join(f"{o['type']} {o['path']}" for o in ds["objects"])
        console.print(
            f"[bold]dataset[/] {ds['a'][:12]} -> {ds['b'][:12]}: {len(ds['objects'])} changed "
            f"object(s) ({objects})\n"
            f"examples {ex['examples']['a']} -> {ex['examples']['b']}: +{ex['added']} added, "
            f"-{ex['removed']} removed, ~{ex['changed']} changed, {ex['unchanged']} unchanged",
            soft_wrap=True, highlight=False,
        )  # fmt: skip
        if ex["changed_columns"]:
            cols = ", ".join(f"{c} ({n})" for c, n in ex["changed_columns"].items())
            console.print(f"  changed columns: {cols}", soft_wrap=True, highlight=False)
        for what in ("columns_added", "columns_removed"):
            if ex[what]:
                console.print(f"  {what.replace('_', ' ')}: {', '.join(ex[what])}")
        if "label_changes" in ex:
            lc = ex["label_changes"]
            by = ", ".join(f"{k}: {n}" for k, n in lc["by_transition"].items())
            console.print(f"  label changes: {lc['total']}" + (f" ({by})" if by else ""))
        if "split_moves" in ex:
            console.print(f"  examples that moved split: {ex['split_moves']}")
        if "splits" in ex:
            st = Table(title="splits")
            for col in ("split", "A examples", "B examples", "delta", "A pos rate", "B pos rate"):
                st.add_column(col, justify="left" if col == "split" else "right")
            for s, c in ex["splits"].items():
                st.add_row(
                    s, str(c["a"]["examples"]), str(c["b"]["examples"]),
                    f"{c['examples_delta']:+d}", f"{c['a']['positive_rate']:.3f}",
                    f"{c['b']['positive_rate']:.3f}",
                )  # fmt: skip
            console.print(st)
        cv = ds["code_version"]
        if cv["a"] != cv["b"]:
            console.print(f"  built by code {cv['a']} -> {cv['b']}", highlight=False)

    def changes(title: str, fields: dict[str, dict[str, Any]]) -> None:
        if fields:
            console.print(f"[bold]{title}[/]")
            for k, v in fields.items():
                console.print(f"  {k}: {v['a']!r} -> {v['b']!r}", soft_wrap=True, highlight=False)

    cv = d["code_version"]
    if not cv["same"]:
        changes("code version", {"code_version": cv})
    changes("training parameters", d["training_params"])
    changes("label provenance", d["label_provenance"])


@app.command("diff")
def model_diff(
    model_a: Annotated[
        str,
        typer.Argument(
            help="A model id from `mdp model list` (or a "
            "unique prefix, `latest`, a manifest key/URI)."
        ),
    ],
    model_b: Annotated[str, typer.Argument(help="The model to compare it with.")],
    format: Annotated[str, typer.Option("--format", "-f", help="text or json")] = "text",
) -> None:
    """Two models side by side: every metric with its delta (B - A), their datasets' diff
    (objects, examples added/removed/changed, label flips, splits), and their code versions,
    training parameters and label provenance where they differ."""
    if format not in ("text", "table", "json"):
        fail(f"--format must be text or json, got {format!r}")
    require_data_dir()
    import polars as pl

    from my_data_platform.core.model_registry import (
        ModelNotFoundError,
        diff_datasets,
        diff_models,
        resolve_model,
    )
    from my_data_platform.core.versioning import VersioningError

    store = object_store()
    try:
        a, b = resolve_model(store, model_a), resolve_model(store, model_b)
    except ModelNotFoundError as exc:
        fail(str(exc))
    dataset: dict[str, Any]
    try:
        dataset = diff_datasets(version_store(), str(a["dataset_commit"]), str(b["dataset_commit"]))
    except (VersioningError, pl.exceptions.PolarsError, ValueError, KeyError, OSError) as exc:
        # the metrics still compare; say plainly why the data side does not
        dataset = {"error": f"{type(exc).__name__}: {exc}"}
    d = diff_models(a, b, dataset)
    if format == "json":
        sys.stdout.write(json.dumps(_finite(d), default=str, allow_nan=False) + "\n")
        return
    _print_diff(d)


def _finite(v: Any) -> Any:
    """JSON has no NaN or infinity: such a metric is written as the string "nan"/"inf"."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    return v


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
    from my_data_platform._build import CodeVersionError
    from my_data_platform.core.versioning import VersioningError
    from my_data_platform.defs.training.reproduce import reproduce_manifest

    m = _read_manifest(reproduce)
    try:
        out = reproduce_manifest(version_store(), m, device=device)
    except VersioningError as exc:
        fail(f"dataset commit {m['dataset_commit']} cannot be read: {exc}")
    except CodeVersionError as exc:  # a reproduction must name the code that ran it
        fail(str(exc))
    _print_model(out, format)
    if not out["reproduction"]["matches"] and (device is None or device == m.get("device")):
        raise typer.Exit(3)
