"""The synthetic world: determinism, schema, causality, exact corruption ground truth."""

from __future__ import annotations

import datetime
import gzip
import io
import json
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa
from PIL import Image, UnidentifiedImageError

from my_data_platform.core.objectstore import LocalObjectStore
from my_data_platform.synth import (
    WorldConfig,
    WorldExistsError,
    WorldSummary,
    append_days,
    generate_world,
    read_world,
)

KEYS = ["event_id", "event_type", "user_id", "photo_id", "ts", "dwell_ms", "client"]
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
SMALL = WorldConfig(days=2, users=40, photos=120, events_per_day=4_000, files_per_day=3)
DIRTY = WorldConfig(days=3, users=40, photos=150, events_per_day=6_000, corrupt_rate=0.06)


@dataclass
class World:
    root: Path
    store: LocalObjectStore
    url: str
    gt: Path
    summary: WorldSummary

    def landing(self, prefix: str = "landing/") -> dict[str, bytes]:
        return {o.key: self.store.get_bytes(o.key) for o in self.store.list(prefix)}

    def rows(self, table: str) -> list[tuple]:
        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as conn:
                t = sa.Table(table, sa.MetaData(), autoload_with=conn)
                return [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key))]
        finally:
            engine.dispose()


def make_world(root: Path, config: WorldConfig, **kwargs) -> World:
    store = LocalObjectStore(root / "lake")
    url = f"sqlite:///{root / 'oltp.sqlite'}"
    summary = generate_world(config, store, url, root / "truth", **kwargs)
    return World(root, store, url, root / "truth", summary)


def event_files(world: World, date: str) -> dict[str, bytes]:
    return world.landing(f"landing/events/date={date}/")


def read_lines(data: bytes) -> list[str]:
    return gzip.decompress(data).decode().splitlines()


@pytest.fixture(scope="module")
def clean_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("clean"), SMALL)


@pytest.fixture(scope="module")
def dirty_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("dirty"), DIRTY)


def test_same_seed_same_bytes_and_rows(tmp_path: Path, dirty_world: World) -> None:
    again = make_world(tmp_path / "again", DIRTY)
    first = dirty_world.landing()
    assert first and again.landing() == first
    for table in ("users", "photos"):
        assert again.rows(table) == dirty_world.rows(table)
    assert pl.read_parquet(again.gt / "photos.parquet").equals(
        pl.read_parquet(dirty_world.gt / "photos.parquet")
    )
    assert pl.read_parquet(again.gt / "corruptions.parquet").equals(
        pl.read_parquet(dirty_world.gt / "corruptions.parquet")
    )


def test_other_seed_other_world(tmp_path: Path, clean_world: World) -> None:
    other = make_world(tmp_path / "other", WorldConfig(**{**SMALL.__dict__, "seed": 7}))
    a, b = clean_world.landing("landing/events/"), other.landing("landing/events/")
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a)
    assert other.rows("photos") != clean_world.rows("photos")


def test_append_equals_generate(tmp_path: Path) -> None:
    three = make_world(
        tmp_path / "three",
        WorldConfig(days=3, users=30, photos=90, events_per_day=3_000, corrupt_rate=0.03),
    )
    two = make_world(
        tmp_path / "two",
        WorldConfig(days=2, users=30, photos=60, events_per_day=3_000, corrupt_rate=0.03),
    )
    summary = append_days(1, two.store, two.url, two.gt)
    assert summary.days == [datetime.date(2026, 1, 3)]
    assert summary.photos == 30
    day3 = event_files(three, "2026-01-03")
    assert len(day3) == 5  # 4 parts + the truncated file
    assert event_files(two, "2026-01-03") == day3
    assert two.landing() == three.landing()
    assert two.rows("photos") == three.rows("photos")
    assert [d["date"] for d in read_world(two.gt)["day_stats"]] == read_world(three.gt)["days"]
    c2 = pl.read_parquet(two.gt / "corruptions.parquet")
    c3 = pl.read_parquet(three.gt / "corruptions.parquet")
    assert c2.equals(c3)


def test_clean_world_lines_match_schema(clean_world: World) -> None:
    users = {r[0] for r in clean_world.rows("users")}
    uploaded = {r[0]: r[2] for r in clean_world.rows("photos")}
    seen: set[str] = set()
    types: Counter[str] = Counter()
    total = 0
    for d in range(SMALL.days):
        date = SMALL.start_date + datetime.timedelta(days=d)
        files = event_files(clean_world, date.isoformat())
        assert sorted(files) == [
            f"landing/events/date={date}/part-{i:05d}.jsonl.gz" for i in range(3)
        ]
        for data in files.values():
            assert data[:2] == b"\x1f\x8b"
            for line in read_lines(data):
                ev = json.loads(line)
                assert list(ev) == KEYS
                assert ev["event_id"] not in seen
                seen.add(ev["event_id"])
                assert ev["event_id"].startswith(f"e{date:%Y%m%d}-")
                assert ev["event_type"] in ("view", "like", "comment", "share")
                assert type(ev["user_id"]) is int and ev["user_id"] in users
                assert type(ev["photo_id"]) is int and ev["photo_id"] in uploaded
                assert TS_RE.match(ev["ts"]) and ev["ts"].startswith(date.isoformat())
                ts = datetime.datetime.fromisoformat(ev["ts"].replace("Z", "+00:00"))
                # events only after upload (SQLite returns naive UTC)
                assert ts.replace(tzinfo=None) > uploaded[ev["photo_id"]]
                if ev["event_type"] == "view":
                    assert type(ev["dwell_ms"]) is int and ev["dwell_ms"] >= 0
                else:
                    assert ev["dwell_ms"] is None
                assert ev["client"] in ("ios", "android", "web")
                types[ev["event_type"]] += 1
                total += 1
    assert total == SMALL.events_per_day * SMALL.days == clean_world.summary.events
    assert types["view"] > types["like"] > types["comment"] > 0 and types["share"] > 0


def test_engagement_follows_hidden_popularity(clean_world: World) -> None:
    """The label is learnable: per-photo event counts track the hidden expected rate."""
    counts: Counter[int] = Counter()
    for data in clean_world.landing("landing/events/").values():
        for line in read_lines(data):
            counts[json.loads(line)["photo_id"]] += 1
    truth = pl.read_parquet(clean_world.gt / "photos.parquet").filter(pl.col("day_index") == 0)
    got = np.log1p([counts[p] for p in truth["photo_id"]])
    assert np.corrcoef(got, truth["latent_score"].to_numpy())[0, 1] > 0.5


def classify(line: str, users: set[int], photos: set[int], seen: set[str], date: str) -> str:
    """What a validator would say about one line (mirrors the downstream reasons)."""
    try:
        ev = json.loads(line)
    except json.JSONDecodeError:
        return "malformed_json"
    if "event_type" not in ev:
        return "missing_field"
    if not isinstance(ev["user_id"], int):
        return "wrong_type"
    if ev["user_id"] not in users:
        return "unknown_user"
    if ev["photo_id"] not in photos:
        return "unknown_photo"
    if ev["event_id"] in seen:
        return "duplicate"
    seen.add(ev["event_id"])
    if "app_version" in ev:
        return "schema_drift"
    if not ev["ts"].startswith(date):
        return "late"
    assert list(ev) == KEYS
    return "valid"


def test_corruption_counts_are_exact(dirty_world: World) -> None:
    users = {r[0] for r in dirty_world.rows("users")}
    photos = {r[0] for r in dirty_world.rows("photos")}
    truth = pl.read_parquet(dirty_world.gt / "corruptions.parquet")
    world = read_world(dirty_world.gt)
    assert world["days"] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    for d, stats in enumerate(world["day_stats"]):
        date = stats["date"]
        files = event_files(dirty_world, date)
        trunc_key = f"landing/events/date={date}/part-99999.jsonl.gz"
        trunc = files.pop(trunc_key)
        seen: set[str] = set()
        found: Counter[str] = Counter()
        for data in files.values():
            for line in read_lines(data):
                found[classify(line, users, photos, seen, date)] += 1
        expected = {
            r["kind"]: r["count"]
            for r in truth.filter(pl.col("day") == datetime.date.fromisoformat(date)).to_dicts()
        }
        for kind in (
            "malformed_json",
            "wrong_type",
            "missing_field",
            "unknown_user",
            "unknown_photo",
            "duplicate",
            "schema_drift",
        ):
            assert found[kind] == expected[kind] > 0, (date, kind)
        assert found["late"] == expected.get("late", 0)
        assert (found["late"] > 0) == (d > 0)
        assert sum(found.values()) + expected_truncated_lines(truth, date) == stats["lines"]

        # the truncated file: gzip readers fail, but exactly the recorded lines survive
        with pytest.raises(EOFError):
            gzip.decompress(trunc)
        row = truth.filter((pl.col("kind") == "truncated_file") & (pl.col("key") == trunc_key))
        assert row["count"].to_list() == [1]
        readable = zlib.decompressobj(31).decompress(trunc).decode()
        complete = readable.split("\n")[:-1]
        assert len(complete) == row["lines_readable"][0] > 0
        assert row["lines_written"][0] > row["lines_readable"][0]
        for line in complete:
            assert classify(line, users, photos, seen, date) == "valid"
    totals = truth.group_by("kind").agg(pl.col("count").sum())
    assert dict(totals.iter_rows()) == dirty_world.summary.corruptions


def expected_truncated_lines(truth: pl.DataFrame, date: str) -> int:
    row = truth.filter(
        (pl.col("kind") == "truncated_file") & (pl.col("day") == datetime.date.fromisoformat(date))
    )
    return int(row["lines_written"][0])


def test_images_decode_and_broken_ones_do_not(dirty_world: World) -> None:
    truth = pl.read_parquet(dirty_world.gt / "photos.parquet")
    photos = {r[0]: r for r in dirty_world.rows("photos")}
    assert set(photos) == set(truth["photo_id"])
    status = Counter(truth["image_status"])
    assert status["truncated"] > 0 and status["not_an_image"] > 0
    means: dict[str, list[np.ndarray]] = {}
    for row in truth.iter_rows(named=True):
        key = photos[row["photo_id"]][4]
        assert key == f"landing/photos/{row['photo_id']:08d}.jpg"
        data = dirty_world.store.get_bytes(key)
        if row["image_status"] == "ok":
            img = Image.open(io.BytesIO(data))
            img.load()
            assert img.format == "JPEG" and img.size == (64, 64)
            means.setdefault(row["image_class"], []).append(
                np.asarray(img.convert("RGB").resize((8, 8)), np.float32).ravel()
            )
        elif row["image_status"] == "truncated":
            with pytest.raises(OSError):
                Image.open(io.BytesIO(data)).load()
        else:
            with pytest.raises(UnidentifiedImageError):
                Image.open(io.BytesIO(data))
    # the hidden class is learnable: nearest class centroid on 8x8 thumbnails
    classes = sorted(means)
    assert len(classes) == 6
    centroids = np.stack([np.mean(means[c], axis=0) for c in classes])
    hits = total = 0
    for i, c in enumerate(classes):
        x = np.stack(means[c])
        pred = np.argmin(((x[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
        hits += int((pred == i).sum())
        total += len(x)
    assert hits / total > 0.8


def test_oltp_rows(clean_world: World) -> None:
    users = clean_world.rows("users")
    photos = clean_world.rows("photos")
    assert len(users) == SMALL.users and len(photos) == SMALL.photos
    assert [u[0] for u in users] == list(range(1, SMALL.users + 1))
    assert all(u[2] < datetime.datetime(2026, 1, 1) and u[3] >= 0 for u in users)
    assert len({u[1] for u in users}) == SMALL.users
    start = datetime.datetime(2026, 1, 1)
    assert all(start <= p[2] < start + datetime.timedelta(days=SMALL.days) for p in photos)
    assert all(p[3] and p[5] == p[6] == 64 for p in photos)
    truth = pl.read_parquet(clean_world.gt / "photos.parquet")
    assert set(truth.columns) >= {
        "photo_id",
        "image_class",
        "quality",
        "latent_score",
        "expected_rate",
        "image_status",
    }
    assert np.allclose(truth["expected_rate"], np.exp(truth["latent_score"]))
    assert set(truth["image_status"]) == {"ok"}


def test_existing_world_needs_force(tmp_path: Path) -> None:
    cfg = WorldConfig(days=1, users=10, photos=20, events_per_day=500)
    world = make_world(tmp_path, cfg)
    with pytest.raises(WorldExistsError):
        make_world(tmp_path, cfg)
    world.store.put_bytes("landing/events/date=2020-01-01/part-00000.jsonl.gz", b"stale")
    progress: list[tuple[str, int, int]] = []
    again = make_world(
        tmp_path,
        WorldConfig(days=1, users=12, photos=10, events_per_day=300),
        force=True,
        progress=lambda *a: progress.append(a),
    )
    assert not world.store.exists("landing/events/date=2020-01-01/part-00000.jsonl.gz")
    assert len(again.rows("users")) == 12 and len(again.rows("photos")) == 10
    assert len(world.landing("landing/photos/")) == 10
    assert {p[0] for p in progress} == {"users", "photos", "images", "events"}
    assert ("events", 1, 1) in progress
    assert read_world(again.gt)["config"]["users"] == 12
