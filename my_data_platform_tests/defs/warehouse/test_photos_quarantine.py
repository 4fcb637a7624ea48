"""warehouse.photos_quarantine on a small world with broken uploads: every unusable image file
is a row analysts can query, with its reason, size, sha256, the photo that points at it and
when it was first detected."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import dagster as dg
import pytest

from my_data_platform.cli.sql import analyst_session
from my_data_platform.core import oltp
from my_data_platform.defs.lake.resources import object_store_from_settings
from my_data_platform.runner import execute_plan, load_definitions, plan_refresh
from my_data_platform.settings import get_settings, reset_settings
from my_data_platform.synth import WorldConfig, generate_world
from my_data_platform_tests.core import bad_images as bad

CONFIG = WorldConfig(days=1, users=10, photos=20, events_per_day=200, seed=5)
SELECTION = '+key:"warehouse/photos_quarantine"'
MAX_BYTES = 200_000  # over any generated image, under the big upload
COLUMNS = "object_key, photo_id, reason, bytes, sha256, detected_at"


def _refresh(instance: dg.DagsterInstance) -> None:
    defs = load_definitions()
    outcomes = execute_plan(defs, instance, plan_refresh(defs, instance, SELECTION))
    assert all(o.success for o in outcomes), [o.failed_steps for o in outcomes]
    statuses = {k: v.status for o in outcomes for k, v in o.asset_outcomes.items()}
    assert statuses["warehouse/photos_quarantine"] == "materialized"


def _rows() -> dict[str, dict]:
    with analyst_session() as session:  # what `mdp sql` queries through
        cols, rows = session.run(f"SELECT {COLUMNS} FROM warehouse.photos_quarantine")
    return {r[0]: dict(zip(cols, r, strict=True)) for r in rows}


def test_broken_uploads_are_queryable_with_reason_size_and_hash(
    data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDP_LANDING_MAX_IMAGE_BYTES", str(MAX_BYTES))
    reset_settings()
    s = get_settings()
    store = object_store_from_settings()
    generate_world(CONFIG, store, s.oltp_url, s.ground_truth_dir)
    photos = oltp.read_table(s.oltp_url, "photos", ["photo_id", "object_key"]).sort("photo_id")
    (p_trunc, k_trunc), (p_text, k_text) = photos.head(2).iter_rows()
    broken = {k_trunc: bad.truncated(), k_text: bad.TEXT, "landing/photos/orphan.jpg": bad.EPS}
    for key, data in broken.items():
        store.put_bytes(key, data)
    # a file over the byte limit is never read: quarantined with its size and no sha256
    big_key = "landing/photos/big.jpg"
    store.put_bytes(big_key, b"\xff\xd8" + b"\0" * (MAX_BYTES + 1))

    before = dt.datetime.now(dt.UTC)
    with dg.instance_for_test() as instance:
        _refresh(instance)
        rows = _rows()
        assert set(rows) == {*broken, big_key}
        for key, data in broken.items():
            row = rows[key]
            assert row["sha256"] == hashlib.sha256(data).hexdigest()
            assert row["bytes"] == len(data)
            assert row["detected_at"] >= before
        assert rows[k_trunc]["reason"].startswith("truncated")
        assert rows[k_text]["reason"].startswith("not_an_image")
        assert rows["landing/photos/orphan.jpg"]["reason"].startswith("not_an_image")
        assert (rows[k_trunc]["photo_id"], rows[k_text]["photo_id"]) == (p_trunc, p_text)
        assert rows["landing/photos/orphan.jpg"]["photo_id"] is None  # no photo points at it
        big = rows[big_key]
        assert (big["sha256"], big["bytes"], big["photo_id"]) == (None, MAX_BYTES + 3, None)
        assert big["reason"].startswith("too_many_bytes")

        # a second refresh keeps each file's first detection; a repaired file leaves
        store.put_bytes(k_text, bad.jpeg(8, 8))
        _refresh(instance)
        again = _rows()
    assert set(again) == set(rows) - {k_text}
    for key, row in again.items():
        assert row == rows[key]
