"""FiftyOne views of a published dataset commit and of the model's test-set mistakes on it
(see docs/ml-assets.md)."""

from typing import Any

import dagster as dg
import polars as pl

from my_data_platform.core import exploration as X
from my_data_platform.defs.datasets.lineage import KEY as DATASET_KEY
from my_data_platform.defs.datasets.lineage import dataset_commit
from my_data_platform.defs.datasets.resources import VersioningResource
from my_data_platform.defs.exploration.resources import FiftyOneResource
from my_data_platform.defs.lake.resources import ObjectStoreResource
from my_data_platform.defs.metadata import latest_metadata

KEY = dg.AssetKey(["exploration", "fiftyone_dataset"])
PREDICTIONS_KEY = dg.AssetKey(["training", "fiftyone_predictions"])
MODEL_KEY = dg.AssetKey(["training", "popularity_model"])


def explore_hint(commit_id: str) -> str:
    return f"mdp explore {commit_id}"


class FiftyOneDatasetConfig(dg.Config):
    dataset_commit: str | None = None
    """Build this dataset version (a commit id, tag or branch) instead of the one
    ``datasets/popularity`` last published."""


@dg.asset(
    code_version="1",
    key=KEY,
    deps=[DATASET_KEY],
    group_name="exploration",
    kinds={"fiftyone"},
)
def fiftyone_dataset(
    context: dg.AssetExecutionContext,
    config: FiftyOneDatasetConfig,
    fiftyone: FiftyOneResource,
    versioning: VersioningResource,
    object_store: ObjectStoreResource,
) -> dg.MaterializeResult:
    """The published training dataset as a browsable FiftyOne dataset: every photo with its
    image, its popularity label, its split, its features, what the image classifier saw and a
    caption-similarity index. People use it to check what the model learns from (odd labels,
    broken images, leaky features) before trusting a model trained on it. One FiftyOne dataset
    per dataset commit, so earlier versions stay explorable; open it with ``mdp explore``."""
    vs = versioning.get_store()
    commit = dataset_commit(context.instance, vs, config.dataset_commit)
    fo = fiftyone.get_fiftyone()
    built = fiftyone.dataset_for_commit(fo, vs, object_store.get_store(), commit)
    ds = built.dataset
    context.log.info(
        "FiftyOne dataset %s: %d samples (%d written now)", ds.name, len(ds), built.added
    )
    schema = ds.get_field_schema()
    similarity = X.SIMILARITY_KEY if X.SIMILARITY_KEY in ds.list_brain_runs() else "none"
    return dg.MaterializeResult(
        metadata={
            "dataset_commit": dg.MetadataValue.text(commit),
            "fiftyone_dataset": ds.name,
            "dagster/row_count": len(ds),
            "samples_written": built.added,
            "splits": {t: ds.match_tags(t).count() for t in ("train", "validation", "test")},
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(name=n, type=type(f).__name__) for n, f in schema.items()]
            ),
            "similarity_index": similarity,
            "fiftyone_app": dg.MetadataValue.text(explore_hint(commit)),
            "preview": dg.MetadataValue.md(X.dataset_summary(ds)),
        }
    )


def _mistakes_markdown(rows: list[dict[str, Any]], commit: str) -> str:
    lines = [
        "| photo_id | label | p(popular) | log loss |",
        "|---:|---|---:|---:|",
        *[f"| {r['photo_id']} | {r['label']} | {r['p']:.3f} | {r['loss']:.3f} |" for r in rows],
        "",
        f"To view them: `{explore_hint(commit)}`, then in the App sort by `prediction_loss` "
        "(descending) or filter `prediction_correct` = false.",
    ]
    return "\n".join(lines)


@dg.asset(
    code_version="1",
    key=PREDICTIONS_KEY,
    deps=[MODEL_KEY, KEY],
    group_name="training",
    kinds={"fiftyone"},
)
def fiftyone_predictions(
    context: dg.AssetExecutionContext,
    fiftyone: FiftyOneResource,
    versioning: VersioningResource,
    object_store: ObjectStoreResource,
) -> dg.MaterializeResult:
    """The model's test-set predictions written back onto the photos of the dataset version
    it was trained on, with a confidence and a per-photo loss: the worst mistakes sort first
    in the FiftyOne App, so people can see *which* photos the model gets wrong and why
    (mislabeled, unusual images, missing signal) instead of only an aggregate score."""
    md = latest_metadata(context.instance, MODEL_KEY)
    commit, key = md.get("dataset_commit"), md.get("predictions_key")
    if not commit or not key:
        raise dg.Failure(
            "the newest training/popularity_model materialization lacks "
            f"dataset_commit and/or predictions_key (has: {sorted(md)})"
        )
    store = object_store.get_store()
    predictions = pl.read_parquet(store.get_bytes(key))
    if "split" in predictions.columns:
        predictions = predictions.filter(pl.col("split").cast(pl.String) == "test")
    fo = fiftyone.get_fiftyone()
    built = fiftyone.dataset_for_commit(fo, versioning.get_store(), store, commit)
    run = context.instance.get_latest_materialization_event(MODEL_KEY)
    counts = X.write_predictions(
        built.dataset,
        predictions,
        model={"predictions_key": key, "model_run_id": run.run_id if run else ""},
    )
    if counts["unknown_photo_ids"]:
        context.log.warning(
            "%d predicted photo(s) are not in %s", counts["unknown_photo_ids"], built.dataset.name
        )
    worst = X.worst_mistakes(built.dataset, 5)
    return dg.MaterializeResult(
        metadata={
            "dataset_commit": dg.MetadataValue.text(commit),
            "fiftyone_dataset": built.dataset.name,
            "predictions_key": dg.MetadataValue.text(key),
            "dagster/row_count": counts["written"],
            **{k: v for k, v in counts.items() if k != "written"},
            "worst_mistakes": dg.MetadataValue.md(_mistakes_markdown(worst, commit)),
            "fiftyone_app": dg.MetadataValue.text(explore_hint(commit)),
        }
    )
