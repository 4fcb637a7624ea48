"""Nothing a step needs lives on one host's disk (issue 18, item 4).

Two "workers" share only servers: the object store (moto's S3 server), the OLTP database and the
Dagster instance (here files in a ``servers`` folder, standing in for PostgreSQL). Each worker has
its own ``MDP_DATA_DIR``, ``HOME`` and ``TMPDIR``. What worker A writes (the synthetic world's
ground truth, run-failure alerts, a published model) must be read on worker B, whose disk is
empty, with the same results; and worker A's disk must hold none of it.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from typer.testing import CliRunner

from my_data_platform.core import model_registry as R
from my_data_platform.core.objectstore import LocalObjectStore, ObjectStore
from my_data_platform.core.synthetic_truth import (
    CORRUPTIONS_PARQUET,
    PHOTOS_PARQUET,
    TRUTH_PREFIX,
    WORLD_JSON,
    migrate_local_truth,
    read_world,
    truth_key,
)
from my_data_platform.defs.automation import alerts
from my_data_platform.defs.automation.resources import alerts_resource_from_settings
from my_data_platform.defs.features.resources import ground_truth_resource_from_settings
from my_data_platform.defs.lake.resources import (
    object_store_from_settings,
    object_store_resource_from_settings,
)
from my_data_platform.settings import get_settings, reset_settings
from my_data_platform.synth import WorldConfig, generate_world
from my_data_platform.synth.population import make_users
from my_data_platform.synth.world import all_photos
from my_data_platform_tests.defs.exploration.tiny import (  # noqa: F401
    image_key,
    mongo_uri,
    publish_tiny_dataset,
)

TINY = WorldConfig(days=2, users=40, photos=120, events_per_day=1_500, files_per_day=2, seed=5)


class Workers:
    """Switches this process between worker hosts that share nothing but servers."""

    def __init__(self, root: Path, mp: pytest.MonkeyPatch) -> None:
        self.root, self.mp = root, mp
        servers = root / "servers"
        servers.mkdir(parents=True)
        mp.setenv("MDP_OLTP_URL", f"sqlite:///{servers / 'oltp.sqlite'}")
        mp.setenv("MDP_WAREHOUSE_CATALOG", f"sqlite:{servers / 'catalog.sqlite'}")
        mp.setenv("DAGSTER_HOME", str(servers / "dagster_home"))

    def become(self, name: str) -> Path:
        """Run as worker ``name`` from now on: a fresh data dir, home and temp dir."""
        host = self.root / name
        for sub in ("data", "home", "tmp"):
            (host / sub).mkdir(parents=True)
        self.mp.setenv("MDP_DATA_DIR", str(host / "data"))
        self.mp.setenv("HOME", str(host / "home"))
        self.mp.setenv("TMPDIR", str(host / "tmp"))
        self.mp.setattr(tempfile, "tempdir", str(host / "tmp"))
        reset_settings()
        return host

    def files(self, name: str) -> list[str]:
        """Every file left on worker ``name``'s disk."""
        host = self.root / name
        return sorted(str(p.relative_to(host)) for p in host.rglob("*") if p.is_file())


@pytest.fixture
def workers(
    s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workers]:
    yield Workers(tmp_path / "hosts", monkeypatch)
    reset_settings()


def _truth_on_worker() -> pl.DataFrame | None:
    with dg.build_resources({"gt": ground_truth_resource_from_settings()}) as res:
        return res.gt.photos()


def test_ground_truth_written_on_one_worker_is_read_on_another(workers: Workers) -> None:
    workers.become("a")
    store = object_store_from_settings()
    summary = generate_world(TINY, store, get_settings().oltp_url)
    assert summary.photos == TINY.photos
    assert workers.files("a") == []  # the truth went to the object store, not this disk
    keys = {o.key for o in store.list(TRUTH_PREFIX)}
    assert keys == {truth_key(n) for n in (WORLD_JSON, PHOTOS_PARQUET, CORRUPTIONS_PARQUET)}

    workers.become("b")
    truth = _truth_on_worker()
    assert truth is not None
    # the same truth the generator knows: regenerate it from the seed and compare
    users = make_users(TINY.users, TINY.seed, TINY.start_date)
    expected = all_photos(TINY, range(TINY.days), users).sort("photo_id")
    got = truth.sort("photo_id")
    assert got["photo_id"].to_list() == expected["photo_id"].to_list()
    assert got["latent_score"].to_list() == expected["latent_score"].to_list()
    assert got["image_class_id"].to_list() == expected["image_class"].to_list()

    # `mdp seed --append-days` on worker B extends the world worker A seeded
    res = CliRunner().invoke(_app(), ["seed", "--append-days", "1"])
    assert res.exit_code == 0, res.output
    world = read_world(object_store_from_settings())
    assert len(world["days"]) == TINY.days + 1
    truth3 = _truth_on_worker()
    assert truth3 is not None and truth3.height > truth.height
    assert set(truth["photo_id"]) <= set(truth3["photo_id"])
    assert "ground_truth" not in {Path(f).parts[1] for f in workers.files("b")}

    # a real world: no synthetic/ objects, no truth (and no local folder is consulted off the
    # embedded profile, even when one is there)
    legacy = Path(get_settings().ground_truth_dir)
    legacy.mkdir(parents=True)
    truth.write_parquet(legacy / PHOTOS_PARQUET)
    object_store_from_settings().delete_prefix(TRUTH_PREFIX)
    assert _truth_on_worker() is None


def _app():
    from my_data_platform.cli import app

    return app


@dg.op
def explode() -> None:
    raise RuntimeError("disk on fire")


@dg.job
def doomed() -> None:
    explode()


def _fail_and_alert(instance: dg.DagsterInstance) -> str:
    result = doomed.execute_in_process(instance=instance, raise_on_error=False)
    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    resources = {
        "alerts": alerts_resource_from_settings(),
        "object_store": object_store_resource_from_settings(),
    }
    with dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=run,
        resources=resources,
    ) as ctx:
        alerts.run_failure_alerts(ctx.for_run_failure())
    return result.run_id


def test_alerts_from_every_worker_are_listed_on_any(workers: Workers) -> None:
    with dg.instance_for_test() as instance:
        workers.become("a")
        first = _fail_and_alert(instance)
        assert workers.files("a") == []
        workers.become("b")
        second = _fail_and_alert(instance)
    workers.become("reader")
    store = object_store_from_settings()
    listed = alerts.read_alerts(store)
    assert [a["run_id"] for a in listed] == [first, second]  # oldest first
    assert all("disk on fire" in a["failed_steps"][0]["error"] for a in listed)
    today = dt.datetime.now(dt.UTC).date()
    assert len(alerts.read_alerts(store, since=today)) == 2
    assert alerts.read_alerts(store, since=today + dt.timedelta(days=1)) == []

    # a damaged record is listed with the reason, not dropped
    bad = alerts.alert_key("not-json")
    store.put_bytes(bad, b"\xff{ not json")
    store.put_bytes(alerts.alert_key("a-list"), b"[1, 2]")
    problems = [a for a in alerts.read_alerts(store) if a["kind"] == "unreadable_alert"]
    assert {p["key"] for p in problems} >= {bad}
    assert len(problems) == 2 and all(p["reason"] for p in problems)


def test_alert_keys_never_clash_and_hostile_run_ids_stay_in_the_prefix() -> None:
    when = dt.datetime(2026, 3, 4, 5, 6, 7, 890, tzinfo=dt.UTC)
    keys = {alerts.alert_key("run-1", when) for _ in range(200)}
    assert len(keys) == 200  # same run, same microsecond: still one object each
    for hostile in ("../../etc/passwd", "a/b", "", "x\x00y", "..", "\n"):
        key = alerts.alert_key(hostile, when)
        assert key.startswith("alerts/run_failure/date=2026-03-04/20260304T050607.000890Z-")
        assert key.count("/") == 3 and ".." not in key


def test_a_published_model_is_listed_and_read_on_another_worker(workers: Workers) -> None:
    workers.become("a")
    store = object_store_from_settings()
    prefix = R.run_prefix("0123456789abcdef", dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    preds = pl.DataFrame({"photo_id": [1, 2], "split": ["test", "test"], "label": [0, 1]})
    buf = io.BytesIO()
    preds.write_parquet(buf)
    manifest = {"dataset_commit": "c" * 64, "config": {"seed": 0}, "kind": "popularity_model"}
    published = R.publish(
        store, prefix, checkpoint=b"weights", manifest=manifest,
        extra={R.PREDICTIONS: buf.getvalue()},
    )  # fmt: skip
    assert workers.files("a") == []

    workers.become("b")
    store_b = object_store_from_settings()
    assert R.read_manifest(store_b) == published
    assert [m["manifest_key"] for m in R.list_manifests(store_b)] == [published["manifest_key"]]
    assert R.read_object(store_b, published, R.CHECKPOINT) == b"weights"
    got = pl.read_parquet(R.read_object(store_b, published, R.PREDICTIONS))
    assert got.equals(preds)
    res = CliRunner().invoke(_app(), ["model", "list", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert published["manifest_key"] in res.stdout


def test_embedded_profile_reads_and_migrates_a_pre_move_truth(data_env: Path) -> None:
    """A world seeded before the truth moved keeps its truth on the embedded profile: read as a
    fallback, and moved into the store by the next `mdp seed`."""
    legacy = data_env / "ground_truth"
    legacy.mkdir()
    frame = pl.DataFrame({"photo_id": [3, 1, 2], "latent_score": [0.1, 0.2, 0.3]})
    frame.write_parquet(legacy / PHOTOS_PARQUET)
    (legacy / WORLD_JSON).write_text(json.dumps({"config": {}, "days": []}))
    got = _truth_on_worker()
    assert got is not None and got.equals(frame)

    store = object_store_from_settings()
    assert isinstance(store, LocalObjectStore)
    moved = migrate_local_truth(store, legacy)
    assert moved == [truth_key(PHOTOS_PARQUET), truth_key(WORLD_JSON)]
    assert migrate_local_truth(store, legacy) == []  # already there: nothing overwritten
    (legacy / PHOTOS_PARQUET).unlink()
    got = _truth_on_worker()
    assert got is not None and got.equals(frame)  # now from the store


def test_truth_names_outside_the_known_files_are_refused(tmp_path: Path) -> None:
    store: ObjectStore = LocalObjectStore(tmp_path / "lake")
    for hostile in ("../photos.parquet", "photos.parquet/../../x", "", "landing/x.jpg"):
        with pytest.raises(ValueError, match="not a ground-truth file"):
            truth_key(hostile)
    with pytest.raises(FileNotFoundError, match="mdp seed"):
        read_world(store)


@pytest.mark.slow  # starts the bundled mongod (the stand-in for the MongoDB server)
def test_exploration_on_another_worker_needs_no_file_from_the_first(
    workers: Workers,
    mongo_uri: str,  # noqa: F811
) -> None:
    """Worker A builds the FiftyOne dataset of a commit; worker B (same cache path, empty disk)
    reuses it by fetching the images from the store; worker C (another cache path) rebuilds its
    samples with paths of its own cache. No host ever reads a file another host wrote."""
    from my_data_platform.core import exploration as X
    from my_data_platform.core.versioning import LocalVersionStore
    from my_data_platform.defs.exploration.resources import FiftyOneResource

    fo = X.connect_fiftyone(mongo_uri, "mdp-test-no-local-state")
    vs = LocalVersionStore(workers.root / "servers" / "versions", "datasets")
    workers.become("a")
    store = object_store_from_settings()
    commit = publish_tiny_dataset(store, vs, n=8)
    shared_cache = workers.root / "same-path-on-every-host" / "media"
    on_a = FiftyOneResource(database_uri=mongo_uri, media_dir=str(shared_cache))
    first = on_a.dataset_for_commit(fo, vs, store, commit)
    assert first.added == 8
    ids = sorted(first.dataset.values("photo_id"))

    shutil.rmtree(shared_cache)  # worker B: the same path, but nothing A fetched is there
    workers.become("b")
    X.disconnect_fiftyone()  # another host: its own connection to the shared database
    again = on_a.dataset_for_commit(fo, vs, object_store_from_settings(), commit)
    assert again.added == 0  # reused: the images came from the store, not from A
    for sample in again.dataset.select_fields(["photo_id", "filepath"]):
        key = image_key(sample.photo_id)
        assert Path(sample.filepath).read_bytes() == store.get_bytes(key)

    shutil.rmtree(shared_cache)  # worker C has neither A's nor B's files
    host_c = workers.become("c")
    X.disconnect_fiftyone()
    on_c = FiftyOneResource(database_uri=mongo_uri, media_dir=str(host_c / "data" / "media"))
    rebuilt = on_c.dataset_for_commit(fo, vs, object_store_from_settings(), commit)
    paths = rebuilt.dataset.values("filepath")
    assert sorted(rebuilt.dataset.values("photo_id")) == ids and len(paths) == 8
    assert all(p.startswith(str(host_c)) and Path(p).is_file() for p in paths)


def test_media_cache_fill_ignores_paths_outside_the_cache(workers: Workers) -> None:
    """Sample paths come from a shared database: one that climbs out of the cache, or names
    another host's folder, is never fetched to nor written; only this cache's missing files."""
    from my_data_platform.defs.exploration.resources import fill_media_cache

    host = workers.become("a")
    store = object_store_from_settings()
    store.put_bytes("landing/photos/00000001.jpg", b"jpeg-1")
    cache = host / "cache"
    outside = host / "outside.jpg"
    hostile = [
        f"{cache}/../outside.jpg",
        f"{cache}/landing/../../outside.jpg",
        str(outside),
        "/etc/passwd",
        f"{cache}/landing/photos/00000001.jpg",
    ]
    assert fill_media_cache(hostile, store, cache) == 1
    assert (cache / "landing/photos/00000001.jpg").read_bytes() == b"jpeg-1"
    assert not outside.exists()
    assert fill_media_cache(hostile, store, cache) == 0  # cached now
