"""Where the generator's hidden truth lives: the object store, under ``synthetic/truth/``.

The truth (per-photo image class and latent popularity, the injected corruptions, the world's
description) is what only tests and model evaluation of a *synthetic* world may read. It lives
in the object store, not on the disk of the host that ran ``mdp seed``, so a step on any worker
(celery workers share nothing but servers) finds it. The prefix says what it is: a real world
has no ``synthetic/`` objects, and every reader treats their absence as "real data".
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import polars as pl

from my_data_platform.core.objectstore import ObjectNotFoundError, ObjectStore

TRUTH_PREFIX = "synthetic/truth/"
WORLD_JSON = "world.json"
PHOTOS_PARQUET = "photos.parquet"
CORRUPTIONS_PARQUET = "corruptions.parquet"
TRUTH_FILES = (WORLD_JSON, PHOTOS_PARQUET, CORRUPTIONS_PARQUET)


def truth_key(name: str) -> str:
    """The object key of one truth file (``synthetic/truth/<name>``)."""
    if name not in TRUTH_FILES:
        raise ValueError(f"{name!r} is not a ground-truth file ({', '.join(TRUTH_FILES)})")
    return TRUTH_PREFIX + name


def has_truth(store: ObjectStore) -> bool:
    """Whether ``store`` holds a synthetic world's truth (its ``world.json``)."""
    return store.exists(truth_key(WORLD_JSON))


def read_truth_bytes(source: ObjectStore | Path, name: str) -> bytes | None:
    """One truth file from the object store, or from a local folder (a copy written for
    people and tests); ``None`` when it is absent."""
    if isinstance(source, Path):
        path = source / truth_key(name).removeprefix(TRUTH_PREFIX)
        return path.read_bytes() if path.is_file() else None
    try:
        return source.get_bytes(truth_key(name))
    except ObjectNotFoundError:
        return None


def read_truth_frame(
    source: ObjectStore | Path, name: str, columns: list[str] | None = None
) -> pl.DataFrame | None:
    """A truth Parquet file as a frame, or ``None`` when there is none (a real world)."""
    data = read_truth_bytes(source, name)
    return None if data is None else pl.read_parquet(io.BytesIO(data), columns=columns)


def read_world(source: ObjectStore | Path) -> dict[str, Any]:
    """The parsed ``world.json`` (raises FileNotFoundError when no world was generated)."""
    data = read_truth_bytes(source, WORLD_JSON)
    if data is None:
        where = source if isinstance(source, Path) else source.describe()
        raise FileNotFoundError(
            f"no world at {where} (no {truth_key(WORLD_JSON)}): run generate_world (mdp seed) first"
        )
    return json.loads(data)


def migrate_local_truth(store: ObjectStore, directory: Path) -> list[str]:
    """Upload the truth of a world seeded before it moved to the object store (files in
    ``directory``, the old ``$MDP_DATA_DIR/ground_truth``), unless the store already has a
    truth; ``world.json`` last, as the generator writes it. Returns the keys written."""
    if has_truth(store):
        return []
    written = []
    for name in (PHOTOS_PARQUET, CORRUPTIONS_PARQUET, WORLD_JSON):
        path = Path(directory) / name
        if path.is_file():
            store.put_bytes(truth_key(name), path.read_bytes())
            written.append(truth_key(name))
    return written
