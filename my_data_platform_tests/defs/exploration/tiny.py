"""A tiny published dataset (real JPEGs, a real version-store commit) and one mongod per test
session, shared by the exploration tests."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
from collections.abc import Iterator

import numpy as np
import polars as pl
import pytest

from my_data_platform.core import datasets as D
from my_data_platform.core.exploration import disconnect_fiftyone
from my_data_platform.core.mongo import ensure_mongod, stop_mongod
from my_data_platform.core.objectstore import ObjectStore
from my_data_platform.core.versioning import VersionStore

SPLIT_CYCLE = ["train", "train", "validation", "test"]
COLORS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (220, 200, 30)]
_FIFTYONE_ENV = ("FIFTYONE_DATABASE_URI", "FIFTYONE_DATABASE_NAME", "FIFTYONE_DO_NOT_TRACK")


def jpeg(color: tuple[int, int, int], size: int = 32) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def image_key(photo_id: int) -> str:
    return f"landing/photos/{photo_id:08d}.jpg"


def tiny_frames(n: int = 12) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, bytes]]:
    """``examples.parquet`` and ``images.parquet`` of ``n`` photos, and their JPEG bytes."""
    ids = np.arange(1, n + 1)
    rng = np.random.default_rng(7)
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    examples = pl.DataFrame(
        {
            "photo_id": ids,
            "prediction_ts": [
                dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=int(i)) for i in ids
            ],
            "label": pl.Series((ids % 3 == 0).astype(np.int8)),
            "photo_likes_24h": ids * 2,
            "photo_like_rate_24h": ids / 10.0,
            "author_follower_count": ids % 4 * 10,
            "upload_hour": pl.Series((ids % 24).astype(np.int8)),
            "predicted_class": ["sunset" if i % 2 else "beach" for i in ids],
            "confidence": pl.Series((0.5 + ids / (4 * n)).astype(np.float32)),
            "prob_sunset": pl.Series(np.where(ids % 2, 0.7, 0.3).astype(np.float32)),
            "prob_beach": pl.Series(np.where(ids % 2, 0.3, 0.7).astype(np.float32)),
            "caption_embedding": pl.Series(emb, dtype=pl.Array(pl.Float32, 8)),
            "author_id": ids % 4,
            "split": pl.Series(
                [SPLIT_CYCLE[(i - 1) % 4] for i in ids], dtype=pl.Enum(list(D.SPLITS))
            ),
        }
    )
    jpegs = {image_key(int(i)): jpeg(COLORS[int(i) % len(COLORS)]) for i in ids}
    images = pl.DataFrame(
        {
            "photo_id": ids,
            "object_key": [image_key(int(i)) for i in ids],
            "sha256": [hashlib.sha256(jpegs[image_key(int(i))]).hexdigest() for i in ids],
            "bytes": [len(jpegs[image_key(int(i))]) for i in ids],
            "width": [32] * n,
            "height": [32] * n,
            "format": ["JPEG"] * n,
            "decodable": [True] * n,
        }
    )
    return examples, images, jpegs


def _parquet(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_parquet(buf)
    return buf.getvalue()


def publish_tiny_dataset(store: ObjectStore, vs: VersionStore, n: int = 12) -> str:
    """Land the JPEGs in ``store`` and commit the dataset to main; returns the commit id."""
    examples, images, jpegs = tiny_frames(n)
    for key, data in jpegs.items():
        store.put_bytes(key, data)
    vs.create_repository()
    vs.put_objects("main", {D.EXAMPLES: _parquet(examples), D.IMAGES: _parquet(images)})
    commit = vs.commit("main", f"tiny dataset of {n} photos").id
    vs.create_tag(f"tiny-{n}", commit)
    return commit


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The bundled mongod, one per test session (modules that import this fixture share it:
    ``ensure_mongod`` finds the running one), stopped at the end."""
    db_dir = tmp_path_factory.getbasetemp() / "exploration-mongod"
    saved = {k: os.environ.get(k) for k in _FIFTYONE_ENV}
    # the idle timeout only matters if the session dies without its teardown
    uri = ensure_mongod(db_dir, idle_timeout_s=300)
    try:
        yield uri
    finally:
        disconnect_fiftyone()  # else FiftyOne's exit hook waits for the stopped server
        stop_mongod(db_dir)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
