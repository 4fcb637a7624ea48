"""A dataset version as a FiftyOne dataset (one per commit, built idempotently), and the
model's mistakes written back to it. Pure Python: callers pass a connected ``fiftyone`` module
(see :func:`connect_fiftyone`; design notes in docs/ml-assets.md)."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import polars as pl

from my_data_platform.core import datasets as D
from my_data_platform.core.fsutil import atomic_write_bytes
from my_data_platform.core.objectstore import LocalObjectStore, ObjectStore, validate_key
from my_data_platform.core.versioning import VersionStore

DATASET_PREFIX = "popularity"
POSITIVE, NEGATIVE = "popular", "not_popular"
SIMILARITY_KEY = "caption_similarity"
PREDICTION_FIELDS = ("popularity_prediction", "p_popular", "prediction_loss", "prediction_correct")
# columns of examples.parquet that are identifiers or outputs, never features
_NOT_FEATURES = {"photo_id", "author_id", "label", "confidence"}
_LOSS_EPS = 1e-7

ImagePaths = Callable[[Sequence[str]], list[str]]
"""Object keys of images -> local file paths the FiftyOne app can serve."""


class ExplorationError(RuntimeError):
    """The FiftyOne dataset cannot be built or updated as asked; the message says why."""


def dataset_name(commit_id: str) -> str:
    """The FiftyOne dataset of one dataset commit."""
    if len(commit_id) < 12 or not commit_id.isalnum():
        raise ExplorationError(f"not a dataset commit id: {commit_id!r}")
    return f"{DATASET_PREFIX}-{commit_id[:12]}"


# connection -----------------------------------------------------------------------------------


def connect_fiftyone(database_uri: str, database_name: str = "fiftyone") -> ModuleType:
    """The ``fiftyone`` module, connected to ``database_uri``/``database_name``.

    FiftyOne reads its database from the environment when it is first imported and keeps one
    connection per process; the caller configures that environment first (the Dagster resource
    does, through the settings). If this process is connected elsewhere (a test session that
    touched two data dirs, or nothing configured the environment), it is reconnected, unless an
    App served from this process still uses the old database: then we refuse.
    """
    import fiftyone as fo

    if fo.config.database_uri == database_uri and fo.config.database_name == database_name:
        return fo
    from fiftyone.core.session import session as fos

    if any(fos._subscribed_sessions.values()):
        raise ExplorationError(
            f"fiftyone in this process is connected to {_redact(fo.config.database_uri)} "
            f"(database {fo.config.database_name!r}) and serves an App from it; refusing to "
            f"switch to {_redact(database_uri)} (database {database_name!r}). "
            "Use a separate process."
        )
    import fiftyone.core.odm.database as fodb

    _drop_connection(fodb)
    fodb._connection_kwargs.clear()
    fo.config.database_uri = database_uri
    fo.config.database_name = database_name
    # cached Dataset/Sample objects belong to the old database
    fo.Dataset._instances.clear()
    fo.Sample._instances.clear()
    return fo


def disconnect_fiftyone() -> None:
    """Close this process's FiftyOne connection (before its mongod is stopped)."""
    if "fiftyone" in sys.modules:
        import fiftyone.core.odm.database as fodb

        _drop_connection(fodb)


def _drop_connection(fodb: ModuleType) -> None:
    """Close FiftyOne's client and forget what holds it: its repository factory caches the
    database handle and collections of the client it was built with (delegated operations,
    the execution store), which a later ``Dataset.delete`` would use after the close ("Cannot
    use MongoClient after close")."""
    fodb._disconnect()
    import fiftyone.factory.repo_factory as repo_factory

    repo_factory.RepositoryFactory.repos.clear()
    repo_factory._db = None  # its cached database handle of the closed client


def _redact(uri: str | None) -> str:
    """A URI without its password, for messages."""
    if not uri or "@" not in uri:
        return str(uri)
    scheme, _, rest = uri.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


# media ----------------------------------------------------------------------------------------


def local_media(store: ObjectStore, cache_dir: str | Path, workers: int = 8) -> ImagePaths:
    """Image paths for the app: the files themselves for a local store; for S3, copies in
    ``cache_dir`` (downloaded once, in parallel, written atomically)."""
    if isinstance(store, LocalObjectStore):
        return lambda keys: [store.uri(k) for k in keys]
    cache = Path(cache_dir)

    def fetch(key: str) -> str:
        path = cache / validate_key(key)
        if not path.is_file():
            atomic_write_bytes(path, store.get_bytes(key), fsync=False)
        return str(path)

    def paths(keys: Sequence[str]) -> list[str]:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(fetch, keys))

    return paths


# building -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildResult:
    dataset: Any
    """The ``fiftyone.Dataset``."""
    added: int
    """Samples written by this call (0 when the dataset was already complete)."""
    feature_fields: list[str]


def feature_fields(examples: pl.DataFrame) -> list[str]:
    """Numeric columns that describe a photo (features and classifier probabilities)."""
    return [
        c
        for c, t in examples.schema.items()
        if t.is_numeric() and c not in _NOT_FEATURES and c != "caption_embedding"
    ]


def _mime(fmt: str | None) -> str | None:
    return {"JPEG": "image/jpeg", "PNG": "image/png"}.get((fmt or "").upper())


def open_dataset(fo: ModuleType, name: str) -> Any | None:
    return fo.load_dataset(name) if fo.dataset_exists(name) else None


def build_fiftyone_dataset(
    fo: ModuleType,
    name: str,
    examples: pl.DataFrame,
    images: pl.DataFrame,
    image_paths: ImagePaths,
    commit_id: str,
    *,
    similarity: bool = True,
) -> BuildResult:
    """The persistent FiftyOne dataset ``name`` of one dataset commit, built if needed.

    ``examples``/``images`` are the commit's ``examples.parquet``/``images.parquet``.
    """
    features = feature_fields(examples)
    ds = open_dataset(fo, name)
    if ds is None:
        try:
            ds = fo.Dataset(name, persistent=True)
        except ValueError:  # another process created it between our check and now
            ds = fo.load_dataset(name)
    owner = ds.info.get("dataset_commit")
    if owner not in (None, commit_id):
        raise ExplorationError(
            f"FiftyOne dataset {name!r} belongs to commit {owner}, not {commit_id}"
        )
    if _complete(ds, commit_id) and len(ds) == examples.height and _media_present(ds):
        return BuildResult(ds, 0, features)

    samples = _samples(fo, examples, images, image_paths, features)
    if len(ds):
        # an interrupted build: upsert on photo_id, never a second sample per photo
        ds.merge_samples(samples, key_field="photo_id", insert_new=True, overwrite=True)
    else:
        ds.add_samples(samples, progress=False)
    ds.create_index("photo_id", unique=True)
    _sidebar(fo, ds, features)
    ds.info = {
        **ds.info,
        "dataset_commit": commit_id,
        "samples": examples.height,
        "feature_fields": features,
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "complete": True,
    }
    ds.save()
    if similarity:
        caption_similarity(ds)
    return BuildResult(ds, len(samples), features)


def _complete(ds: Any, commit_id: str) -> bool:
    return bool(ds.info.get("complete")) and ds.info.get("dataset_commit") == commit_id


def build_from_commit(
    fo: ModuleType,
    versions: VersionStore,
    store: ObjectStore,
    commit_id: str,
    media_dir: str | Path,
    *,
    similarity: bool = True,
) -> BuildResult:
    """The FiftyOne dataset of ``commit_id``, read from the version store by id and built if
    it does not exist yet (a complete one is returned without reading the commit)."""
    ds = open_dataset(fo, dataset_name(commit_id))
    if (
        ds is not None
        and _complete(ds, commit_id)
        and len(ds) == ds.info.get("samples")
        and _media_present(ds)
    ):
        return BuildResult(ds, 0, list(ds.info.get("feature_fields", [])))
    examples = D.read_examples(versions.get_object(commit_id, D.EXAMPLES))
    images = D.read_examples(versions.get_object(commit_id, D.IMAGES))
    return build_fiftyone_dataset(
        fo,
        dataset_name(commit_id),
        examples,
        images,
        local_media(store, media_dir),
        commit_id,
        similarity=similarity,
    )


def _media_present(ds: Any) -> bool:
    """Whether the dataset's image paths still exist: samples store absolute paths, so a data
    dir that moved (or an emptied media cache) makes the dataset rebuild with paths that do."""
    first = ds.first() if len(ds) else None
    return first is None or Path(first.filepath).is_file()


def _samples(
    fo: ModuleType,
    examples: pl.DataFrame,
    images: pl.DataFrame,
    image_paths: ImagePaths,
    features: list[str],
) -> list[Any]:
    """One ``fo.Sample`` per example (FiftyOne's API is per sample; the data prep is not)."""
    img = images.select(
        "photo_id", "object_key", "bytes", "width", "height", "format", "decodable"
    ).unique("photo_id", keep="first")
    df = examples.join(img, on="photo_id", how="left")
    missing = df.filter(pl.col("object_key").is_null())["photo_id"].to_list()
    if missing:
        raise ExplorationError(
            f"{len(missing)} example(s) have no image in images.parquet, e.g. {missing[:5]}"
        )
    paths = image_paths(df["object_key"].to_list())
    embeddings = (
        df["caption_embedding"].to_numpy().astype(np.float32)
        if "caption_embedding" in df.columns
        else None
    )
    has_content = {"predicted_class", "confidence"} <= set(df.columns)
    rows = df.select(
        "photo_id", "label", "split", "bytes", "width", "height", "format", "decodable",
        *[c for c in ("author_id", "prediction_ts", "predicted_class", "confidence")
          if c in df.columns],
        *features,
    ).to_dicts()  # fmt: skip
    samples = []
    for i, r in enumerate(rows):
        s = fo.Sample(
            filepath=paths[i],
            tags=[str(r["split"])],
            photo_id=int(r["photo_id"]),
            ground_truth=fo.Classification(label=POSITIVE if r["label"] else NEGATIVE),
            image_decodable=bool(r["decodable"]),
            metadata=fo.ImageMetadata(
                size_bytes=r["bytes"],
                mime_type=_mime(r["format"]),
                width=r["width"],
                height=r["height"],
            ),
            **{c: r[c] for c in features},
        )
        if r.get("author_id") is not None:
            s["author_id"] = int(r["author_id"])
        if r.get("prediction_ts") is not None:
            s["prediction_ts"] = r["prediction_ts"]
        if has_content and r["predicted_class"] is not None:
            s["image_content"] = fo.Classification(
                label=r["predicted_class"], confidence=float(r["confidence"])
            )
        if embeddings is not None:
            s["caption_embedding"] = embeddings[i]
        samples.append(s)
    return samples


def _sidebar(fo: ModuleType, ds: Any, features: list[str]) -> None:
    """Group the many numeric fields so the App's sidebar stays readable."""
    groups = fo.DatasetAppConfig.default_sidebar_groups(ds)
    classifier = [f for f in features if f.startswith("prob_")]
    activity = [f for f in features if f not in classifier]
    taken = {*classifier, *activity}
    for g in groups:
        g.paths = [p for p in g.paths if p not in taken]
    groups += [
        fo.SidebarGroupDocument(name="image classifier", paths=classifier, expanded=False),
        fo.SidebarGroupDocument(name="features", paths=activity, expanded=False),
    ]
    ds.app_config.sidebar_groups = groups
    ds.save()


def caption_similarity(ds: Any) -> str | None:
    """A nearest-neighbour index on the caption embeddings ("sort by similarity" in the App).

    Skipped (None) when the dataset has no embeddings or FiftyOne Brain is not installed."""
    if "caption_embedding" not in ds.get_field_schema():
        return None
    if SIMILARITY_KEY in ds.list_brain_runs():
        return SIMILARITY_KEY
    try:
        import fiftyone.brain as fob
    except ImportError:
        return None
    fob.compute_similarity(
        ds,
        embeddings="caption_embedding",
        backend="sklearn",
        metric="cosine",
        brain_key=SIMILARITY_KEY,
        progress=False,
    )
    return SIMILARITY_KEY


def dataset_summary(ds: Any, limit: int = 5) -> str:
    """A short markdown preview: counts per split and label, and a few samples."""
    splits = {t: ds.match_tags(t).count() for t in ("train", "validation", "test")}
    labels = ds.count_values("ground_truth.label")
    lines = [
        f"**{ds.name}**: {len(ds)} samples; "
        + ", ".join(f"{k}: {v}" for k, v in splits.items())
        + "; "
        + ", ".join(f"{k}: {v}" for k, v in sorted(labels.items())),
        "",
        "| photo_id | split | label | image content | file |",
        "|---:|---|---|---|---|",
    ]
    view = ds.sort_by("photo_id").limit(limit)
    ids, tags, gts, paths = view.values(["photo_id", "tags", "ground_truth.label", "filepath"])
    # no photo has image content when no annotations exist yet: the field is then absent
    has_content = "image_content" in ds.get_field_schema()
    content = view.values("image_content.label") if has_content else [None] * len(ids)
    for pid, t, gt, c, p in zip(ids, tags, gts, content, paths, strict=True):
        lines.append(f"| {pid} | {', '.join(t)} | {gt} | {c or ''} | {Path(p).name} |")
    return "\n".join(lines)


# predictions ----------------------------------------------------------------------------------


def prediction_frame(predictions: pl.DataFrame) -> pl.DataFrame:
    """Predicted label, confidence and per-sample log loss, computed once for all rows."""
    missing = {"photo_id", "label", "p"} - set(predictions.columns)
    if missing:
        raise ExplorationError(f"predictions lack column(s) {sorted(missing)}")
    p = pl.col("p").cast(pl.Float64)
    pc = p.clip(_LOSS_EPS, 1 - _LOSS_EPS)
    y = pl.col("label").cast(pl.Float64)
    return predictions.select(
        pl.col("photo_id").cast(pl.Int64),
        pl.col("label").cast(pl.Int8),
        p.alias("p"),
        (p >= 0.5).alias("predicted_positive"),
        pl.max_horizontal(p, 1 - p).alias("confidence"),
        (-(y * pc.log() + (1 - y) * (1 - pc).log())).alias("loss"),
        ((p >= 0.5) == (pl.col("label") == 1)).alias("correct"),
    )


def write_predictions(
    ds: Any, predictions: pl.DataFrame, model: dict[str, str] | None = None
) -> dict[str, int]:
    """Write the model's predictions (``photo_id, label, p``) onto the matching samples.

    Sets ``popularity_prediction`` (label and confidence), ``p_popular``, ``prediction_loss``
    (per-sample log loss, so the worst mistakes sort first) and ``prediction_correct``.
    Idempotent: writing the same predictions twice gives the same dataset, and samples that
    had a prediction but are not in ``predictions`` are cleared.
    """
    import fiftyone as fo
    from fiftyone import ViewField as F

    frame = prediction_frame(predictions)
    present = set(ds.distinct("photo_id"))
    known = frame.filter(pl.col("photo_id").is_in(list(present)))
    ids = known["photo_id"].to_list()
    stale = ds.exists("p_popular").match(~F("photo_id").is_in(ids))
    cleared = stale.count()
    if cleared:
        for field in PREDICTION_FIELDS:
            stale.set_field(field, None).save(field)
    cols = known.to_dict(as_series=False)
    label = [POSITIVE if pos else NEGATIVE for pos in cols["predicted_positive"]]
    values = {
        "popularity_prediction": [
            fo.Classification(label=lab, confidence=c)
            for lab, c in zip(label, cols["confidence"], strict=True)
        ],
        "p_popular": cols["p"],
        "prediction_loss": cols["loss"],
        "prediction_correct": cols["correct"],
    }
    for field, vals in values.items():
        ds.set_values(field, dict(zip(ids, vals, strict=True)), key_field="photo_id")
    ds.info["predictions"] = {**(model or {}), "samples": len(ids)}
    ds.save()
    return {
        "written": len(ids),
        "unknown_photo_ids": frame.height - known.height,
        "mistakes": int((~known["correct"]).sum()),
        "cleared": cleared,
    }


def worst_mistakes(ds: Any, n: int = 5) -> list[dict[str, Any]]:
    """The ``n`` wrong predictions with the highest log loss, worst first."""
    from fiftyone import ViewField as F

    view = (
        ds.match(F("prediction_correct") == False)  # noqa: E712 - a FiftyOne expression
        .sort_by("prediction_loss", reverse=True)
        .limit(n)
    )
    ids, labels, ps, losses = view.values(
        ["photo_id", "ground_truth.label", "p_popular", "prediction_loss"]
    )
    return [
        {"photo_id": i, "label": lab, "p": round(p, 4), "loss": round(loss, 4)}
        for i, lab, p, loss in zip(ids, labels, ps, losses, strict=True)
    ]
