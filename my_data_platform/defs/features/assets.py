"""Features: classifier outputs, windowed activity, labels and point-in-time training examples,
each written to the lake and to the warehouse (see docs/ml-assets.md)."""

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import numpy as np
import polars as pl

from my_data_platform.core import features as F
from my_data_platform.core import image_model, text_embeddings
from my_data_platform.core.objectstore import ObjectNotFoundError, ObjectStore
from my_data_platform.core.rulebook import image_content_rulebook
from my_data_platform.core.stats import judge_rate_floor
from my_data_platform.defs.features.inputs import observed_until, scan_lake_events, warehouse_input
from my_data_platform.defs.features.objects import classifier_outputs, feature_object, read_feature
from my_data_platform.defs.features.resources import FeatureSettings
from my_data_platform.defs.judged import judged_check
from my_data_platform.defs.lake.objects import PHOTOS_MANIFEST_OBJECT, read_parquet, write_parquet
from my_data_platform.defs.lake.resources import ObjectStoreResource

GROUP = "features"
IMAGE_ACCURACY_FLOOR = 0.8
MIN_LABELS_TO_TRAIN = 12
"""Fewer labelled photos than this cannot train a classifier: predictions stay null."""


def _publish(store: ObjectStore, name: str, df: pl.DataFrame) -> str:
    key = feature_object(name)
    write_parquet(store, key, df.to_arrow())
    return store.uri(key)


def _events(store: ObjectStore) -> pl.LazyFrame:
    try:
        return scan_lake_events(store)
    except FileNotFoundError as exc:
        raise dg.Failure(str(exc)) from None


@dg.asset(
    key=["features", "caption_embeddings"],
    ins={"photos": warehouse_input("photos", ["photo_id", "caption"])},
    group_name=GROUP,
    kinds={"pytorch", "duckdb", "parquet"},
)
def caption_embeddings(
    context: dg.AssetExecutionContext,
    photos: pl.DataFrame,
    object_store: ObjectStoreResource,
) -> pl.DataFrame:
    """A 384-dimensional meaning of every caption, from a real pretrained text model
    (all-MiniLM-L6-v2, offline). Lets the model and FiftyOne reason about what a caption says,
    not just its length. Incremental: only new or edited captions are encoded."""
    store = object_store.get_store()
    try:
        previous = read_feature(store, "caption_embeddings")
    except ObjectNotFoundError:
        previous = None
    t0 = time.perf_counter()
    table, n_encoded = text_embeddings.embed_incremental(previous, photos)
    secs = time.perf_counter() - t0
    uri = _publish(store, "caption_embeddings", table)
    info = text_embeddings.model_info()
    context.add_output_metadata(
        {
            "model_name": info["model_name"],
            "model_version": info["model_version"],
            "dim": info["dim"],
            "encoded_now": n_encoded,
            "reused": table.height - n_encoded,
            "captions_per_s": round(n_encoded / secs, 1) if n_encoded and secs else 0.0,
            "lake_uri": uri,
        }
    )
    return table


@dg.asset(
    key=["features", "image_predictions"],
    ins={
        "photos": warehouse_input("photos", ["photo_id", "object_key"]),
        "image_labels": dg.AssetIn(["labels", "image_content"]),
    },
    deps=[["lake", "photos"]],
    group_name=GROUP,
    kinds={"pytorch", "duckdb", "parquet"},
    check_specs=[
        dg.AssetCheckSpec(
            "held_out_accuracy_floor",
            asset=["features", "image_predictions"],
            blocking=True,
            description=(
                f"The classifier's held-out accuracy is at least {IMAGE_ACCURACY_FLOOR}: blocks "
                "only when the one-sided 95% upper bound is below the floor, warns when only "
                "the estimate is."
            ),
        )
    ],
)
def image_predictions(
    context: dg.AssetExecutionContext,
    photos: pl.DataFrame,
    image_labels: pl.DataFrame,
    object_store: ObjectStoreResource,
):
    """What each photo shows (the rulebook's labels) with a confidence, from a classifier
    trained on the annotators' consensus labels (``labels/image_content``). Undecodable
    images get a null prediction, never a crash; with no labels at all every prediction is
    null and the run goes on with a warning."""
    store = object_store.get_store()
    classes = image_content_rulebook().label_set
    photos = photos.sort("photo_id")
    pixels, ok = _decoded_pixels(store, photos)
    lab = (
        photos.select("photo_id")
        .with_row_index("i")
        .join(image_labels.select("photo_id", "label"), on="photo_id", how="inner")
    )
    idx = lab["i"].to_numpy()
    keep = ok[idx]  # train only on images that decoded
    n_labelled = int(keep.sum())
    provenance = {
        "labels_sha256": labels_digest(image_labels),
        "labels_used": n_labelled,
        "label_methods": dict(image_labels["method"].value_counts().sort("method").iter_rows())
        if "method" in image_labels.columns
        else {},
    }
    if n_labelled < MIN_LABELS_TO_TRAIN:
        context.log.warning(
            "only %d labelled photos (need %d): image content predictions are null; import "
            "annotations (README, 'Use your own data') to train the classifier",
            n_labelled,
            MIN_LABELS_TO_TRAIN,
        )
        frame = image_model.predictions_frame(
            photos["photo_id"],
            np.zeros((photos.height, len(classes)), np.float32),
            np.zeros(photos.height, bool),
            classes,
        )
        uri = _publish(store, "image_predictions", frame)
        _publish(store, "image_content_candidates", labelling_candidates(frame, image_labels))
        yield dg.Output(
            frame, metadata={"labelled_photos": n_labelled, "lake_uri": uri, **provenance}
        )
        yield judged_check(judge_rate_floor(0, 0, IMAGE_ACCURACY_FLOOR), "held_out_accuracy_floor")
        return
    device = image_model.pick_device()
    model, metrics = image_model.train_image_classifier(
        pixels[idx[keep]], lab["label"].to_numpy()[keep], seed=0, device=device, classes=classes
    )
    probs = image_model.predict(model, pixels, device=device)
    frame = image_model.predictions_frame(photos["photo_id"], probs, ok, classes)
    blob = image_model.save_model(model)
    model_key = f"models/image_classifier/{hashlib.sha256(blob).hexdigest()[:16]}.pt"
    store.put_bytes(model_key, blob)
    uri = _publish(store, "image_predictions", frame)
    _publish(store, "image_content_candidates", labelling_candidates(frame, image_labels))
    n_test = int(metrics["n_test"])
    test_acc = float(metrics["test_accuracy"] or 0.0)
    judgement = judge_rate_floor(round(test_acc * n_test), n_test, IMAGE_ACCURACY_FLOOR)
    metadata = {
        "train_accuracy": float(metrics["train_accuracy"]),
        "val_accuracy": float(metrics["val_accuracy"] or 0.0),
        "test_accuracy": test_acc,
        "labelled_photos": n_labelled,
        "n_train": int(metrics["n_train"]),
        "n_test": n_test,
        "undecodable": int((~ok).sum()),
        "device": device,
        "model_uri": store.uri(model_key),
        "lake_uri": uri,
        "training_seconds": round(float(metrics.get("seconds", 0.0)), 2),
        **provenance,
    }
    context.log.info("image classifier: held-out accuracy %s", judgement.describe())
    yield dg.Output(frame, metadata=metadata)
    yield judged_check(judgement, "held_out_accuracy_floor")


def labelling_candidates(predictions: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Per photo: the classifier's class and confidence, and how many annotators answered and
    how far they agreed; ``mdp labels export`` ranks these to pick what to label next."""
    return (
        predictions.select("photo_id", "predicted_class", "confidence")
        .join(labels.select("photo_id", "agreement", "n_annotations"), on="photo_id", how="left")
        .with_columns(pl.col("n_annotations").fill_null(0))
    )


def labels_digest(labels: pl.DataFrame) -> str:
    """A content hash of the (photo_id, label) pairs a classifier trained on: two models
    trained on the same labels share it, whatever produced them."""
    pairs = labels.select("photo_id", "label").sort("photo_id")
    return hashlib.sha256(pairs.write_csv().encode()).hexdigest()


def _decoded_pixels(store: ObjectStore, photos: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Every photo's pixels (zeros where the image did not decode) and the ``ok`` mask."""
    try:
        manifest = pl.from_arrow(read_parquet(store, PHOTOS_MANIFEST_OBJECT))
    except ObjectNotFoundError:
        raise dg.Failure("lake/photos manifest is missing: materialize lake/photos first") from None
    assert isinstance(manifest, pl.DataFrame)
    decodable = set(manifest.filter(pl.col("decodable"))["key"].to_list())
    wanted = [k if k in decodable else None for k in photos["object_key"].to_list()]
    with ThreadPoolExecutor(max_workers=4) as pool:
        datas = list(pool.map(lambda k: store.get_bytes(k) if k else None, wanted))
    return image_model.decode_batch(datas)


@dg.asset(
    key=["features", "photo_activity"],
    ins={"photos": warehouse_input("photos", ["photo_id", "user_id", "uploaded_at"])},
    deps=[["lake", "events"]],
    group_name=GROUP,
    kinds={"polars", "duckdb", "parquet"},
)
def photo_activity(
    context: dg.AssetExecutionContext,
    photos: pl.DataFrame,
    object_store: ObjectStoreResource,
    feature_settings: FeatureSettings,
) -> pl.DataFrame:
    """How every photo and its author are doing right now: views, likes, comments, shares,
    like rate, dwell and unique users over the last 1, 7 and 28 days, as of the newest
    observed event. The same definition gives training rows and online answers."""
    store = object_store.get_store()
    events = _events(store)
    as_of = observed_until(events)
    engine = F.resolve_engine(feature_settings.engine)
    queries = photos.lazy().select("photo_id", pl.lit(as_of).alias("as_of"))
    t0 = time.perf_counter()
    df = F.collect(
        F.activity_features(events, photos.lazy(), queries, feature_settings.config()), engine
    ).sort("photo_id")
    context.add_output_metadata(
        {
            "as_of": as_of.isoformat(),
            "engine": engine,
            "seconds": round(time.perf_counter() - t0, 3),
            "lake_uri": _publish(store, "photo_activity", df),
        }
    )
    return df


@dg.asset(
    key=["features", "labels"],
    ins={"photos": warehouse_input("photos", ["photo_id", "uploaded_at"])},
    deps=[["lake", "events"]],
    group_name=GROUP,
    kinds={"polars", "duckdb", "parquet"},
)
def labels(
    context: dg.AssetExecutionContext,
    photos: pl.DataFrame,
    object_store: ObjectStoreResource,
    feature_settings: FeatureSettings,
) -> pl.DataFrame:
    """Which photos became popular, learned from user feedback: engagement (likes + comments
    + shares) in the first hours after upload against a threshold. Photos too young to judge
    have no label yet, which is different from 'not popular'."""
    store = object_store.get_store()
    events = _events(store)
    cfg = feature_settings.config()
    until = observed_until(events)
    df = F.collect(
        F.labels(events, photos.lazy(), cfg, until), F.resolve_engine(feature_settings.engine)
    )
    labelled = df.filter(pl.col("label_status") == "labelled")
    positives = int(labelled["label"].sum() or 0)
    context.add_output_metadata(
        {
            "observed_until": until.isoformat(),
            "label_window_hours": cfg.label_window_hours,
            "label_min_engagement": cfg.label_min_engagement,
            "labelled": labelled.height,
            "too_young": df.height - labelled.height,
            "positives": positives,
            "positive_rate": round(positives / labelled.height, 4) if labelled.height else 0.0,
            "lake_uri": _publish(store, "labels", df),
        }
    )
    return df


@dg.asset(
    key=["features", "training_examples"],
    ins={
        "photos": warehouse_input("photos", ["photo_id", "user_id", "uploaded_at", "caption"]),
        "users": warehouse_input("users", ["user_id", "joined_at", "follower_count"]),
    },
    deps=[
        ["lake", "events"],
        ["features", "labels"],
        ["features", "image_predictions"],
        ["features", "caption_embeddings"],
    ],
    group_name=GROUP,
    kinds={"polars", "duckdb", "parquet"},
)
def training_examples(
    context: dg.AssetExecutionContext,
    photos: pl.DataFrame,
    users: pl.DataFrame,
    object_store: ObjectStoreResource,
    feature_settings: FeatureSettings,
) -> pl.DataFrame:
    """One row per labelled photo with the features exactly as they were known at prediction
    time (upload + delay): never an event from after that moment, so offline accuracy is
    what the model will see online. Joined with metadata and classifier outputs."""
    store = object_store.get_store()
    events = _events(store)
    cfg = feature_settings.config()
    lab = read_feature(store, "labels")
    extra = classifier_outputs(store)
    t0 = time.perf_counter()
    df = F.collect(
        F.training_examples(events, photos.lazy(), users.lazy(), lab, cfg, extra),
        F.resolve_engine(feature_settings.engine),
    )
    context.add_output_metadata(
        {
            "prediction_delay_hours": cfg.prediction_delay_hours,
            "positive_rate": round(float(df["label"].mean() or 0.0), 4),
            "feature_columns": len(F.feature_columns(cfg)),
            "seconds": round(time.perf_counter() - t0, 3),
            "lake_uri": _publish(store, "training_examples", df),
        }
    )
    return df
