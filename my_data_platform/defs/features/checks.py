"""Audits of the feature tables: completeness, ranges, label balance, reconciliation."""

import dagster as dg
import polars as pl

from my_data_platform.core import features as F
from my_data_platform.core.datasets import judge_rate_within
from my_data_platform.defs.features.objects import read_feature
from my_data_platform.defs.judged import judged_check
from my_data_platform.defs.lake.resources import ObjectStoreResource

EXAMPLES = dg.AssetKey(["features", "training_examples"])
LABELS = dg.AssetKey(["features", "labels"])
ACTIVITY = dg.AssetKey(["features", "photo_activity"])
LABEL_BALANCE_BOUNDS = (0.05, 0.95)
RANGES = "Counts, rates and dwell are >= 0 and finite."


def _read(store: ObjectStoreResource, name: str) -> pl.DataFrame:
    return read_feature(store.get_store(), name)


def _range_violations(df: pl.DataFrame) -> dict[str, int]:
    """Counts, dwell and rates are >= 0 and finite (a like rate is likes per view: a photo can
    collect likes from people whose view was never logged, so it may exceed 1)."""
    bad: dict[str, int] = {}
    for c in df.columns:
        if c.startswith(("photo_", "author_")) and ("_rate_" in c or "dwell" in c):
            n = df.filter(~(pl.col(c).is_finite() & (pl.col(c) >= 0))).height
        elif c.startswith(("photo_", "author_")) and c != "photo_id" and c != "photo_age_hours":
            n = df.filter(pl.col(c) < 0).height
        else:
            continue
        if n:
            bad[c] = n
    return bad


@dg.asset_check(asset=EXAMPLES, blocking=True, description="No nulls in features or labels.")
def training_examples_complete(object_store: ObjectStoreResource) -> dg.AssetCheckResult:
    df = _read(object_store, "training_examples")
    required = ["photo_id", "prediction_ts", "label", *F.FEATURE_COLUMNS]
    nulls = {c: n for c in required if c in df.columns and (n := df[c].null_count())}
    missing = [c for c in required if c not in df.columns]
    return dg.AssetCheckResult(
        passed=not nulls and not missing,
        metadata={"null_counts": nulls, "missing_columns": missing, "rows": df.height},
    )


@dg.asset_check(asset=EXAMPLES, blocking=True, description=RANGES)
def training_examples_ranges(object_store: ObjectStoreResource) -> dg.AssetCheckResult:
    bad = _range_violations(_read(object_store, "training_examples"))
    return dg.AssetCheckResult(passed=not bad, metadata={"violations": bad})


@dg.asset_check(
    asset=EXAMPLES,
    blocking=True,
    description="One example per labelled photo, no more, no less, and no duplicates.",
)
def training_examples_reconcile(object_store: ObjectStoreResource) -> dg.AssetCheckResult:
    ex = _read(object_store, "training_examples")
    lab = _read(object_store, "labels").filter(pl.col("label_status") == "labelled")
    same = set(ex["photo_id"].to_list()) == set(lab["photo_id"].to_list())
    dupes = ex.height - ex["photo_id"].n_unique()
    return dg.AssetCheckResult(
        passed=same and dupes == 0 and ex.height == lab.height,
        metadata={"examples": ex.height, "labelled_photos": lab.height, "duplicates": dupes},
    )


@dg.asset_check(
    asset=LABELS,
    description=(
        "Label balance: positives within 5%..95% of labels, judged with one-sided 95% Wilson "
        "bounds (warn when only the estimate is outside, error when the bound is; never blocks)."
    ),
)
def label_balance(object_store: ObjectStoreResource) -> dg.AssetCheckResult:
    lab = _read(object_store, "labels").filter(pl.col("label_status") == "labelled")
    positives = int(lab["label"].sum() or 0) if lab.height else 0
    judgement = judge_rate_within(positives, lab.height, LABEL_BALANCE_BOUNDS)
    rate = positives / lab.height if lab.height else 0.0
    return judged_check(
        judgement,
        labelled=lab.height,
        positive_rate=round(rate, 4),
        bounds=list(LABEL_BALANCE_BOUNDS),
    )


@dg.asset_check(asset=ACTIVITY, blocking=True, description=RANGES)
def photo_activity_ranges(object_store: ObjectStoreResource) -> dg.AssetCheckResult:
    df = _read(object_store, "photo_activity")
    bad = _range_violations(df)
    nulls = {c: n for c in df.columns if c != "photo_age_hours" and (n := df[c].null_count())}
    return dg.AssetCheckResult(
        passed=not bad and not nulls, metadata={"violations": bad, "null_counts": nulls}
    )
