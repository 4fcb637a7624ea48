"""FiftyOne datasets from dataset commits, on the real bundled mongod (no mocks of FiftyOne)."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from my_data_platform.core import exploration as X
from my_data_platform.core import mongo as M
from my_data_platform.core.objectstore import LocalObjectStore
from my_data_platform_tests.defs.exploration.tiny import mongo_uri, tiny_frames  # noqa: F401

pytestmark = pytest.mark.slow  # starts the bundled mongod


N = 12
DB = "mdp-test-core"


@pytest.fixture
def fo(mongo_uri: str):  # noqa: F811
    return X.connect_fiftyone(mongo_uri, DB)


@pytest.fixture
def tiny(tmp_path: Path):
    examples, images, jpegs = tiny_frames(N)
    store = LocalObjectStore(tmp_path / "lake")
    for key, data in jpegs.items():
        store.put_bytes(key, data)
    return examples, images, store


def _commit(tmp_path: Path) -> str:
    """A unique fake commit id per test, so each test owns its FiftyOne dataset."""
    import hashlib

    return hashlib.sha256(str(tmp_path).encode()).hexdigest()


# mongod ---------------------------------------------------------------------------------------


def test_ensure_mongod_is_shared_by_concurrent_processes(tmp_path: Path) -> None:
    db_dir = tmp_path / "mongod"
    code = (
        "import sys; from my_data_platform.core.mongo import ensure_mongod; "
        "print(ensure_mongod(sys.argv[1], idle_timeout_s=None))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(db_dir)], stdout=subprocess.PIPE,
                         text=True)
        for _ in range(3)
    ]  # fmt: skip
    try:
        uris = {p.communicate(timeout=60)[0].strip() for p in procs}
        assert len(uris) == 1 and next(iter(uris)).startswith("mongodb://127.0.0.1:")
        state = M._read_state(db_dir)
        assert state and M._pid_alive(state["pid"])
        assert M.ensure_mongod(db_dir, idle_timeout_s=None) == uris.pop()  # reused, not restarted
        assert M._read_state(db_dir)["pid"] == state["pid"]
    finally:
        assert M.stop_mongod(db_dir)
    assert not M._pid_alive(state["pid"])
    assert not M.stop_mongod(db_dir)  # nothing left to stop


def test_mongod_that_cannot_start_says_why(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(M.MongodError) as err:
            M.ensure_mongod(tmp_path / "mongod", port=port, idle_timeout_s=None)
    msg = str(err.value)
    assert str(M.find_mongod()) in msg and str(tmp_path / "mongod") in msg
    assert "mongod.log" in msg and "already in use" in msg.lower()


def test_idle_mongod_is_stopped_by_its_supervisor(tmp_path: Path) -> None:
    db_dir = tmp_path / "mongod"
    M.ensure_mongod(db_dir, idle_timeout_s=1)
    state = M._read_state(db_dir)
    try:
        deadline = time.monotonic() + 60  # generous: CI runs two test workers on 2 cores
        # the supervisor kills mongod, then removes the state file: wait for both
        while (M._pid_alive(state["pid"]) or M._read_state(db_dir) is not None) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.25)
        assert not M._pid_alive(state["pid"]), "idle mongod still running"
        assert M._read_state(db_dir) is None
    finally:
        M.stop_mongod(db_dir)


# building -------------------------------------------------------------------------------------


def test_dataset_name_carries_the_commit() -> None:
    assert X.dataset_name("ab" * 32) == "popularity-abababababab"
    with pytest.raises(X.ExplorationError):
        X.dataset_name("main")


def test_one_sample_per_photo_with_label_split_features_and_image(fo, tiny, tmp_path) -> None:
    examples, images, store = tiny
    commit = _commit(tmp_path)
    media = X.local_media(store, tmp_path / "media")
    built = X.build_fiftyone_dataset(fo, X.dataset_name(commit), examples, images, media, commit)
    ds = built.dataset
    assert built.added == N and len(ds) == N and ds.persistent
    assert sorted(ds.distinct("photo_id")) == list(range(1, N + 1))
    assert ds.info["dataset_commit"] == commit and ds.info["complete"]
    s = ds.match({"photo_id": 3}).first()
    assert s.filepath == store.uri("landing/photos/00000003.jpg")  # the lake's own file
    assert Path(s.filepath).read_bytes()[:2] == b"\xff\xd8"
    assert s.tags == ["validation"]
    assert s.ground_truth.label == "popular"  # label 1 (3 % 3 == 0)
    assert ds.match({"photo_id": 4}).first().ground_truth.label == "not_popular"
    assert s.image_content.label == "sunset"
    assert s.image_content.confidence == pytest.approx(0.5 + 3 / 48, rel=1e-6)
    assert s.photo_likes_24h == 6 and s.prob_sunset == pytest.approx(0.7)
    assert s.metadata.width == 32 and s.metadata.mime_type == "image/jpeg"
    assert list(s.caption_embedding) == pytest.approx(examples["caption_embedding"][2].to_list())
    assert "caption_embedding" not in built.feature_fields  # a vector field, not a feature
    assert set(built.feature_fields) == {
        "photo_likes_24h", "photo_like_rate_24h", "author_follower_count", "upload_hour",
        "prob_sunset", "prob_beach",
    }  # fmt: skip
    assert {t: ds.match_tags(t).count() for t in ("train", "validation", "test")} == {
        "train": 6,
        "validation": 3,
        "test": 3,
    }
    # the caption index finds a photo's own caption as its nearest neighbour
    assert X.SIMILARITY_KEY in ds.list_brain_runs()
    nearest = ds.sort_by_similarity(s.id, k=1, brain_key=X.SIMILARITY_KEY).first()
    assert nearest.photo_id == 3
    summary = X.dataset_summary(ds)
    assert ds.name in summary and f"{N} samples" in summary


def test_rebuilding_does_not_duplicate_and_completes_a_partial_build(fo, tiny, tmp_path) -> None:
    examples, images, store = tiny
    commit = _commit(tmp_path)
    name = X.dataset_name(commit)
    media = X.local_media(store, tmp_path / "media")
    first = X.build_fiftyone_dataset(fo, name, examples, images, media, commit).dataset
    ids_before = sorted(first.values("id"))
    again = X.build_fiftyone_dataset(fo, name, examples, images, media, commit)
    assert again.added == 0 and len(again.dataset) == N
    assert sorted(again.dataset.values("id")) == ids_before  # untouched

    # an interrupted build: some samples missing, not marked complete
    ds = again.dataset
    ds.delete_samples(ds.match({"photo_id": {"$gt": 8}}))
    ds.info["complete"] = False
    ds.save()
    resumed = X.build_fiftyone_dataset(fo, name, examples, images, media, commit)
    assert len(resumed.dataset) == N
    assert sorted(resumed.dataset.distinct("photo_id")) == list(range(1, N + 1))
    assert resumed.dataset.count_values("photo_id") == dict.fromkeys(range(1, N + 1), 1)

    with pytest.raises(X.ExplorationError, match="belongs to commit"):
        X.build_fiftyone_dataset(fo, name, examples, images, media, "f" * 64)


def test_a_moved_data_dir_rebuilds_with_paths_that_exist(fo, tiny, tmp_path) -> None:
    """Samples hold absolute image paths: after the lake moves, the same commit's dataset is
    upserted with the new paths (one sample per photo still), not returned with broken ones."""
    examples, images, store = tiny
    commit = _commit(tmp_path)
    name = X.dataset_name(commit)
    X.build_fiftyone_dataset(
        fo, name, examples, images, X.local_media(store, tmp_path / "m"), commit
    )
    moved = LocalObjectStore((tmp_path / "lake").rename(tmp_path / "moved-lake"))
    again = X.build_fiftyone_dataset(
        fo, name, examples, images, X.local_media(moved, tmp_path / "m"), commit
    )
    paths = again.dataset.values("filepath")
    assert again.added == N and len(paths) == N
    assert all(p.startswith(str(tmp_path / "moved-lake")) and Path(p).is_file() for p in paths)


def test_remote_store_images_are_cached_locally(fo, tiny, tmp_path, s3_env) -> None:
    from my_data_platform.defs.lake.resources import object_store_from_settings

    examples, images, local = tiny
    s3 = object_store_from_settings()
    for key in images["object_key"]:
        s3.put_bytes(key, local.get_bytes(key))
    commit = _commit(tmp_path)
    media = X.local_media(s3, tmp_path / "media")
    ds = X.build_fiftyone_dataset(fo, X.dataset_name(commit), examples, images, media, commit)
    paths = ds.dataset.values("filepath")
    assert all(p.startswith(str(tmp_path / "media")) for p in paths)
    assert Path(paths[0]).read_bytes() == local.get_bytes(images["object_key"][0])


# predictions ----------------------------------------------------------------------------------


def _predictions(examples: pl.DataFrame) -> pl.DataFrame:
    test = examples.filter(pl.col("split") == "test").select("photo_id", "split", "label")
    # photo 12 is popular (12 % 3 == 0) but gets p = 0.05: the worst mistake
    p = {4: 0.2, 8: 0.9, 12: 0.05}
    return test.with_columns(p=pl.col("photo_id").replace_strict(p, return_dtype=pl.Float64))


def test_predictions_are_written_back_and_the_worst_mistake_sorts_first(fo, tiny, tmp_path) -> None:
    examples, images, store = tiny
    commit = _commit(tmp_path)
    media = X.local_media(store, tmp_path / "media")
    ds = X.build_fiftyone_dataset(
        fo, X.dataset_name(commit), examples, images, media, commit, similarity=False
    ).dataset
    preds = _predictions(examples)
    unknown = pl.DataFrame({"photo_id": [999], "split": ["test"], "label": [0], "p": [0.5]})
    counts = X.write_predictions(ds, pl.concat([preds, unknown], how="vertical_relaxed"))
    assert counts == {"written": 3, "unknown_photo_ids": 1, "mistakes": 2, "cleared": 0}

    s = ds.match({"photo_id": 12}).first()
    assert s.popularity_prediction.label == "not_popular"
    assert s.popularity_prediction.confidence == pytest.approx(0.95)
    assert s.p_popular == pytest.approx(0.05)
    assert s.prediction_loss == pytest.approx(-math.log(0.05))
    assert s.prediction_correct is False
    assert ds.match({"photo_id": 4}).first().prediction_correct is True  # 0.2, label 0
    assert ds.exists("popularity_prediction").count() == 3  # test photos only

    worst = ds.exists("prediction_loss").sort_by("prediction_loss", reverse=True)
    assert worst.values("photo_id") == [12, 8, 4]
    assert [m["photo_id"] for m in X.worst_mistakes(ds)] == [12, 8]

    # idempotent; and a later model without photo 4 clears its stale prediction
    snapshot = ds.values(["photo_id", "p_popular", "prediction_loss"])
    assert X.write_predictions(ds, preds)["written"] == 3
    assert ds.values(["photo_id", "p_popular", "prediction_loss"]) == snapshot
    counts = X.write_predictions(ds, preds.filter(pl.col("photo_id") != 4))
    assert counts["cleared"] == 1 and ds.exists("p_popular").count() == 2
    assert ds.match({"photo_id": 4}).first().popularity_prediction is None


def test_predictions_need_photo_id_label_and_p(fo) -> None:
    with pytest.raises(X.ExplorationError, match="lack column"):
        X.prediction_frame(pl.DataFrame({"photo_id": [1], "p": [0.5]}))


def test_connect_switches_databases_in_one_process(fo, mongo_uri, tiny, tmp_path) -> None:  # noqa: F811
    examples, images, store = tiny
    commit = _commit(tmp_path)
    name = X.dataset_name(commit)
    media = X.local_media(store, tmp_path / "media")
    X.build_fiftyone_dataset(fo, name, examples, images, media, commit, similarity=False)
    other = X.connect_fiftyone(mongo_uri, DB + "-other")
    assert other.config.database_name == DB + "-other" and not other.dataset_exists(name)
    back = X.connect_fiftyone(mongo_uri, DB)
    assert back.dataset_exists(name) and len(back.load_dataset(name)) == N
