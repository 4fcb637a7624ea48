"""The image manifest: what each landed image file really is.

Every file is read, hashed and fully decoded (``Image.load``), in batches on a thread pool
(Pillow releases the GIL while decoding). A file that cannot be read, is over a limit, is
truncated or is not an image is recorded with ``decodable = False`` and a deterministic reason,
never raised: one bad upload must not stop the platform from using the good ones.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from PIL import Image, UnidentifiedImageError

from my_data_platform.core.objectstore import (
    LinkRefusedError,
    NotARegularFileError,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    ObjectStoreError,
)

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

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
"""The Pillow formats those suffixes name (JPEG's opener also returns camera MPO files). No
other decoder (EPS, which runs Ghostscript, among them) ever sees an upload."""


@dataclass(frozen=True)
class ImageLimits:
    """Checked before any pixel is decoded; the defaults are the settings' defaults."""

    max_pixels: int = 50_000_000
    max_bytes: int = 50 * 2**20


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _detail(exc: BaseException) -> str:
    """``Type: message``, without object addresses, so one input always gives one reason."""
    return _ADDRESS.sub("", f"{type(exc).__name__}: {exc}")[:200]


def _row(key: str, etag: str, size: int) -> dict[str, Any]:
    return dict.fromkeys(MANIFEST_SCHEMA.names) | {
        "key": key,
        "etag": etag,
        "bytes": size,
        "decodable": False,
    }


def read_image(store: ObjectStore, info: ObjectInfo, limits: ImageLimits) -> bytes | str:
    """The object's bytes, or the reason this one file cannot be read.

    A problem of the store itself (unreachable, throttled) raises: it is not the file's fault,
    and quarantining every image for it would hide it.
    """
    if info.size > limits.max_bytes:  # the listing's size: an oversized file is never read
        return "too_many_bytes"
    try:
        data = store.get_bytes(info.key)
    except LinkRefusedError:
        return "unreadable: symbolic_link"
    except NotARegularFileError:
        return "unreadable: not_a_regular_file"
    except ObjectNotFoundError:
        return "unreadable: vanished"  # deleted between the listing and the read
    except PermissionError:
        return "unreadable: permission_denied"
    except IsADirectoryError:
        return "unreadable: not_a_regular_file"
    except ObjectStoreError as exc:
        code = getattr(exc.__cause__, "response", {}).get("Error", {}).get("Code")
        if code in ("AccessDenied", "403"):
            return "unreadable: permission_denied"
        raise
    if len(data) > limits.max_bytes:  # it grew after the listing
        return "too_many_bytes"
    return data


def inspect_image(
    key: str, etag: str, data: bytes, *, max_pixels: int = ImageLimits.max_pixels
) -> dict[str, Any]:
    row = _row(key, etag, len(data)) | {"sha256": hashlib.sha256(data).hexdigest()}
    Image.init()  # registers every plugin once, so ``formats`` can name WEBP
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            row["format"] = img.format
            row["width"], row["height"] = width, height = img.size
            if width * height > max_pixels:  # the header's claim, before any pixel is decoded
                row["error"] = "too_many_pixels"
                return row
            img.load()  # a truncated file fails here, not at open()
        row["decodable"] = True
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own ceiling, checked inside open() (its warning raises where warnings are
        # errors): a claim above it is refused whatever ``max_pixels`` allows. The reason
        # carries no size, so it is the same on both paths.
        row["error"] = "too_many_pixels"
    except UnidentifiedImageError:
        row["error"] = "not_an_image"
    except Exception as exc:  # any decoder error is this file's problem
        truncated = isinstance(exc, OSError) and "truncated" in str(exc).lower()
        row["error"] = f"truncated: {exc}"[:200] if truncated else f"undecodable: {_detail(exc)}"
    return row


def build_manifest(
    items: Iterable[tuple[ObjectInfo, bytes | str]],
    *,
    max_pixels: int = ImageLimits.max_pixels,
    threads: int = 2,
) -> pa.Table:
    """Inspect ``(object, bytes or the reason it was not read)`` items; returns a table in
    :data:`MANIFEST_SCHEMA`."""

    def one(item: tuple[ObjectInfo, bytes | str]) -> dict[str, Any]:
        info, got = item
        if isinstance(got, str):
            return _row(info.key, info.etag, info.size) | {"error": got}
        return inspect_image(info.key, info.etag, got, max_pixels=max_pixels)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        rows = list(pool.map(one, items))
    return pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
