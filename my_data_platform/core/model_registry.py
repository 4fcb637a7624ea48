"""Where trained models live: checkpoints and provenance manifests in the object store.

One immutable folder per training run under ``models/popularity/``, plus the pointer
``latest.json``, written last (layout in docs/training.md).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from my_data_platform.core.objectstore import ObjectNotFoundError, ObjectStore

MODEL_PREFIX = "models/popularity"
LATEST = f"{MODEL_PREFIX}/latest.json"
CHECKPOINT = "model.pt"
MANIFEST = "manifest.json"
PREDICTIONS = "predictions.parquet"


class ModelNotFoundError(LookupError):
    """No model was published yet, or a manifest reference points nowhere."""


def run_prefix(run_id: str, when: dt.datetime | None = None) -> str:
    """The folder for one training run; sortable by time, unique by run id."""
    when = when or dt.datetime.now(dt.UTC)
    return f"{MODEL_PREFIX}/{when:%Y%m%dT%H%M%SZ}-{run_id[:8]}"


def publish(
    store: ObjectStore,
    prefix: str,
    *,
    checkpoint: bytes,
    manifest: Mapping[str, Any],
    extra: Mapping[str, bytes] | None = None,
) -> dict[str, Any]:
    """Write checkpoint, extras, then the manifest (with its own URI), then the pointer."""
    store.put_bytes(f"{prefix}/{CHECKPOINT}", checkpoint)
    for name, data in (extra or {}).items():
        store.put_bytes(f"{prefix}/{name}", data)
    key = f"{prefix}/{MANIFEST}"
    full = {**manifest, "manifest_uri": store.uri(key), "manifest_key": key}
    store.put_bytes(key, json.dumps(full, indent=2, sort_keys=True, default=str).encode())
    pointer = {"manifest_key": key, "manifest_uri": full["manifest_uri"]}
    store.put_bytes(LATEST, json.dumps(pointer, indent=2).encode())
    return full


def _key_from_s3_uri(store: ObjectStore, uri: str) -> str | None:
    """Map an ``s3://`` URI this store handed out back to its key (``None`` if not ours)."""
    base = store.uri("x")[:-1]  # s3://bucket/<prefix>
    return uri[len(base) :] if base.startswith("s3://") and uri.startswith(base) else None


def read_manifest(store: ObjectStore, ref: str | None = None) -> dict[str, Any]:
    """The manifest named by ``ref``: ``None`` = the newest model; a local file (path or
    ``file://``); an ``s3://`` URI in this store; or an object key in this store."""
    if ref is None:
        try:
            ref = str(json.loads(store.get_bytes(LATEST))["manifest_key"])
        except ObjectNotFoundError:
            raise ModelNotFoundError(
                f"no model has been trained yet ({store.describe()} has no {LATEST}); "
                "materialize training/popularity_model first (mdp run)"
            ) from None
    if ref.startswith("s3://"):
        key = _key_from_s3_uri(store, ref)
        if key is None:
            raise ModelNotFoundError(f"manifest {ref!r} is not in {store.describe()}")
    else:
        local = Path(ref.removeprefix("file://"))
        if local.is_file():
            return _parse(local.read_bytes(), ref)
        key = ref
    try:
        return _parse(store.get_bytes(key), ref)
    except (ObjectNotFoundError, ValueError) as exc:
        if isinstance(exc, ModelNotFoundError):
            raise
        raise ModelNotFoundError(
            f"manifest {ref!r} is neither a file nor an object in {store.describe()}"
        ) from None


def _parse(data: bytes, ref: str) -> dict[str, Any]:
    try:
        out = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ModelNotFoundError(f"manifest {ref!r} is not valid JSON: {exc}") from None
    if not isinstance(out, dict) or "dataset_commit" not in out or "config" not in out:
        raise ModelNotFoundError(f"{ref!r} is not a model manifest (no dataset_commit/config)")
    return out


def read_object(store: ObjectStore, manifest: Mapping[str, Any], name: str) -> bytes:
    """An object stored next to ``manifest`` (the checkpoint, the predictions...)."""
    key = manifest.get("manifest_key")
    if not key:
        raise ModelNotFoundError("manifest has no manifest_key; it was not published here")
    return store.get_bytes(f"{str(key).rsplit('/', 1)[0]}/{name}")


def list_manifests(store: ObjectStore) -> list[dict[str, Any]]:
    """Every published model's manifest, oldest first (folders sort by training time)."""
    keys = sorted(o.key for o in store.list(f"{MODEL_PREFIX}/") if o.key.endswith(f"/{MANIFEST}"))
    out = []
    for key in keys:
        try:
            out.append(_parse(store.get_bytes(key), key))
        except (ObjectNotFoundError, ModelNotFoundError):
            continue  # removed since listing, or not a manifest: not a model
    return out


def comparison_row(m: Mapping[str, Any]) -> dict[str, Any]:
    """One model's headline figures and lineage, for comparing models across dataset commits."""
    labels = m.get("labels") or {}
    image = labels.get("image_content") or {}
    summary = m.get("summary") or {}
    metrics = m.get("metrics") or {}
    return {
        "model_id": model_id(m),
        "manifest_key": m.get("manifest_key"),
        "trained_at": str(m.get("manifest_key", "")).split("/")[-2].split("-")[0] or None,
        "dataset_commit": m.get("dataset_commit"),
        "code_version": m.get("code_version"),
        "test_roc_auc": (metrics.get("test") or {}).get("roc_auc"),
        "validation_roc_auc": (metrics.get("validation") or {}).get("roc_auc"),
        "baselines_test_roc_auc": {
            k: v
            for k, v in summary.items()
            if k not in ("model", "oracle") and not k.startswith(("beats", "fraction"))
        },
        "oracle_test_roc_auc_synthetic_only": summary.get("oracle"),
        "image_labels_sha256": image.get("labels_sha256"),
        "image_labels_used": image.get("labels_used"),
        "image_label_methods": image.get("label_methods"),
        "annotations": image.get("annotations"),
        "consensus_accuracy_on_gold": image.get("consensus_accuracy_on_gold"),
        "popularity_label": labels.get("popularity"),
    }


def model_id(m: Mapping[str, Any]) -> str | None:
    """A model's id: its run folder (``<trained at>-<run id[:8]>``), as ``mdp model list``
    shows it; ``None`` for a manifest that was not published in a store."""
    parts = str(m.get("manifest_key") or "").split("/")
    return parts[-2] if len(parts) >= 2 and parts[-1] == MANIFEST else None


def resolve_model(store: ObjectStore, ref: str) -> dict[str, Any]:
    """The manifest a user means by ``ref``: ``latest``; a model id from ``mdp model list``
    or an unambiguous prefix of one (the training time, say); else anything
    :func:`read_manifest` takes (manifest key, URI or file). Raises
    :class:`ModelNotFoundError` naming ``ref`` when it matches nothing or several models."""
    if ref == "latest":
        return read_manifest(store, None)
    manifests = list_manifests(store)
    exact = [m for m in manifests if model_id(m) == ref]
    if exact:
        return exact[0]
    matches = [m for m in manifests if ref and str(model_id(m) or "").startswith(ref)]
    if len(matches) > 1:
        ids = ", ".join(str(model_id(m)) for m in matches[:5])
        raise ModelNotFoundError(f"model {ref!r} is ambiguous: {len(matches)} models match ({ids})")
    if matches:
        return matches[0]
    try:
        return read_manifest(store, ref)
    except ModelNotFoundError:
        raise ModelNotFoundError(
            f"unknown model {ref!r}: not a model id of `mdp model list` ({len(manifests)} "
            f"model(s) in {store.describe()}), nor a manifest key, URI or file"
        ) from None


# --- comparing two models ---------------------------------------------------------------------

Number = int | float


def numeric_leaves(tree: Any, prefix: str = "") -> dict[str, Number]:
    """Every number in a nested mapping under its dotted path (``test.roc_auc``); lists
    (training curves) and booleans are not metrics and are left out."""
    out: dict[str, Number] = {}
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            out |= numeric_leaves(v, f"{prefix}{k}.")
    elif isinstance(tree, int | float) and not isinstance(tree, bool):
        out[prefix.rstrip(".")] = tree
    return out


def leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Every scalar (lists count as one value) in a nested mapping under its dotted path."""
    if isinstance(tree, Mapping) and tree:
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out |= leaves(v, f"{prefix}{k}.")
        return out
    return {prefix.rstrip("."): tree} if prefix else {}


def compare_metrics(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every metric either model has (its own, its baselines', the oracle's), side by side:
    ``{"metric", "a", "b", "delta"}`` with ``None`` where a model lacks it; delta = b - a."""

    def scores(m: Mapping[str, Any]) -> dict[str, Number]:
        return (
            numeric_leaves(m.get("metrics") or {})
            | numeric_leaves(m.get("baselines") or {}, "baselines.")
            | numeric_leaves(m.get("oracle") or {}, "oracle.")
        )

    sa, sb = scores(a), scores(b)
    rows = []
    for name in sorted(sa.keys() | sb.keys()):
        va, vb = sa.get(name), sb.get(name)
        delta = vb - va if va is not None and vb is not None else None
        rows.append({"metric": name, "a": va, "b": vb, "delta": delta})
    return rows


def changed_fields(a: Any, b: Any) -> dict[str, dict[str, Any]]:
    """The dotted paths whose values differ between two nested mappings (missing = None)."""
    la, lb = leaves(a or {}), leaves(b or {})
    return {
        k: {"a": la.get(k), "b": lb.get(k)}
        for k in sorted(la.keys() | lb.keys())
        if la.get(k) != lb.get(k)
    }


def diff_examples(a: Any, b: Any, key: str = "photo_id", sample: int = 10) -> dict[str, Any]:
    """What changed between two versions' examples (Polars frames), row by row on ``key``:
    added, removed and changed examples (with the columns that changed), label flips and
    split moves, and the per-split counts on each side."""
    import polars as pl

    from my_data_platform.core.datasets import split_counts

    for side, df in (("a", a), ("b", b)):
        if key not in df.columns:
            raise ValueError(f"examples of {side} have no {key!r} column")
        if not df[key].is_unique().all():  # a row-by-row diff would pair duplicates n x m
            dup = df.filter(df[key].is_duplicated())[key].unique().sort().head(5).to_list()
            raise ValueError(f"examples of {side} repeat {key} values (e.g. {dup})")
    ka, kb = a.select(key), b.select(key)
    added = kb.join(ka, on=key, how="anti").sort(key)[key]
    removed = ka.join(kb, on=key, how="anti").sort(key)[key]
    common = [c for c in a.columns if c in b.columns and c != key]
    both = a.select(key, *common).join(b.select(key, *common), on=key, suffix="__b")
    diffs = both.select(key, *[pl.col(c).ne_missing(pl.col(f"{c}__b")).alias(c) for c in common])
    changed_rows = diffs.filter(pl.any_horizontal(common)) if common else diffs.clear()
    by_column = {c: int(diffs[c].sum()) for c in common if diffs[c].any()}
    out: dict[str, Any] = {
        "examples": {"a": a.height, "b": b.height},
        "added": len(added),
        "removed": len(removed),
        "changed": changed_rows.height,
        "unchanged": both.height - changed_rows.height,
        "changed_columns": by_column,
        "columns_added": [c for c in b.columns if c not in a.columns],
        "columns_removed": [c for c in a.columns if c not in b.columns],
        "sample": {
            "added": added.head(sample).to_list(),
            "removed": removed.head(sample).to_list(),
            "changed": changed_rows.sort(key)[key].head(sample).to_list(),
        },
    }
    if "label" in common:
        flips = both.filter(pl.col("label").ne_missing(pl.col("label__b")))
        out["label_changes"] = {
            "total": flips.height,
            "by_transition": {
                f"{la}->{lb}": n
                for la, lb, n in flips.group_by("label", "label__b")
                .len()
                .sort("label", "label__b")
                .iter_rows()
            },
        }
    if "split" in common:
        moved = both.filter(pl.col("split").cast(pl.String) != pl.col("split__b").cast(pl.String))
        out["split_moves"] = moved.height
    if {"split", "label", "author_id"} <= set(a.columns) & set(b.columns):
        ca, cb = split_counts(a), split_counts(b)
        out["splits"] = {
            s: {
                "a": ca[s], "b": cb[s],
                "examples_delta": cb[s]["examples"] - ca[s]["examples"],
                "positive_rate_delta": round(cb[s]["positive_rate"] - ca[s]["positive_rate"], 4),
            }
            for s in ca
        }  # fmt: skip
    return out


def diff_datasets(vs: Any, commit_a: str, commit_b: str) -> dict[str, Any]:
    """Two dataset versions compared: changed objects (what ``mdp datasets diff`` lists),
    the examples row by row (:func:`diff_examples`), the label provenance (labels.json) and
    the code that built each. ``vs`` is a :class:`~my_data_platform.core.versioning.VersionStore`;
    its errors (a commit that is gone) propagate."""
    from my_data_platform.core.datasets import EXAMPLES, LABELS, read_examples
    from my_data_platform.core.versioning import ObjectNotFoundError

    def labels(commit: str) -> Any:
        try:
            return json.loads(vs.get_object(commit, LABELS))
        except ObjectNotFoundError:
            return None

    ca, cb = vs.get_commit(commit_a), vs.get_commit(commit_b)
    out: dict[str, Any] = {
        "a": commit_a,
        "b": commit_b,
        "same_commit": commit_a == commit_b,
        "code_version": {
            "a": ca.metadata.get("code_version"),
            "b": cb.metadata.get("code_version"),
        },
        "objects": [{"path": c.path, "type": c.type} for c in vs.diff(commit_a, commit_b)],
        "label_provenance": changed_fields(labels(commit_a), labels(commit_b)),
    }
    if not out["same_commit"]:
        out["examples"] = diff_examples(
            read_examples(vs.get_object(commit_a, EXAMPLES)),
            read_examples(vs.get_object(commit_b, EXAMPLES)),
        )
    return out


TRAINING_PARAMS = ("config", "seed", "device", "dataset_object", "library_versions")
"""Manifest fields that, with the data and the code, decide the trained weights."""


def diff_models(
    a: Mapping[str, Any], b: Mapping[str, Any], dataset: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Two models side by side: who they are, every metric with its delta, and what differs
    in what they were made from (code, training parameters, labels, ``dataset``: the output
    of :func:`diff_datasets` for their commits)."""

    def who(m: Mapping[str, Any]) -> dict[str, Any]:
        row = comparison_row(m)
        return {
            "model_id": model_id(m),
            "manifest_key": m.get("manifest_key"),
            "trained_at": row["trained_at"],
            "dataset_commit": m.get("dataset_commit"),
            "code_version": m.get("code_version"),
        }

    params = changed_fields(
        {k: a.get(k) for k in TRAINING_PARAMS}, {k: b.get(k) for k in TRAINING_PARAMS}
    )
    return {
        "a": who(a),
        "b": who(b),
        "metrics": compare_metrics(a, b),
        "code_version": {
            "a": a.get("code_version"),
            "b": b.get("code_version"),
            "same": a.get("code_version") == b.get("code_version"),
        },
        "training_params": params,
        "label_provenance": changed_fields(a.get("labels"), b.get("labels")),
        "dataset": dict(dataset) if dataset is not None else None,
    }
