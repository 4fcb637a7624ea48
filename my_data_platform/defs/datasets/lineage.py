"""Which dataset version a consumer reads, and what a published version was built from.

Shared by the dataset, training and exploration assets, the schedules and the CLI.
"""

import datetime as dt
import functools
from collections.abc import Mapping

import dagster as dg

from my_data_platform._build import resolve_code_version
from my_data_platform.core.versioning import VersioningError, VersionStore
from my_data_platform.defs.metadata import latest_metadata

KEY = dg.AssetKey(["datasets", "popularity"])
PHOTOS = dg.AssetKey(["warehouse", "photos"])
IMAGE_LABELS = dg.AssetKey(["labels", "image_content"])
IMAGE_PREDICTIONS = dg.AssetKey(["features", "image_predictions"])
UPSTREAM = [
    dg.AssetKey(["features", "training_examples"]),
    IMAGE_PREDICTIONS,
    IMAGE_LABELS,
    dg.AssetKey(["lake", "photos"]),
    PHOTOS,
]


def dataset_commit(instance: dg.DagsterInstance, vs: VersionStore, ref: str | None) -> str:
    """The dataset version a consumer reads: ``ref`` (a commit id, tag or branch) resolved to
    its commit, or by default the commit this asset last published (from its metadata)."""
    if ref:
        try:
            return vs.resolve_ref(ref)
        except VersioningError as exc:
            raise dg.Failure(f"dataset_commit {ref!r}: {exc}") from exc
    commit = latest_metadata(instance, KEY).get("dataset_commit")
    if not commit:
        raise dg.Failure(
            "the newest datasets/popularity materialization has no dataset_commit; "
            "publish one first (or pass dataset_commit in the run config)"
        )
    return str(commit)


def record_revert(
    instance: dg.DagsterInstance, commit_id: str, metadata: Mapping[str, str]
) -> None:
    """Tell Dagster that ``datasets/popularity`` now points at ``commit_id`` (a rollback).

    Consumers that read "the newest published version" (:func:`dataset_commit` with no ref,
    i.e. training) take it from this asset's newest materialization, so a rollback that only
    moved the branch would go unnoticed. A runless materialization with the new head and the
    rollback's provenance makes the reverted version the one consumers read, and shows the
    rollback in the asset's history.
    """
    md: dict[str, object] = {"dataset_commit": commit_id, "reverted": True}
    md |= {k: str(v) for k, v in metadata.items() if k != "dataset_commit"}
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=KEY,
            description=f"rollback to {str(metadata.get('reverted_to', '?'))[:12]}",
            metadata=md,
        )
    )


@functools.cache
def code_version() -> str:
    """The code that builds datasets and trains models, as provenance records it:
    ``<version>+g<commit>`` fixed into the package at build time, with ``.editable`` or
    ``.source`` when read from a live checkout and ``.dirty`` for uncommitted changes
    (my_data_platform/_build.py). Raises :class:`~my_data_platform._build.CodeVersionError`
    rather than guess; once per process, as the code a process runs does not change."""
    return resolve_code_version()["version"]


def upstream_versions(instance: dg.DagsterInstance) -> dict[str, str]:
    """The newest materialization (event storage id, run id, time) of each upstream asset."""
    out: dict[str, str] = {}
    for key in UPSTREAM:
        records = instance.fetch_materializations(key, limit=1).records
        if records:
            rec = records[0]
            when = dt.datetime.fromtimestamp(rec.timestamp, dt.UTC).isoformat(timespec="seconds")
            out[key.to_user_string()] = (
                f"materialization {rec.storage_id} (run {rec.run_id}, {when})"
            )
    return out


LABEL_KEYS = (
    "labels_sha256",
    "labels_used",
    "label_methods",
    "test_accuracy",
    "n_test",
)
CONSENSUS_KEYS = (
    "annotations",
    "annotators",
    "gold_items",
    "consensus_accuracy_on_gold",
    "krippendorff_alpha",
    "rulebook_version",
)


def label_provenance(instance: dg.DagsterInstance) -> dict[str, object]:
    """Which human labels the image classifier behind a dataset was trained on: the hash of
    the (photo, label) pairs, how many, and the consensus's quality figures. Content only
    (no run or event ids), so an unchanged dataset stays unchanged."""
    out: dict[str, object] = {}
    for key, wanted in ((IMAGE_PREDICTIONS, LABEL_KEYS), (IMAGE_LABELS, CONSENSUS_KEYS)):
        records = instance.fetch_materializations(key, limit=1).records
        if not records:
            continue
        mat = records[0].asset_materialization
        assert mat is not None
        md = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
        out |= {k: md[k] for k in wanted if k in md}
    return out


def dataset_labels(vs: VersionStore, commit: str) -> dict[str, object] | None:
    """The ``labels.json`` of a dataset commit (``None`` for datasets built before it)."""
    import json

    from my_data_platform.core.datasets import LABELS
    from my_data_platform.core.versioning.base import ObjectNotFoundError

    try:
        return json.loads(vs.get_object(commit, LABELS))
    except ObjectNotFoundError:
        return None
