"""Each scale-out server answers real round trips, and DuckLake runs on PostgreSQL + S3.

Why: the distributed test is only as good as its servers; these pin down that each fixture is
a real server (authentication, persistence across connections, other processes reaching it)
and record how DuckLake behaves when two writers commit at once, which decides where the
warehouse needs retries or locks on a PostgreSQL catalog.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from my_data_platform.core import warehouse as wh
from my_data_platform.core.duck import load_extension
from my_data_platform.core.objectstore import S3ObjectStore
from my_data_platform_tests.core.versioning.lakefs_server import LakeFSTestServer
from my_data_platform_tests.scaleout.servers import (
    MongodServer,
    MotoS3,
    PostgresServer,
    RedisServer,
    ServerBinaryMissingError,
    ServerError,
    _which,
)

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_postgres_round_trip_and_password_required(
    postgres_server: PostgresServer, pg_database: str
) -> None:
    import psycopg2

    with psycopg2.connect(pg_database) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id int PRIMARY KEY, name text)")
        cur.execute("INSERT INTO t VALUES (%s, %s), (%s, %s)", (1, "a'b", 2, "c"))
    conn.close()
    with psycopg2.connect(pg_database) as conn, conn.cursor() as cur:  # a new session sees it
        cur.execute("SELECT id, name FROM t ORDER BY id")
        assert cur.fetchall() == [(1, "a'b"), (2, "c")]
        cur.execute("SHOW listen_addresses")
        assert cur.fetchone() == ("127.0.0.1",)
    conn.close()
    wrong = pg_database.replace(postgres_server.password, "not-the-password")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(wrong, connect_timeout=5)
    with pytest.raises(ValueError, match="not a plain database name"):
        postgres_server.create_database('x"; DROP DATABASE postgres; --')


def test_redis_round_trip(redis_server: RedisServer) -> None:
    import redis

    client = redis.Redis.from_url(redis_server.db_url(3))
    try:
        assert client.ping() is True
        client.set("scaleout:key", b"\x00value\xff")
        assert client.get("scaleout:key") == b"\x00value\xff"
        assert client.config_get("save") == {"save": ""}  # no persistence
        assert client.config_get("protected-mode") == {"protected-mode": "yes"}
        assert client.config_get("bind")["bind"] == "127.0.0.1"
    finally:
        client.close()


def test_moto_round_trip_from_another_process(moto_s3: MotoS3, s3_bucket: str) -> None:
    client = moto_s3.client()
    client.put_object(Bucket=s3_bucket, Key="a/b.bin", Body=b"payload\x00")
    assert client.get_object(Bucket=s3_bucket, Key="a/b.bin")["Body"].read() == b"payload\x00"
    # another process (as a celery worker would) reads it over HTTP
    script = textwrap.dedent(f"""
        import boto3
        c = boto3.client("s3", endpoint_url={moto_s3.endpoint_url!r}, region_name="us-east-1")
        print(c.get_object(Bucket={s3_bucket!r}, Key="a/b.bin")["Body"].read().hex())
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
        env={**os.environ, **moto_s3.credentials}, check=True,
    )  # fmt: skip
    assert bytes.fromhex(out.stdout.strip()) == b"payload\x00"


def test_mongod_round_trip(mongod_server: MongodServer) -> None:
    import pymongo

    client: pymongo.MongoClient = pymongo.MongoClient(
        mongod_server.uri, serverSelectionTimeoutMS=5000
    )
    try:
        coll = client["scaleout"]["samples"]
        coll.insert_many([{"_id": i, "path": f"s3://b/{i}.jpg"} for i in range(3)])
        assert [d["path"] for d in coll.find({}, sort=[("_id", -1)])] == [
            "s3://b/2.jpg",
            "s3://b/1.jpg",
            "s3://b/0.jpg",
        ]
    finally:
        client.close()


def test_a_server_that_cannot_start_fails_with_its_log(redis_server: RedisServer) -> None:
    """The port is taken: the error comes at once (not after the timeout), with the log."""
    server = RedisServer(port=redis_server.port)
    root = server.root
    with pytest.raises(ServerError, match="exited before it was ready") as info, server:
        pass
    assert "Address already in use" in str(info.value)
    assert not root.exists()  # cleaned up after the failed start


def test_lakefs_test_server_answers_another_process(lakefs_test_server: LakeFSTestServer) -> None:
    import base64

    auth = base64.b64encode(
        f"{lakefs_test_server.access_key_id}:{lakefs_test_server.secret_access_key}".encode()
    ).decode()
    script = textwrap.dedent(f"""
        import urllib.request, urllib.error
        def get(headers):
            req = urllib.request.Request({lakefs_test_server.endpoint!r}
                                         + "/api/v1/repositories/none", headers=headers)
            try:
                return urllib.request.urlopen(req, timeout=10).status
            except urllib.error.HTTPError as e:
                return e.code
        print(get({{}}), get({{"Authorization": "Basic {auth}"}}))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["401", "404"]  # refused without credentials; then no repo


def test_missing_binary_names_what_to_install() -> None:
    with pytest.raises(ServerBinaryMissingError, match="apt-get install redis-server"):
        _which(
            "redis-server-that-does-not-exist", ("/nonexistent",), "apt-get install redis-server"
        )


# ---------------------------------------------------------------------------------------------
# DuckLake: catalog on PostgreSQL, data on S3


def _product_location(dsn: str, bucket: str) -> wh.WarehouseLocation:
    return wh.WarehouseLocation(catalog=f"postgres:{dsn}", data_path=f"s3://{bucket}/warehouse/")


def _product_store(moto_s3: MotoS3, bucket: str) -> S3ObjectStore:
    return S3ObjectStore(
        moto_s3.client(), bucket, "platform", endpoint_url=moto_s3.endpoint_url,
        credentials={"aws_access_key_id": moto_s3.access_key_id,
                     "aws_secret_access_key": moto_s3.secret_access_key},
    )  # fmt: skip


def test_ducklake_on_postgres_and_s3_through_product_code(
    moto_s3: MotoS3, pg_database: str, s3_bucket: str
) -> None:
    """The project's own warehouse.connect attaches a postgres: catalog with an s3:// data
    path; a second process (a worker) reads what the first wrote."""
    location = _product_location(pg_database, s3_bucket)
    conn = wh.connect(location, _product_store(moto_s3, s3_bucket), threads=1)
    try:
        conn.execute("CREATE SCHEMA IF NOT EXISTS warehouse")
        conn.execute("CREATE TABLE warehouse.events (id BIGINT, kind VARCHAR)")
        # over DuckLake's inlining limit (10 rows), so the rows become Parquet files on S3
        conn.execute(
            "INSERT INTO warehouse.events SELECT range, 'k' || (range % 3) FROM range(500)"
        )
    finally:
        conn.close()
    keys = [o["Key"] for o in moto_s3.client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys and all(k.startswith("warehouse/warehouse/events/") for k in keys), keys
    assert all(k.endswith(".parquet") for k in keys)

    script = textwrap.dedent(f"""
        import json, sys
        from my_data_platform.core import warehouse as wh
        from my_data_platform_tests.scaleout.test_servers import _product_location, _product_store
        from my_data_platform_tests.scaleout.servers import MotoS3
        s3 = MotoS3.__new__(MotoS3); s3.port = {moto_s3.port}
        loc = _product_location({pg_database!r}, {s3_bucket!r})
        conn = wh.connect(loc, _product_store(s3, {s3_bucket!r}), read_only=True)
        rows = conn.execute(
            "SELECT kind, count(*), sum(id) FROM warehouse.events GROUP BY 1 ORDER BY 1"
        ).fetchall()
        print(json.dumps(rows))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    expected = [[f"k{m}", len(range(m, 500, 3)), sum(range(m, 500, 3))] for m in range(3)]
    assert json.loads(out.stdout) == expected


def _raw_conn(moto_s3: MotoS3, dsn: str, bucket: str) -> duckdb.DuckDBPyConnection:
    """A DuckDB instance of its own (as another process would have) with the lake attached
    the plain way an analyst would: ``ATTACH 'ducklake:postgres:...' (DATA_PATH 's3://...')``."""
    conn = duckdb.connect(":memory:")
    for ext in ("ducklake", "postgres", "httpfs"):
        load_extension(conn, ext)
    conn.execute(moto_s3.duckdb_secret_sql())
    conn.execute(f"ATTACH 'ducklake:postgres:{dsn}' AS wh (DATA_PATH 's3://{bucket}/wh/')")
    return conn


CONFLICT = "TransactionContext Error: Failed to commit: Failed to commit DuckLake transaction.\n"


@pytest.mark.parametrize(
    ("first", "second", "error", "expected"),
    [
        # appends, to one table or two: DuckLake retries the commit itself, both land
        ("INSERT INTO wh.p SELECT 5, range FROM range(50)",
         "INSERT INTO wh.p SELECT 6, range FROM range(50)", None, {0: 50, 1: 50, 5: 50, 6: 50}),
        ("DELETE FROM wh.p WHERE part = 0; INSERT INTO wh.p SELECT 0, range FROM range(70)",
         "DELETE FROM wh.q WHERE part = 0; INSERT INTO wh.q SELECT 0, range FROM range(70)",
         None, {0: 70, 1: 50}),
        # deleting different rows of one data file conflicts (conflicts are per file)
        (
            "DELETE FROM wh.p WHERE part = 0",
            "DELETE FROM wh.p WHERE part = 1",
            'Transaction conflict - attempting to delete from file with index "0" - but another '
            "transaction has deleted from it",
            {0: 50},
        ),
        # replacing two *different* partitions of one table conflicts (the IO manager's
        # delete-then-insert): the first committer wins, the other's COMMIT raises
        ("DELETE FROM wh.p WHERE part = 0; INSERT INTO wh.p SELECT 0, range FROM range(70)",
         "DELETE FROM wh.p WHERE part = 1; INSERT INTO wh.p SELECT 1, range FROM range(70)",
         'Transaction conflict - attempting to insert into table with index "1" - but another '
         "transaction has deleted from it", {0: 50, 1: 70}),
        ("CREATE TABLE wh.z (a INT)", "CREATE TABLE wh.z (a INT)",
         'Transaction conflict - attempting to create table "z" in schema "main" - but this '
         "table has been created by another transaction already", {0: 50, 1: 50}),
        ("CREATE SCHEMA IF NOT EXISTS wh.s", "CREATE SCHEMA IF NOT EXISTS wh.s",
         'Transaction conflict - attempting to create schema with name "s" - but another '
         "transaction has created a schema with this name already", {0: 50, 1: 50}),
    ],
    ids=["append-same-table", "replace-different-tables", "delete-disjoint",
         "replace-disjoint-partitions", "create-same-table", "create-same-schema"],
)  # fmt: skip
def test_ducklake_concurrent_writers(
    moto_s3: MotoS3,
    pg_database: str,
    s3_bucket: str,
    first: str,
    second: str,
    error: str | None,
    expected: dict[int, int],
) -> None:
    """Two writers (separate DuckDB instances, as two processes) overlap: both BEGIN, both
    write, the second commits first. Records which overlaps DuckLake merges (it retries a
    commit whose snapshot id was taken) and which fail, with the exact error."""
    a = _raw_conn(moto_s3, pg_database, s3_bucket)
    b = _raw_conn(moto_s3, pg_database, s3_bucket)
    try:
        for table in ("p", "q"):
            a.execute(f"CREATE TABLE wh.{table} (part INT, v BIGINT)")
            a.execute(f"INSERT INTO wh.{table} SELECT range % 2, range FROM range(100)")
        a.execute("BEGIN")
        b.execute("BEGIN")
        a.execute(first)
        b.execute(second)
        b.execute("COMMIT")
        if error is None:
            a.execute("COMMIT")
        else:
            with pytest.raises(duckdb.TransactionException) as info:
                a.execute("COMMIT")
            assert str(info.value) == CONFLICT + error
            # the failed COMMIT ended (rolled back) the transaction: the connection goes on
            assert a.execute("SELECT 1").fetchone() == (1,)
        # a third instance sees exactly the committed result
        c = _raw_conn(moto_s3, pg_database, s3_bucket)
        try:
            after = dict(c.execute("SELECT part, count(*) FROM wh.p GROUP BY 1").fetchall())
        finally:
            c.close()
        assert after == expected
    finally:
        a.close()
        b.close()


def test_oltp_world_on_postgres_with_either_driver(
    postgres_server: PostgresServer, moto_s3: MotoS3, s3_bucket: str, tmp_path: Path
) -> None:
    """The generator seeds the OLTP tables on PostgreSQL and the project reads them back.
    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3; the scaleout extra installs it
    beside psycopg2, so an MDP_OLTP_URL works with or without ``+psycopg2``."""
    from my_data_platform.core.oltp import read_table
    from my_data_platform.synth import generate_world
    from my_data_platform.synth.config import WorldConfig

    postgres_server.create_database("oltp_world")
    url = postgres_server.url("oltp_world")
    assert url.startswith("postgresql+psycopg2://")
    store = _product_store(moto_s3, s3_bucket)
    config = WorldConfig(days=1, users=20, photos=30, events_per_day=200)
    summary = generate_world(config, store, url, tmp_path / "ground_truth")
    photos = read_table(url, "photos", ["photo_id", "object_key"])
    assert photos.height == summary.photos == 30
    assert all(store.head(k) is not None for k in photos["object_key"].to_list()[:3])
    bare = read_table(
        postgres_server.url("oltp_world", driver="postgresql"), "photos", ["photo_id"]
    )
    assert bare["photo_id"].sort().to_list() == photos["photo_id"].sort().to_list()
