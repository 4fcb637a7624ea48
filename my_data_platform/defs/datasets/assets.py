"""The versioned training dataset, published write-audit-publish: written to a run branch,
audited there, merged into ``main`` only when every audit passes (see docs/ml-assets.md)."""

import datetime as dt
import json
from typing import NoReturn

import dagster as dg
import duckdb
import polars as pl

from my_data_platform.core import datasets as D
from my_data_platform.core import features as F
from my_data_platform.core.maintenance import current_snapshot
from my_data_platform.core.versioning import (
    DEFAULT_BRANCH,
    AuthenticationError,
    BackendUnavailableError,
    CommitConflictError,
    HookFailedError,
    MergeConflictError,
    ProtectedBranchError,
    VersioningError,
    VersionStore,
)
from my_data_platform.core.warehouse import CATALOG_ALIAS
from my_data_platform.defs.crashpoints import crash_point
from my_data_platform.defs.datasets.lineage import (
    KEY,
    PHOTOS,
    UPSTREAM,
    code_version,
    label_provenance,
    upstream_versions,
)
from my_data_platform.defs.datasets.resources import VersioningResource
from my_data_platform.defs.features.inputs import scan_lake_events, warehouse_input
from my_data_platform.defs.features.objects import read_feature
from my_data_platform.defs.features.resources import FeatureSettings
from my_data_platform.defs.lake.objects import PHOTOS_MANIFEST_OBJECT, read_parquet
from my_data_platform.defs.lake.resources import ObjectStoreResource
from my_data_platform.defs.metadata import png_metadata
from my_data_platform.defs.warehouse.resources import WarehouseResource

SNAPSHOT_METADATA = "warehouse_snapshot"
"""Dataset commit metadata: the DuckLake snapshot the dataset was read from. Warehouse
maintenance never expires a snapshot a published dataset names (docs/maintenance.md)."""

AUDITS = {
    "schema": "Every required column is present and the dataset is not empty.",
    "no_nulls": "No nulls in ids, label, split or features.",
    "splits_disjoint": "No photo and no author appears in two splits.",
    "label_balance": "Positive rate within bounds and every split non-empty.",
    "features_not_after_prediction_time": (
        "Features of sampled examples, recomputed from raw events as of prediction time, match."
    ),
    "images_referenced": "Every example's image is in the lake's image manifest.",
}


@dg.asset(
    code_version="1",
    key=KEY,
    ins={"photos": warehouse_input("photos", ["photo_id", "user_id", "uploaded_at", "object_key"])},
    deps=[k for k in UPSTREAM if k != PHOTOS],
    group_name="datasets",
    kinds={"lakefs", "parquet"},
    check_specs=[
        dg.AssetCheckSpec(name, asset=KEY, blocking=True, description=desc)
        for name, desc in AUDITS.items()
    ],
)
def popularity_dataset(
    context: dg.AssetExecutionContext,
    photos: pl.DataFrame,
    object_store: ObjectStoreResource,
    versioning: VersioningResource,
    feature_settings: FeatureSettings,
    warehouse: WarehouseResource,
):
    """The training dataset for the popularity model: point-in-time features, labels from
    feedback, image references and deterministic author-disjoint splits, as one immutable,
    audited commit. Every model names the commit it was trained on, so it can be rebuilt."""
    store = object_store.get_store()
    vs = versioning.get_store()
    # The snapshot the photos input was just read at: warehouse writers replace whole day
    # slices, so the first snapshot at or after the read holds what the dataset was built from.
    with warehouse.connect() as conn:
        snapshot = warehouse_snapshot(conn)
    examples = read_feature(store, "training_examples")
    manifest = pl.from_arrow(read_parquet(store, PHOTOS_MANIFEST_OBJECT))
    assert isinstance(manifest, pl.DataFrame)
    upstream = upstream_versions(context.instance)
    objects, _, _ = D.build_dataset(examples, photos, manifest, upstream)
    cfg = feature_settings.config()
    labels_used = {
        "popularity": {
            "source": "user feedback (features/labels)",
            "label_window_hours": cfg.label_window_hours,
            "label_min_engagement": cfg.label_min_engagement,
        },
        "image_content": label_provenance(context.instance),
    }
    objects[D.LABELS] = json.dumps(labels_used, indent=2, sort_keys=True, default=str).encode()

    branch = f"run-{context.run.run_id[:8]}-{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}"
    vs.create_branch(branch, DEFAULT_BRANCH)
    vs.put_objects(branch, objects)
    crash_point("dataset_commit.start")

    # audit the branch: read back what was written, never the in-memory copy
    staged = D.read_examples(vs.get_object(branch, D.EXAMPLES))
    staged_images = D.read_examples(vs.get_object(branch, D.IMAGES))
    sample = D.audit_sample(staged)
    recomputed = F.collect(
        F.activity_features(
            scan_lake_events(store),
            photos.lazy(),
            sample.lazy().select("photo_id", pl.col("prediction_ts").alias("as_of")),
            feature_settings.config(),
        ),
        F.resolve_engine(feature_settings.engine),
    )
    audits = D.audit_dataset(staged, staged_images, recomputed=recomputed)
    for a in audits:
        # a warn (label balance out of bounds by its estimate only) is shown, never blocks
        yield dg.AssetCheckResult(
            check_name=a.name,
            passed=a.passed and not a.warn,
            severity=dg.AssetCheckSeverity.WARN if a.warn else dg.AssetCheckSeverity.ERROR,
            metadata=dict(a.detail),
        )
    failed = [a.name for a in audits if not a.passed]
    counts = D.split_counts(staged)
    base_md = {
        "branch": branch,
        "repository": vs.describe(),
        "dagster/row_count": staged.height,
        "examples": staged.height,
        "images": staged_images.height,
        "positive_rate": round(float(staged["label"].mean() or 0.0), 4),
        "splits": counts,
    }
    balance = D.label_balance_png(counts)
    if balance:
        base_md["label_balance"] = png_metadata(balance, "label balance")
    if failed:
        context.log.error("audit failed on branch %s: %s; main untouched", branch, failed)
        # an observation puts the outcome on the asset itself without marking it updated
        context.log_event(
            dg.AssetObservation(
                asset_key=KEY,
                metadata={**base_md, "failed_checks": failed, "published": False},
            )
        )
        raise dg.Failure(
            description=f"dataset audit failed: {', '.join(failed)}; main is untouched and "
            f"branch {branch!r} is kept for debugging",
            metadata={**base_md, "failed_checks": failed, "published": False},
        )

    if not vs.uncommitted(branch):
        # identical to what main already holds: nothing to publish, main stays audited
        head = vs.branch_head(DEFAULT_BRANCH)
        deleted = _drop_run_branch(context, vs, branch)
        context.log.info("dataset unchanged; main stays at %s", head)
        tag = _ensure_tag(context, vs, head)
        yield dg.MaterializeResult(
            metadata={
                **base_md,
                "dataset_commit": head,
                "tag": tag,
                "published": False,
                "unchanged": True,
                "branch_deleted": deleted,
                "card": dg.MetadataValue.md(vs.get_object(head, D.CARD).decode()),
            }
        )
        return
    step = "commit"
    try:
        commit = vs.commit(
            branch,
            f"popularity dataset from Dagster run {context.run.run_id}",
            metadata={
                "dagster_run_id": context.run.run_id,
                "code_version": code_version(),
                "examples": str(staged.height),
                SNAPSHOT_METADATA: str(snapshot),
                **{f"upstream:{k}": v for k, v in upstream.items()},
            },
        )
        crash_point("dataset_commit.middle")
        step = "merge"
        main_commit = vs.merge(branch, DEFAULT_BRANCH, message=f"publish {branch}")
    except PUBLISH_REFUSED as e:
        _publish_refused(context, branch, step, e, base_md)
    crash_point("dataset_commit.end")
    tag = _ensure_tag(context, vs, main_commit)
    deleted = _drop_run_branch(context, vs, branch)
    context.log.info("published dataset commit %s (tag %s)", main_commit, tag)
    yield dg.MaterializeResult(
        metadata={
            **base_md,
            "dataset_commit": main_commit,
            "branch_commit": commit.id,
            "tag": tag,
            "published": True,
            "branch_deleted": deleted,
            "card": dg.MetadataValue.md(vs.get_object(main_commit, D.CARD).decode()),
        }
    )


PUBLISH_REFUSED = (
    ProtectedBranchError,
    HookFailedError,
    CommitConflictError,
    MergeConflictError,
    BackendUnavailableError,
)
"""Why a commit or merge of an audited dataset can be refused. Each fails the run with the
backend's reason and keeps the run branch, so the audited data can be published once the
cause is fixed; anything else is a bug and propagates as is."""

_WHAT_NEXT = {
    ProtectedBranchError: "publish once the protection rules allow it",
    HookFailedError: "fix what the hook reports and run again",
    CommitConflictError: "make sure no other writer uses the branch, then run again",
    MergeConflictError: "main changed the same files since the branch was made: run again",
    AuthenticationError: "fix the lakeFS credentials or their policies, then run again",
    BackendUnavailableError: "run again once the versioning backend is reachable",
}


def _publish_refused(
    context: dg.AssetExecutionContext,
    branch: str,
    step: str,
    error: VersioningError,
    base_md: dict,
) -> NoReturn:
    """Fail the run with the backend's reason; main is untouched (a refused commit or merge
    changes nothing) and the run branch is kept with the audited data, for debugging or to
    publish by hand."""
    kept = "staged" if step == "commit" else "committed"
    # the first match: subclasses (AuthenticationError) come before their bases
    what_next = next(v for k, v in _WHAT_NEXT.items() if isinstance(error, k))
    md = {
        **base_md,
        "published": False,
        "failed_step": step,
        "error": type(error).__name__,
        "reason": str(error),
    }
    if isinstance(error, HookFailedError):
        md["hook_message"] = error.hook_message
    if isinstance(error, MergeConflictError):
        md["conflicting_paths"] = error.paths
    context.log.error("dataset %s on branch %s refused: %s; main untouched", step, branch, error)
    context.log_event(dg.AssetObservation(asset_key=KEY, metadata=md))
    raise dg.Failure(
        # the backend's reason last: a hook's output can run over several lines
        description=f"dataset not published: the {step} was refused; main is untouched and "
        f"branch {branch!r} is kept with the audited dataset {kept} on it ({what_next}). "
        f"{error}",
        metadata=md,
    ) from error


def _drop_run_branch(context: dg.AssetExecutionContext, vs: VersionStore, branch: str) -> bool:
    """Delete the run branch once main holds its data. A backend that refuses the delete (a
    pre-delete-branch hook, branch protection, a policy) does not undo a publish: warn and keep
    the branch, rather than fail a run whose dataset is on main."""
    try:
        vs.delete_branch(branch)
    except (ProtectedBranchError, HookFailedError, AuthenticationError) as e:
        context.log.warning("run branch %s kept: deleting it was refused: %s", branch, e)
        return False
    return True


def warehouse_snapshot(conn: duckdb.DuckDBPyConnection) -> int:
    """The DuckLake snapshot a connection reads (the warehouse's newest)."""
    return current_snapshot(conn, CATALOG_ALIAS)


def _ensure_tag(context: dg.AssetExecutionContext, vs: VersionStore, commit: str) -> str:
    """The ``popularity-*`` tag of a published commit, created if missing: a run killed between
    the merge and the tag leaves main tagless, and the rerun (which finds the dataset unchanged)
    tags it then."""
    for name, target in sorted(vs.list_tags().items()):
        if target == commit and name.startswith("popularity-"):
            return name
    tag = f"popularity-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}-{commit[:8]}"
    vs.create_tag(tag, commit)
    context.log.info("tagged dataset commit %s as %s", commit, tag)
    return tag
