"""One contract for both object stores: the local folder and S3 (moto's server over HTTP)."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from my_data_platform.core.objectstore import (
    InvalidKeyError,
    LinkRefusedError,
    LocalObjectStore,
    ObjectNotFoundError,
    ObjectStore,
    ObjectStoreError,
    S3ObjectStore,
    validate_key,
)
from my_data_platform_tests.conftest import s3_client


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "lake")
    endpoint = request.getfixturevalue("s3_server")
    client = s3_client(endpoint)
    bucket = f"contract-{abs(hash(str(tmp_path))) % 10**8}"
    client.create_bucket(Bucket=bucket)
    return S3ObjectStore(
        client,
        bucket,
        "pfx",
        endpoint_url=endpoint,
        credentials={"aws_access_key_id": "testing", "aws_secret_access_key": "testing-secret"},
    )


def test_put_get_head_delete(store: ObjectStore) -> None:
    info = store.put_bytes("landing/a/b.txt", b"hello")
    assert info.size == 5 and info.key == "landing/a/b.txt"
    assert store.get_bytes("landing/a/b.txt") == b"hello"
    head = store.head("landing/a/b.txt")
    assert head is not None and head.size == 5
    store.put_bytes("landing/a/b.txt", b"hello, again")
    head2 = store.head("landing/a/b.txt")
    assert head2 is not None and head2.etag != head.etag  # a rewrite is a new version
    store.delete("landing/a/b.txt")
    assert store.head("landing/a/b.txt") is None
    with pytest.raises(ObjectNotFoundError, match=r"landing/a/b.txt"):
        store.get_bytes("landing/a/b.txt")


def test_list_is_sorted_and_resumes_after_a_key(store: ObjectStore) -> None:
    keys = [
        f"landing/events/date=2026-01-0{d}/part-{i}.jsonl.gz" for d in (3, 1, 2) for i in (1, 0)
    ]
    for k in keys:
        store.put_bytes(k, k.encode())
    store.put_bytes("landing/photos/x.jpg", b"x")
    listed = [o.key for o in store.list("landing/events/")]
    assert listed == sorted(keys)
    resumed = [o.key for o in store.list("landing/events/", start_after=sorted(keys)[2])]
    assert resumed == sorted(keys)[3:]
    assert [o.key for o in store.list("landing/events/date=2026-01-02/")] == sorted(keys)[2:4]
    assert list(store.list("nothing/here/")) == []


def test_writing_publishes_only_on_success(store: ObjectStore) -> None:
    with store.writing("lake/t.parquet", suffix=".parquet") as path:
        pl.DataFrame({"a": [1, 2, 3]}).write_parquet(path)
    with pytest.raises(RuntimeError), store.writing("lake/t.parquet") as path:
        path.write_bytes(b"half written")
        raise RuntimeError("writer crashed")
    # the failed write left the published object untouched
    assert pl.read_parquet(store.get_bytes("lake/t.parquet"))["a"].to_list() == [1, 2, 3]
    assert [o.key for o in store.list("lake/")] == ["lake/t.parquet"]


def test_a_copy_keeps_its_bytes_when_the_source_is_rewritten_or_deleted(
    store: ObjectStore,
) -> None:
    store.put_bytes("lake/a/src.bin", b"first version")
    info = store.copy("lake/a/src.bin", "warehouse/t/copy.bin")
    assert info.key == "warehouse/t/copy.bin" and info.size == len(b"first version")
    assert store.get_bytes("warehouse/t/copy.bin") == b"first version"
    with store.writing("lake/a/src.bin") as path:  # the way the lake republishes a day
        path.write_bytes(b"second, longer version")
    assert store.get_bytes("warehouse/t/copy.bin") == b"first version"
    store.delete("lake/a/src.bin")
    assert store.get_bytes("warehouse/t/copy.bin") == b"first version"
    assert [o.key for o in store.list("warehouse/")] == ["warehouse/t/copy.bin"]
    with pytest.raises(ObjectNotFoundError, match=r"lake/a/src\.bin"):
        store.copy("lake/a/src.bin", "warehouse/t/other.bin")
    with pytest.raises(InvalidKeyError):
        store.copy("warehouse/t/copy.bin", "../outside.bin")


def test_key_of_inverts_uri_and_refuses_what_is_outside(store: ObjectStore, tmp_path: Path) -> None:
    for key in ("lake/events/date=2026-01-01/events.parquet", "a"):
        assert store.key_of(store.uri(key)) == key
    prefix_uri = store.uri("warehouse/x")[: -len("x")]  # "<root>/warehouse/"
    assert store.key_of(prefix_uri) == "warehouse/"
    outside = [str(tmp_path / "elsewhere" / "f.parquet"), "relative/f.parquet", "s3://other/f"]
    if isinstance(store, LocalObjectStore):
        outside.append(str(store.root / ".." / "escape.parquet"))
    else:
        outside.append(store.uri("a").replace(f"s3://{store.bucket}/", "s3://another-bucket/"))
    for uri in outside:
        assert store.key_of(uri) is None, uri


def test_local_writes_stay_hidden_beside_their_destination(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "lake")
    with store.writing("lake/d/t.bin") as path:
        assert path.parent == store.root / "lake" / "d"  # published by a rename, not a copy
        path.write_bytes(b"x")
        assert list(store.list("lake/")) == []
    assert [o.key for o in store.list("lake/")] == ["lake/d/t.bin"]
    assert sorted(p.name for p in (store.root / "lake" / "d").iterdir()) == ["t.bin"]


def test_duckdb_and_polars_read_uri(store: ObjectStore) -> None:
    with store.writing("lake/t.parquet", suffix=".parquet") as path:
        pl.DataFrame({"a": [1, 2, 3]}).write_parquet(path)
    conn = duckdb.connect()
    store.configure_duckdb(conn)
    assert conn.execute(
        "SELECT sum(a) FROM read_parquet(?)", [store.uri("lake/t.parquet")]
    ).fetchone() == (6,)
    df = pl.read_parquet(
        store.uri("lake/t.parquet"), storage_options=store.polars_storage_options()
    )
    assert df["a"].sum() == 6


def test_concurrent_readers_never_see_partial_objects(store: ObjectStore) -> None:
    big_a, big_b = b"a" * 2_000_000, b"b" * 3_000_000
    store.put_bytes("lake/big.bin", big_a)
    seen: set[int] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.add(len(store.get_bytes("lake/big.bin")))

    t = threading.Thread(target=reader)
    t.start()
    for i in range(10):
        store.put_bytes("lake/big.bin", big_b if i % 2 == 0 else big_a)
    stop.set()
    t.join()
    assert seen <= {len(big_a), len(big_b)}


@pytest.mark.parametrize(
    "bad", ["", "/abs/key", "a/../b", "..", "a//b", "a/./b", "a\\b", "a/\x00", "./a"]
)
def test_unsafe_keys_are_refused(store: ObjectStore, bad: str) -> None:
    with pytest.raises(InvalidKeyError):
        store.put_bytes(bad, b"x")


@given(st.lists(st.sampled_from(["a", "b", "..", ".", "", "c=1", "x.y"]), min_size=1, max_size=5))
def test_validate_key_never_escapes_the_root(segments: list[str]) -> None:
    key = "/".join(segments)
    try:
        validate_key(key)
    except InvalidKeyError:
        return
    resolved = (Path("/root") / key).resolve()
    assert str(resolved).startswith("/root/")


def test_unreachable_s3_endpoint_is_a_clear_error() -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    store = S3ObjectStore(client, "bucket", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(ObjectStoreError, match=r"127\.0\.0\.1:9"):
        list(store.list("landing/"))


# --- containment: the local store never follows a symbolic link -------------------------------


@pytest.fixture
def linked(tmp_path: Path) -> tuple[LocalObjectStore, Path]:
    """A store whose landing area holds links out of and within its root, beside a canary."""
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    canary = outside / "passwd"
    canary.write_bytes(b"root:x:0:0:canary\n")
    (outside / "dir" / "secret.txt").write_bytes(b"secret")
    store = LocalObjectStore(tmp_path / "lake")
    store.put_bytes("landing/ok.txt", b"ok")
    land = store.root / "landing"
    (land / "file_out.txt").symlink_to(canary)
    (land / "dir_out").symlink_to(outside / "dir", target_is_directory=True)
    (land / "file_in.txt").symlink_to(land / "ok.txt")
    (land / "loop").symlink_to(land / "loop")
    (land / "dangling").symlink_to(outside / "missing")
    os.mkfifo(land / "fifo")
    return store, canary


def test_listing_skips_links_and_special_files(linked: tuple[LocalObjectStore, Path]) -> None:
    store, _ = linked
    assert [o.key for o in store.list("landing/")] == ["landing/ok.txt"]
    assert [o.key for o in store.list("")] == ["landing/ok.txt"]
    assert list(store.list("landing/dir_out/")) == []  # a listing never starts inside a link


@pytest.mark.parametrize(
    "key",
    [
        "landing/file_out.txt",
        "landing/dir_out/secret.txt",
        "landing/file_in.txt",
        "landing/loop",
        "landing/dangling",
    ],
)
def test_reads_and_writes_through_a_link_are_refused_naming_the_key(
    linked: tuple[LocalObjectStore, Path], key: str
) -> None:
    store, canary = linked
    before = canary.read_bytes()
    for op in (
        lambda: store.get_bytes(key),
        lambda: store.head(key),
        lambda: store.uri(key),
        lambda: store.put_bytes(key, b"overwritten"),
        lambda: store.copy("landing/ok.txt", key),
        lambda: store.copy(key, "landing/copy.txt"),
        lambda: store.delete(key),
    ):
        with pytest.raises(LinkRefusedError, match=re.escape(repr(key))):
            op()
    assert canary.read_bytes() == before
    assert (canary.parent / "dir" / "secret.txt").read_bytes() == b"secret"
    assert not (canary.parent / "missing").exists()
    assert not store.exists("landing/copy.txt")


def test_writing_under_a_linked_folder_is_refused(linked: tuple[LocalObjectStore, Path]) -> None:
    store, canary = linked
    with pytest.raises(LinkRefusedError, match="dir_out"):
        store.put_bytes("landing/dir_out/new.txt", b"x")
    assert sorted(p.name for p in (canary.parent / "dir").iterdir()) == ["secret.txt"]


def test_a_link_swapped_in_after_the_check_is_not_followed(
    linked: tuple[LocalObjectStore, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = linked
    # the check passes on the plain path; the open must still refuse the link
    monkeypatch.setattr(LocalObjectStore, "_path", lambda self, key: self.root / key)
    with pytest.raises(LinkRefusedError, match="file_out"):
        store.get_bytes("landing/file_out.txt")


def test_special_files_are_not_read(linked: tuple[LocalObjectStore, Path]) -> None:
    store, _ = linked
    with pytest.raises(ObjectStoreError, match="not a regular file"):
        store.get_bytes("landing/fifo")
