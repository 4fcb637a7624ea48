"""Features: classifier outputs, windowed activity, labels and point-in-time training examples,
each written to the lake and to the warehouse (see docs/ml-assets.md)."""

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import numpy as np
import polars as pl

from my_data_platform.core import features as F
from my_data_platform.core import image_embeddings as image_embeddings_core
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
    code_version="1",
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


ENCODER_SEED = 0
PROBE_SEED = 0


@dg.asset(
    code_version="1",
    key=["features", "image_embeddings"],
    ins={"photos": warehouse_input("photos", ["photo_id", "object_key", "image_sha256"])},
    deps=[["lake", "photos"]],
    group_name=GROUP,
    kinds={"pytorch", "duckdb", "parquet"},
)
def image_embeddings(
    context: dg.AssetExecutionContext,
    photos: pl.DataFrame,
    object_store: ObjectStoreResource,
) -> pl.DataFrame:
    """What every landed photo looks like, as a 64-number embedding from an encoder trained on
    all the photos without a single label (contrastive learning with augmentations). Labels
    are scarce and the encoder needs none; the content classifier is then a small probe on
    top. Deterministic on the CPU; retrained only when the set of decodable images changes."""
    store = object_store.get_store()
    photos = photos.sort("photo_id")
    pixels, ok = _decoded_pixels(store, photos)
    fingerprint = _image_set_fingerprint(photos, ok)
    previous = _previous_embeddings(store)
    if previous is not None and previous[1].get("fingerprint") == fingerprint:
        table, info = previous
        context.log.info("image set unchanged: reusing encoder %s", info["encoder_key"])
        context.add_output_metadata({**info, "reused": True})
        return table
    device = image_model.pick_device()
    encoder, metrics = image_embeddings_core.train_encoder(
        pixels[ok], seed=ENCODER_SEED, device=device
    )
    emb = image_embeddings_core.embed(encoder, pixels, device=device)
    blob = image_embeddings_core.save_encoder(encoder)
    encoder_key = f"models/image_encoder/{hashlib.sha256(blob).hexdigest()[:16]}.pt"
    store.put_bytes(encoder_key, blob)
    table = pl.DataFrame(
        {
            "photo_id": photos["photo_id"],
            "embedding": pl.Series(emb).cast(pl.List(pl.Float32)),
            "ok": ok,
        }
    ).select(
        "photo_id",
        pl.when(pl.col("ok")).then(pl.col("embedding")).alias("embedding"),  # undecodable: null
    )
    info = {
        "fingerprint": fingerprint,
        "encoder_key": encoder_key,
        "encoder_uri": store.uri(encoder_key),
        "images": int(ok.sum()),
        "undecodable": int((~ok).sum()),
        "dim": int(emb.shape[1]),
        "epochs": int(metrics.get("epochs", 0)),
        "final_loss": float(metrics["loss_curve"][-1]) if metrics.get("loss_curve") else None,
        "training_seconds": round(float(metrics.get("seconds", 0.0)), 2),
        "device": device,
        "seed": ENCODER_SEED,
    }
    _publish(store, "image_embeddings", table)
    store.put_bytes(EMBEDDINGS_INFO, json.dumps(info, sort_keys=True).encode())
    context.add_output_metadata({**info, "reused": False, "lake_uri": store.uri(EMBEDDINGS_INFO)})
    return table


EMBEDDINGS_INFO = "lake/features/image_embeddings.json"


def _image_set_fingerprint(photos: pl.DataFrame, ok: np.ndarray) -> str:
    """The decodable images (by content hash) and the encoder's settings: equal fingerprints
    give equal encoders, so the training can be skipped."""
    keys = photos.select("photo_id", "image_sha256").filter(pl.Series(ok))
    settings = f"seed={ENCODER_SEED};format={image_embeddings_core.ENCODER_FORMAT_VERSION}"
    return hashlib.sha256((keys.write_csv() + settings).encode()).hexdigest()


def _previous_embeddings(store: ObjectStore) -> tuple[pl.DataFrame, dict] | None:
    try:
        info = json.loads(store.get_bytes(EMBEDDINGS_INFO))
        table = read_feature(store, "image_embeddings")
        store.get_bytes(info["encoder_key"])  # the encoder must still be there
    except (ObjectNotFoundError, ValueError, KeyError):
        return None
    return table, info


@dg.asset(
    code_version="1",
    key=["features", "image_predictions"],
    ins={
        "photos": warehouse_input("photos", ["photo_id", "object_key"]),
        "image_labels": dg.AssetIn(["labels", "image_content"]),
    },
    deps=[["lake", "photos"], ["features", "image_embeddings"]],
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
    """What each photo shows (the rulebook's labels) with a confidence: a linear probe on the
    self-supervised image embeddings, trained on the annotators' consensus labels (each
    weighted by its confidence, with augmented views). Undecodable images get a null
    prediction, never a crash; with too few labels every prediction is null and the run goes
    on with a warning."""
    store = object_store.get_store()
    classes = image_content_rulebook().label_set
    photos = photos.sort("photo_id")
    emb_table = read_feature(store, "image_embeddings")
    info = json.loads(store.get_bytes(EMBEDDINGS_INFO))
    encoder = image_embeddings_core.load_encoder(store.get_bytes(info["encoder_key"]))
    joined = photos.select("photo_id").join(emb_table, on="photo_id", how="left")
    ok = joined["embedding"].is_not_null().to_numpy()
    dim = int(info["dim"])
    emb = np.zeros((photos.height, dim), np.float32)
    if ok.any():
        present = joined["embedding"].drop_nulls().list.to_array(dim)
        emb[ok] = present.to_numpy().astype(np.float32, copy=False)
    lab = (
        photos.select("photo_id")
        .with_row_index("i")
        .join(image_labels.select("photo_id", "label", "confidence"), on="photo_id", how="inner")
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
        "encoder_key": info["encoder_key"],
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
    sel = idx[keep]
    # only the labelled photos are decoded again: the probe's augmented views need pixels
    label_pixels, _ = _decoded_pixels(store, photos[sel.tolist()])
    device = image_model.pick_device()
    probe, metrics = image_embeddings_core.train_probe(
        encoder,
        label_pixels,
        lab["label"].to_numpy()[keep],
        classes,
        seed=PROBE_SEED,
        sample_weight=lab["confidence"].to_numpy()[keep].astype(np.float64),
        embeddings=emb[sel],
        device=device,
    )
    probs = image_embeddings_core.predict_probe(probe, emb)
    frame = image_model.predictions_frame(photos["photo_id"], probs, ok, classes)
    blob = image_embeddings_core.save_probe(probe)
    model_key = f"models/image_probe/{hashlib.sha256(blob).hexdigest()[:16]}.pt"
    store.put_bytes(model_key, blob)
    uri = _publish(store, "image_predictions", frame)
    _publish(store, "image_content_candidates", labelling_candidates(frame, image_labels))
    n_test = int(metrics.get("held_out_n") or 0)
    judgement = judge_rate_floor(
        int(metrics.get("held_out_n_correct") or 0), n_test, IMAGE_ACCURACY_FLOOR
    )
    metadata = {
        "held_out_accuracy": metrics.get("held_out_accuracy"),
        "held_out_n": n_test,
        "labelled_photos": n_labelled,
        "class_counts": dg.MetadataValue.json(metrics.get("class_counts", {})),
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
    code_version="1",
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
    code_version="1",
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
    code_version="1",
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
