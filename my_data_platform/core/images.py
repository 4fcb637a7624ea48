"""The image manifest: what each landed image file really is.

Every file is hashed and fully decoded (``Image.load``), in batches on a thread pool (Pillow
releases the GIL while decoding). A file that is truncated or not an image is recorded with
``decodable = False`` and the decoder's reason, never raised: one bad upload must not stop the
platform from using the good ones.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
from PIL import Image, UnidentifiedImageError

MANIFEST_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("etag", pa.string()),
        ("bytes", pa.int64()),
        ("sha256", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("format", pa.string()),
        ("decodable", pa.bool_()),
        ("error", pa.string()),
    ]
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")


def inspect_image(key: str, etag: str, data: bytes) -> dict[str, Any]:
    row: dict[str, Any] = {
        "key": key,
        "etag": etag,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "width": None,
        "height": None,
        "format": None,
        "decodable": False,
        "error": None,
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                row["format"] = img.format
                row["width"], row["height"] = img.size
                img.load()  # a truncated file fails here, not at open()
        row["decodable"] = True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Warning) as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"[:300]
    return row


def build_manifest(items: Iterable[tuple[str, str, bytes]], *, threads: int = 2) -> pa.Table:
    """Inspect ``(key, etag, bytes)`` items; returns a table in :data:`MANIFEST_SCHEMA`."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        rows = list(pool.map(lambda it: inspect_image(*it), items))
    return pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
