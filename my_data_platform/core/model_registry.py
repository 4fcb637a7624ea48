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
