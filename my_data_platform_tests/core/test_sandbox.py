"""The analyst sandbox, judged by what happens on disk and on a local HTTP listener."""

from __future__ import annotations

import hashlib
import http.server
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from my_data_platform.core.duck import load_extension
from my_data_platform.core.sandbox import (
    AnalystSession,
    QueryRefused,
    QueryTimeout,
    S3ReadCredentials,
    SandboxError,
    check_query,
    open_analyst_session,
)
from my_data_platform.core.warehouse import WarehouseLocation, connect
from my_data_platform_tests.core.hostile_queries import HOSTILE_QUERIES

HOST_SECRET = "HOST-SECRET-7f3a9c"
OLTP_SECRET = "OLTP-SECRET-1b2c3d"


@dataclass
class World:
    root: Path
    location: WarehouseLocation
    host_file: Path
    canary_dir: Path
    other_db: Path
    url: str
    requests: list[str]

    @property
    def catalog_file(self) -> Path:
        assert self.location.catalog_file is not None
        return self.location.catalog_file

    def fill(self, template: str) -> str:
        return template.format(
            host_file=self.host_file,
            canary_dir=self.canary_dir,
            data=self.location.data_path,
            catalog=self.catalog_file,
            other_db=self.other_db,
            url=self.url,
        )

    def fingerprint(self) -> dict[str, str]:
        """Every file under the world and its content hash. SQLite's shared-memory index
        (``-shm``) is left out: a WAL-mode reader updates its read marks there."""
        return {
            str(p.relative_to(self.root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and not p.name.endswith("-shm")
        }


class _Listener(http.server.BaseHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        body = HOST_SECRET.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("sandbox")
    location = WarehouseLocation(
        catalog=f"sqlite:{root / 'catalog' / 'catalog.sqlite'}",
        data_path=f"{root / 'data'}/",
    )
    conn = connect(location, threads=1)  # the project's own writer: WAL mode, same attach
    try:
        conn.execute("CREATE SCHEMA warehouse")
        conn.execute("CREATE TABLE warehouse.users (user_id INTEGER, country VARCHAR)")
        conn.execute("INSERT INTO warehouse.users VALUES (1, 'FR'), (2, 'DE'), (3, 'FR')")
        conn.execute("CREATE TABLE warehouse.events (user_id INTEGER, kind VARCHAR, n INTEGER)")
        conn.execute(
            "INSERT INTO warehouse.events SELECT 1 + i % 3, "
            "CASE WHEN i % 2 = 0 THEN 'like' ELSE 'view' END, i FROM range(2000) t(i)"
        )
        conn.execute("INSERT INTO warehouse.events VALUES (3, 'like', 5000)")
    finally:
        conn.close()
    assert list((root / "data").rglob("*.parquet")), "the test warehouse has data files"
    host = root / "host"
    host.mkdir()
    host_file = host / "secret.csv"
    host_file.write_text(f"token\n{HOST_SECRET}\n")
    canary_dir = root / "canary"
    canary_dir.mkdir()
    (canary_dir / "canary.txt").write_text("unchanged\n")
    other_db = host / "oltp.sqlite"
    with sqlite3.connect(other_db) as db:
        db.execute("CREATE TABLE secrets (value TEXT)")
        db.execute("INSERT INTO secrets VALUES (?)", [OLTP_SECRET])
    db.close()
    requests: list[str] = []
    handler = type("Handler", (_Listener,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    probe = duckdb.connect()  # the listener works: an unlocked session with httpfs reaches it
    load_extension(probe, "httpfs")
    assert probe.execute(f"SELECT content FROM read_text('{url}')").fetchall() == [(HOST_SECRET,)]
    probe.close()
    assert requests
    requests.clear()
    try:
        yield World(root, location, host_file, canary_dir, other_db, url, requests)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def session(world: World) -> Iterator[AnalystSession]:
    with open_analyst_session(world.location.catalog, world.location.data_path) as s:
        s.run("SELECT count(*) FROM warehouse.events")  # SQLite's WAL files now exist
        yield s


# ---------------------------------------------------------------------------------------------
# Hostile queries


@pytest.mark.parametrize("name", sorted(HOSTILE_QUERIES))
def test_hostile_query_is_refused_and_changes_nothing(
    name: str, world: World, session: AnalystSession
) -> None:
    sql = world.fill(HOSTILE_QUERIES[name])
    before = world.fingerprint()
    with pytest.raises(QueryRefused) as refused:
        session.run(sql)
    reason = str(refused.value)
    assert reason.startswith("refused: ") and "\n" not in reason
    assert HOST_SECRET not in reason and OLTP_SECRET not in reason
    assert world.fingerprint() == before
    assert world.requests == []
    # The session is still whole: the warehouse is attached, its data unchanged.
    assert session.run("SELECT count(*), sum(n) FROM warehouse.events")[1] == [
        (2001, 1999000 + 5000)
    ]


def test_the_corpus_is_large_enough() -> None:
    assert len(HOSTILE_QUERIES) >= 30


@pytest.mark.parametrize(
    ("what", "sql"),
    [
        ("write outside", "COPY (SELECT 1) TO '{canary_dir}/out.csv'"),
        ("read a host file", "SELECT * FROM read_text('{host_file}')"),
        ("glob the host", "SELECT * FROM glob('{canary_dir}/*')"),
        ("attach a duckdb file", "ATTACH '{canary_dir}/new.duckdb' AS n"),
        ("fetch a URL", "SELECT * FROM read_text('{url}')"),
        ("load an extension", "LOAD httpfs"),
        ("install an extension", "INSTALL httpfs"),
        ("unlock", "SET lock_configuration = false"),
        ("open access", "SET enable_external_access = true"),
        ("widen paths", "SET allowed_directories = ['/']"),
        ("raise memory", "SET memory_limit = '100GB'"),
        ("write the catalog", "INSERT INTO warehouse.events VALUES (9, 'x', 9)"),
        ("maintenance", "CALL ducklake_expire_snapshots('mdp', older_than => now())"),
    ],
)
def test_duckdb_controls_alone_stop_the_escape(
    what: str, sql: str, world: World, session: AnalystSession
) -> None:
    """Defence in depth: run past the allow-list, straight on the locked connection."""
    before = world.fingerprint()
    with pytest.raises(duckdb.Error) as exc:
        session._conn.execute(world.fill(sql)).fetchall()
    assert HOST_SECRET not in str(exc.value) and OLTP_SECRET not in str(exc.value)
    assert world.fingerprint() == before
    assert world.requests == []


def test_sqlite_files_bypass_duckdb_file_controls_so_the_allow_list_stops_them(
    world: World,
) -> None:
    """A fact of DuckDB 1.5.5 worth a test: the sqlite extension opens files through SQLite,
    not DuckDB's file system, so ``enable_external_access = false`` does not stop
    ``sqlite_scan`` or ``ATTACH ... (TYPE sqlite)`` (a session of its own: it attaches)."""
    scan = world.fill("SELECT * FROM sqlite_scan('{other_db}', 'secrets')")
    attach = world.fill("ATTACH '{other_db}' AS other (TYPE sqlite)")
    with open_analyst_session(world.location.catalog, world.location.data_path) as s:
        for sql in (scan, attach):
            with pytest.raises(QueryRefused):
                s.run(sql)
        assert s._conn.execute(scan).fetchall() == [(OLTP_SECRET,)]
        s._conn.execute(attach)
        assert s._conn.execute("SELECT * FROM other.secrets").fetchall() == [(OLTP_SECRET,)]


def test_the_data_path_is_writable_to_duckdb_so_the_allow_list_is_what_stops_copy(
    world: World, session: AnalystSession
) -> None:
    """A fact of DuckDB 1.5.5 worth a test: ``allowed_directories`` allows writes as well as
    reads, so ``COPY ... TO '<data path>'`` is stopped by the statement check alone."""
    target = Path(world.location.data_path) / "probe.csv"
    with pytest.raises(QueryRefused):
        session.run(f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{target}'")
    assert not target.exists()
    session._conn.execute(f"COPY (SELECT 1) TO '{target}'")
    assert target.exists()
    target.unlink()


def test_maintenance_writes_files_even_on_a_read_only_attach(tmp_path: Path) -> None:
    """A fact of DuckDB 1.5.5 worth a test: ``ducklake_merge_adjacent_files`` on a READ_ONLY
    attach writes its merged Parquet file into the data path before its commit fails, so the
    table-function allow-list is what stops it."""
    location = WarehouseLocation(f"sqlite:{tmp_path / 'catalog.sqlite'}", f"{tmp_path}/data/")
    conn = connect(location, threads=1)
    conn.execute("CREATE SCHEMA w")
    conn.execute("CREATE TABLE w.t (i INTEGER)")
    for _ in range(4):
        conn.execute("INSERT INTO w.t SELECT * FROM range(100)")
    conn.close()
    files = set((tmp_path / "data").rglob("*.parquet"))
    merge = "SELECT * FROM ducklake_merge_adjacent_files('mdp')"
    with open_analyst_session(location.catalog, location.data_path) as s:
        with pytest.raises(QueryRefused, match="ducklake_merge_adjacent_files"):
            s.run(merge)
        assert set((tmp_path / "data").rglob("*.parquet")) == files
        with pytest.raises(duckdb.Error, match="commit"):
            s._conn.execute(merge).fetchall()
    assert len(set((tmp_path / "data").rglob("*.parquet")) - files) == 1


def test_settings_are_as_configured_and_locked(session: AnalystSession, world: World) -> None:
    rows = dict(
        session._conn.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
            "'lock_configuration', 'autoinstall_known_extensions', 'autoload_known_extensions', "
            "'allow_persistent_secrets', 'temp_directory', 'threads', 'allowed_directories')"
        ).fetchall()
    )
    assert rows["enable_external_access"] == "false"
    assert rows["lock_configuration"] == "true"
    assert rows["autoinstall_known_extensions"] == "false"
    assert rows["autoload_known_extensions"] == "false"
    assert rows["allow_persistent_secrets"] == "false"
    assert rows["temp_directory"] == ""
    assert rows["threads"] == "2"
    assert rows["allowed_directories"] == f"[{world.location.data_path}]"


def test_a_long_query_is_interrupted_by_the_timeout(world: World, session: AnalystSession) -> None:
    before = world.fingerprint()
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match=r"timed out after 0\.5 s"):
        session.run("SELECT count(*) FROM range(100000000) a, range(100000000) b", timeout_s=0.5)
    assert time.monotonic() - started < 10
    assert session.run("SELECT count(*) FROM warehouse.users")[1] == [(3,)]
    assert world.fingerprint() == before


def test_the_memory_limit_holds_and_nothing_spills_to_disk(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # DuckDB's default temp directory is ./.tmp
    before = world.fingerprint()
    with open_analyst_session(
        world.location.catalog, world.location.data_path, memory_limit="64MB", threads=1
    ) as s:
        with pytest.raises(duckdb.OutOfMemoryException):
            s.run("SELECT list(x ORDER BY random()) FROM range(50000000) t(x)")
        assert s.run("SELECT count(*) FROM warehouse.users")[1] == [(3,)]
    assert list(tmp_path.iterdir()) == []
    assert world.fingerprint() == before


# ---------------------------------------------------------------------------------------------
# Credentials


def test_s3_data_path_without_read_credentials_refuses_to_start(world: World) -> None:
    with pytest.raises(SandboxError, match="read-only credentials of its own"):
        open_analyst_session(world.location.catalog, "s3://bucket/warehouse/")


def test_s3_session_holds_only_its_own_scoped_secret(world: World, tmp_path: Path) -> None:
    """A warehouse whose data path is on S3 (nothing is read from it here): the session has
    the analysts' key, scoped to the data path, and still cannot fetch a URL."""
    location = WarehouseLocation(f"sqlite:{tmp_path / 'catalog.sqlite'}", "s3://bucket/wh/")
    connect(location, threads=1).close()
    credentials = S3ReadCredentials("ANALYST_KEY", "analyst-secret", endpoint="127.0.0.1:9")
    assert "analyst-secret" not in repr(credentials)
    with open_analyst_session(
        location.catalog, location.data_path, read_credentials=credentials
    ) as s:
        secrets = s._conn.execute("SELECT name, scope, secret_string FROM duckdb_secrets()")
        ((name, scope, text),) = secrets.fetchall()
        assert (name, scope) == ("mdp_analyst_s3", ["s3://bucket/wh/"])
        assert "ANALYST_KEY" in text and "analyst-secret" not in text  # DuckDB redacts it
        with pytest.raises(QueryRefused, match="duckdb_secrets"):
            s.run("SELECT * FROM duckdb_secrets()")
        with pytest.raises(duckdb.Error):  # httpfs is loaded, yet no URL is reachable
            s._conn.execute(f"SELECT * FROM read_text('{world.url}')").fetchall()
    assert world.requests == []


# ---------------------------------------------------------------------------------------------
# What analysts do


def test_queries_return_the_right_rows(session: AnalystSession) -> None:
    cols, rows = session.run(
        "SELECT u.country, e.kind, count(*) AS n FROM warehouse.events e "
        "JOIN warehouse.users u USING (user_id) GROUP BY ALL ORDER BY ALL"
    )
    assert cols == ["country", "kind", "n"]
    assert rows == [
        ("DE", "like", 333),
        ("DE", "view", 334),
        ("FR", "like", 668),
        ("FR", "view", 666),
    ]
    assert session.run(
        "WITH f AS (SELECT user_id FROM warehouse.users WHERE country = 'FR') "
        "SELECT max(n) FROM warehouse.events WHERE user_id IN (SELECT user_id FROM f)"
    )[1] == [(5000,)]
    assert session.run(
        "SELECT user_id FROM warehouse.users WHERE country = 'DE' UNION ALL SELECT 42 ORDER BY 1"
    )[1] == [(2,), (42,)]
    assert session.run("SELECT 1; SELECT 2 AS two") == (["two"], [(2,)])


def test_introspection_and_history(session: AnalystSession) -> None:
    assert session.run("DESCRIBE warehouse.users")[1][0][:2] == ("user_id", "INTEGER")
    tables = session.run("SHOW ALL TABLES")[1]
    assert sorted(r[2] for r in tables) == ["events", "users"]
    assert ("warehouse", "users") in session.run(
        "SELECT schema_name, table_name FROM duckdb_tables()"
    )[1]
    summary = session.run("SUMMARIZE warehouse.users")
    assert [r[0] for r in summary[1]] == ["user_id", "country"]
    (last,) = session.run("SELECT max(snapshot_id) FROM ducklake_snapshots('mdp')")[1][0]
    first = session.run(f"SELECT count(*) FROM warehouse.events AT (VERSION => {last - 1})")[1]
    assert first == [(2000,)]


def test_explain_and_explain_analyze_of_a_query_run(session: AnalystSession) -> None:
    cols, rows = session.run("EXPLAIN SELECT count(*) FROM warehouse.events")
    assert cols == ["explain_key", "explain_value"] and "physical_plan" in rows[0][0]
    rows = session.run("/* why slow */ explain analyze SELECT count(*) FROM warehouse.events")[1]
    assert rows[0][0] == "analyzed_plan" and "Total Time" in rows[0][1]


def test_check_query_rebuilds_explain_from_the_checked_statement(
    session: AnalystSession,
) -> None:
    conn = session._conn
    assert check_query(conn, "-- c\nexplain analyse select 1") == ["EXPLAIN ANALYZE select 1"]
    assert check_query(conn, "SELECT 1; SELECT 2") == ["SELECT 1", " SELECT 2"]
    with pytest.raises(QueryRefused, match="COPY"):
        check_query(conn, "EXPLAIN ANALYZE COPY (SELECT 1) TO 'x.csv'")
    with pytest.raises(QueryRefused, match="no statement"):
        check_query(conn, "  -- nothing\n")
    with pytest.raises(QueryRefused, match="cannot parse"):
        check_query(conn, "SELEC 1")


def test_a_missing_warehouse_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="has not been built yet"):
        open_analyst_session(f"sqlite:{tmp_path / 'none.sqlite'}", f"{tmp_path}/data/")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_s3_warehouse_is_read_with_the_analysts_key_and_nothing_else(
    s3_server: str, world: World
) -> None:
    """Over moto's S3 server: the pipeline writes with its key, the analysts read with theirs,
    and an object beside the warehouse prefix stays out of reach."""
    import boto3

    bucket = "mdp-sandbox"
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="pipeline",
        aws_secret_access_key="pipeline-secret",
    )
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="other/secret.txt", Body=HOST_SECRET.encode())
    endpoint = s3_server.removeprefix("http://")
    location = WarehouseLocation(
        f"sqlite:{world.root / 's3catalog' / 'catalog.sqlite'}", f"s3://{bucket}/wh/"
    )
    # The pipeline's key, as a secret of the same shape (S3ReadCredentials only builds it).
    pipeline = S3ReadCredentials("pipeline", "pipeline-secret", endpoint=endpoint, use_ssl=False)
    conn = connect(location, threads=1)
    conn.execute(pipeline.secret_sql(f"s3://{bucket}/"))
    conn.execute("CREATE SCHEMA warehouse")
    conn.execute("CREATE TABLE warehouse.t AS SELECT range AS i FROM range(1000)")
    conn.close()
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="wh/")["Contents"]
    assert any(o["Key"].endswith(".parquet") for o in listed)

    analyst = S3ReadCredentials("analyst", "analyst-secret", endpoint=endpoint, use_ssl=False)
    with open_analyst_session(location.catalog, location.data_path, read_credentials=analyst) as s:
        assert s.run("SELECT count(*), sum(i) FROM warehouse.t")[1] == [(1000, 499500)]
        secrets = s._conn.execute("SELECT name, secret_string FROM duckdb_secrets()").fetchall()
        assert [n for n, _ in secrets] == ["mdp_analyst_s3"]
        assert "key_id=analyst" in secrets[0][1] and "pipeline" not in secrets[0][1]
        with pytest.raises(QueryRefused):
            s.run(f"SELECT * FROM read_text('s3://{bucket}/other/secret.txt')")
        with pytest.raises(duckdb.PermissionException):
            s._conn.execute(f"SELECT * FROM read_text('s3://{bucket}/other/secret.txt')").fetchall()
        with pytest.raises(duckdb.Error):
            s._conn.execute(f"COPY (SELECT 1) TO 's3://{bucket}/other/x.csv'")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert "other/x.csv" not in keys


def test_arrow_results_are_typed_and_checked(session: AnalystSession) -> None:
    table = session.arrow("SELECT user_id, country FROM warehouse.users ORDER BY user_id")
    assert table.column_names == ["user_id", "country"]
    assert str(table.schema.field("user_id").type) == "int32"
    assert table.column("country").to_pylist() == ["FR", "DE", "FR"]
    with pytest.raises(QueryRefused, match="duckdb_settings"):
        session.arrow("SELECT * FROM duckdb_settings()")
