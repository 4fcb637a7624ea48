"""lake/photos over a landing area of hostile uploads: one row per bad file, never a failure."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from my_data_platform.core.images import ImageLimits
from my_data_platform.core.objectstore import LocalObjectStore, ObjectInfo
from my_data_platform.defs.lake.assets import _image_batches, lake_photos
from my_data_platform.defs.lake.objects import (
    PHOTOS_KEY,
    PHOTOS_MANIFEST_OBJECT,
    PHOTOS_QUARANTINE_OBJECT,
    read_parquet,
)
from my_data_platform.defs.lake.resources import LocalObjectStoreResource
from my_data_platform.settings import reset_settings
from my_data_platform_tests.core import bad_images as bad

P = "landing/photos/"

EXPECTED = {
    f"{P}big.jpg": "too_many_bytes",
    f"{P}bomb.png": "too_many_pixels",
    f"{P}bomb_jpeg.jpg": "too_many_pixels",
    f"{P}eps.jpg": "not_an_image",
    f"{P}text.jpg": "not_an_image",
    f"{P}truncated.jpg": "truncated",
}


@pytest.fixture
def landed(data_env: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Good and bad uploads, links out of the store and a FIFO; records every key read."""
    monkeypatch.setenv("MDP_LANDING_MAX_IMAGE_BYTES", "20000")
    reset_settings()
    store = LocalObjectStore(data_env / "lake")
    for key, data in {
        "good_a.jpg": bad.jpeg(32, 32),
        "good_b.jpg": bad.jpeg(8, 16),
        "big.jpg": b"\xff\xd8" + b"\0" * 30_000,
        "bomb.png": bad.png_claiming(40_000, 40_000),
        "bomb_jpeg.jpg": bad.jpeg_claiming(40_000, 40_000),
        "eps.jpg": bad.EPS,
        "text.jpg": bad.TEXT,
        "truncated.jpg": bad.truncated(),
    }.items():
        store.put_bytes(P + key, data)
    outside = data_env.parent / "outside"
    (outside / "more").mkdir(parents=True)
    canary = outside / "canary.jpg"
    canary.write_bytes(bad.jpeg(4, 4))  # decodable: had it been read, it would be a good row
    (outside / "more" / "x.jpg").write_bytes(bad.jpeg(4, 4))
    land = store.root / "landing" / "photos"
    (land / "link_out.jpg").symlink_to(canary)
    (land / "link_in.jpg").symlink_to(land / "good_a.jpg")
    (land / "linked_dir").symlink_to(outside / "more", target_is_directory=True)
    os.mkfifo(land / "fifo.jpg")  # a read would hang

    read: list[str] = []
    get_bytes = LocalObjectStore.get_bytes

    def recording(self: LocalObjectStore, key: str) -> bytes:
        read.append(key)
        return get_bytes(self, key)

    monkeypatch.setattr(LocalObjectStore, "get_bytes", recording)
    return {"store": store, "read": read}


def _materialize(data_env: Path, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [lake_photos],
            instance=instance,
            resources={"object_store": LocalObjectStoreResource(root=str(data_env / "lake"))},
            run_config=run_config,
        )
    assert result.success
    return result


def test_bad_uploads_become_quarantine_rows_and_links_are_never_read(
    data_env: Path, landed: dict[str, Any]
) -> None:
    store = landed["store"]
    result = _materialize(data_env)
    manifest = read_parquet(store, PHOTOS_MANIFEST_OBJECT).to_pylist()
    quarantine = read_parquet(store, PHOTOS_QUARANTINE_OBJECT).to_pylist()
    assert {r["key"] for r in manifest} == {*EXPECTED, f"{P}good_a.jpg", f"{P}good_b.jpg"}
    assert {r["key"] for r in manifest if r["decodable"]} == {f"{P}good_a.jpg", f"{P}good_b.jpg"}
    assert {r["key"]: r["reason"].split(":")[0] for r in quarantine} == EXPECTED
    assert not any("link" in k or "fifo" in k for k in landed["read"])
    assert f"{P}big.jpg" not in landed["read"]  # over the byte limit: never read
    md = result.asset_materializations_for_node("lake_photos")
    photos = next(m for m in md if m.asset_key == PHOTOS_KEY).metadata
    assert photos["quarantined_by_reason"].value == {
        "not_an_image": 2,
        "too_many_bytes": 1,
        "too_many_pixels": 2,
        "truncated": 1,
    }

    # the same input gives the same rows; only the quarantined files are inspected again
    landed["read"].clear()
    result = _materialize(data_env)
    assert read_parquet(store, PHOTOS_QUARANTINE_OBJECT).to_pylist() == quarantine
    assert read_parquet(store, PHOTOS_MANIFEST_OBJECT).to_pylist() == manifest
    landing_reads = [k for k in landed["read"] if k.startswith(P)]
    assert sorted(landing_reads) == sorted(set(EXPECTED) - {f"{P}big.jpg"})


def test_run_config_overrides_the_limits(data_env: Path, landed: dict[str, Any]) -> None:
    limits = {"max_image_pixels": 32 * 32 - 1, "max_image_bytes": 10**6}
    config = {"ops": {"lake_photos": {"config": limits}}}
    _materialize(data_env, config)
    quarantine = read_parquet(landed["store"], PHOTOS_QUARANTINE_OBJECT).to_pylist()
    reasons = {r["key"]: r["reason"] for r in quarantine}
    assert reasons[f"{P}good_a.jpg"] == "too_many_pixels"  # 32x32 over 1023
    assert f"{P}good_b.jpg" not in reasons  # 8x16 fits
    assert reasons[f"{P}big.jpg"] == "not_an_image"  # now read, and it is no JPEG


def test_batches_bound_the_bytes_held() -> None:
    def info(i: int, size: int) -> ObjectInfo:
        return ObjectInfo(key=f"{P}{i:03}.jpg", size=size, etag="e")

    limits = ImageLimits(max_bytes=50)
    todo = [info(0, 40), info(1, 40), info(2, 10**9), info(3, 20), info(4, 50)]
    batches = _image_batches(todo, limits, files=3, size=60)
    assert [[o.key[-7:-4] for o in b] for b in batches] == [["000"], ["001", "002", "003"], ["004"]]
    assert _image_batches([], limits) == []
