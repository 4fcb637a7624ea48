"""Session-scoped real servers on loopback for the scale-out tests.

Each fixture starts its server once per test session (per xdist worker) and stops it at the end;
a server that cannot start fails the tests that need it (never a skip: `make test` must run the
distributed test). Tests isolate themselves inside a server (a database, bucket or Redis db of
their own) rather than starting another one.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from my_data_platform_tests.core.versioning.lakefs_server import LakeFSTestServer
from my_data_platform_tests.scaleout.servers import (
    MongodServer,
    MotoS3,
    PostgresServer,
    RedisServer,
)

_names = itertools.count()


def unique_name(request: pytest.FixtureRequest, prefix: str) -> str:
    """A database/bucket name unique in the session, readable in server logs."""
    stem = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:30]
    return f"{prefix}_{stem}_{next(_names)}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    with MotoS3() as server:
        yield server


@pytest.fixture(scope="session")
def mongod_server() -> Iterator[MongodServer]:
    with MongodServer() as server:
        yield server


@pytest.fixture(scope="session")
def lakefs_test_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakeFSTestServer]:
    """The lakeFS API test double for dataset versions: an HTTP server thread in this process
    on 127.0.0.1 (workers reach it at ``.endpoint`` with ``.access_key_id`` and
    ``.secret_access_key``)."""
    root: Path = tmp_path_factory.mktemp("lakefs")
    with LakeFSTestServer(root) as server:
        yield server


@pytest.fixture
def pg_database(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh database on the session's PostgreSQL server; its libpq DSN."""
    return postgres_server.create_database(unique_name(request, "t"))


@pytest.fixture
def s3_bucket(moto_s3: MotoS3, request: pytest.FixtureRequest) -> str:
    """A fresh bucket on the session's moto S3 server; its name."""
    return moto_s3.create_bucket(unique_name(request, "b").replace("_", "-")[:63])
