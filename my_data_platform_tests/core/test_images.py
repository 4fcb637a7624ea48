"""The image manifest under hostile uploads: every bad file is a row with a named reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from my_data_platform.core.images import (
    ImageLimits,
    build_manifest,
    inspect_image,
    read_image,
)
from my_data_platform.core.objectstore import LocalObjectStore, ObjectInfo, ObjectStoreError
from my_data_platform_tests.core import bad_images as bad


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (bad.png_claiming(40_000, 40_000), "too_many_pixels"),  # over Pillow's own ceiling
        (bad.jpeg_claiming(40_000, 40_000), "too_many_pixels"),
        (bad.png_claiming(8_000, 8_000), "too_many_pixels"),  # over ours, under Pillow's
        (bad.png_claiming(10_000, 10_000), "too_many_pixels"),  # Pillow warns
        (bad.truncated(), "truncated"),
        (bad.png_claiming(100, 100), "truncated"),  # a header without its pixels
        (bad.TEXT, "not_an_image"),
        (bad.EPS, "not_an_image"),  # never handed to Ghostscript
        (b"", "not_an_image"),
    ],
    ids=[
        "png_1.6G",
        "jpeg_1.6G",
        "png_64M",
        "png_100M",
        "jpeg_cut",
        "png_empty",
        "text",
        "eps",
        "empty",
    ],
)
def test_bad_files_become_rows_with_a_named_reason(data: bytes, reason: str) -> None:
    assert len(data) < 1000  # the bombs are tiny: only their headers lie
    row = inspect_image("landing/photos/x.jpg", "e1", data)
    assert not row["decodable"]
    assert row["error"].split(":", 1)[0] == reason
    assert row["sha256"] is not None and row["bytes"] == len(data)
    assert inspect_image("landing/photos/x.jpg", "e1", data) == row  # deterministic
    assert "0x" not in row["error"]


def test_the_pixel_limit_is_checked_from_the_header() -> None:
    good = bad.jpeg(20, 20)
    assert inspect_image("k", "e", good, max_pixels=400)["decodable"]
    row = inspect_image("k", "e", good, max_pixels=399)
    assert (row["decodable"], row["error"]) == (False, "too_many_pixels")
    assert (row["width"], row["height"], row["format"]) == (20, 20, "JPEG")


def test_a_good_image_decodes() -> None:
    row = inspect_image("k", "e", bad.jpeg(16, 12))
    assert row["decodable"] and row["error"] is None
    assert (row["width"], row["height"], row["format"]) == (16, 12, "JPEG")


class _CountingStore(LocalObjectStore):
    def __init__(self, root: Path, fail: dict[str, Exception] | None = None) -> None:
        super().__init__(root)
        self.read: list[str] = []
        self.fail = fail or {}

    def get_bytes(self, key: str) -> bytes:
        self.read.append(key)
        if key in self.fail:
            raise self.fail[key]
        return super().get_bytes(key)


def test_an_oversized_file_is_never_read(tmp_path: Path) -> None:
    store = _CountingStore(tmp_path / "lake")
    info = store.put_bytes("landing/photos/big.jpg", bad.jpeg(64, 64))
    assert read_image(store, info, ImageLimits(max_bytes=info.size - 1)) == "too_many_bytes"
    assert store.read == []
    assert read_image(store, info, ImageLimits(max_bytes=info.size)) == bad.jpeg(64, 64)
    # a file that grew after it was listed is refused after the read
    small = ObjectInfo(key=info.key, size=10, etag=info.etag)
    assert read_image(store, small, ImageLimits(max_bytes=100)) == "too_many_bytes"


def test_per_file_read_errors_are_reasons_and_store_failures_raise(tmp_path: Path) -> None:
    store = _CountingStore(
        tmp_path / "lake",
        fail={
            "landing/photos/locked.jpg": PermissionError(13, "Permission denied"),
            "landing/photos/down.jpg": ObjectStoreError("cannot reach the store"),
        },
    )
    outside = tmp_path / "canary.jpg"
    outside.write_bytes(bad.jpeg())
    (tmp_path / "lake" / "landing" / "photos").mkdir(parents=True)
    (tmp_path / "lake" / "landing" / "photos" / "link.jpg").symlink_to(outside)
    (tmp_path / "lake" / "landing" / "photos" / "dir.jpg").mkdir()
    limits = ImageLimits()

    def reason(key: str) -> bytes | str:
        return read_image(store, ObjectInfo(key=key, size=1, etag="e"), limits)

    assert reason("landing/photos/locked.jpg") == "unreadable: permission_denied"
    assert reason("landing/photos/gone.jpg") == "unreadable: vanished"
    assert reason("landing/photos/link.jpg") == "unreadable: symbolic_link"
    assert reason("landing/photos/dir.jpg") == "unreadable: not_a_regular_file"
    with pytest.raises(ObjectStoreError, match="cannot reach"):
        reason("landing/photos/down.jpg")


def test_build_manifest_keeps_unread_files_as_rows() -> None:
    ok = ObjectInfo(key="a.jpg", size=633, etag="1")
    big = ObjectInfo(key="b.jpg", size=10**9, etag="2")
    table = build_manifest([(ok, bad.jpeg()), (big, "too_many_bytes")])
    rows = table.to_pylist()
    assert [r["key"] for r in rows] == ["a.jpg", "b.jpg"]
    assert rows[0]["decodable"] and not rows[1]["decodable"]
    assert rows[1] == {
        "key": "b.jpg", "etag": "2", "bytes": 10**9, "sha256": None, "width": None,
        "height": None, "format": None, "decodable": False, "error": "too_many_bytes",
    }  # fmt: skip
