"""Fixtures: the same ``store`` on both backends, and the lakeFS API test server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from my_data_platform.core.versioning import LakeFSVersionStore, LocalVersionStore, VersionStore
from my_data_platform_tests.core.versioning.lakefs_server import LakeFSTestServer

BACKENDS = ["embedded", "lakefs"]


@pytest.fixture
def lakefs_server(tmp_path: Path) -> Iterator[LakeFSTestServer]:
    """A fresh lakeFS API test server on 127.0.0.1 (random port) per test.

    Its traffic is checked against the vendored lakeFS spec; leaving the ``with`` block fails
    the test if any request or response did not match (see ``LakeFSTestServer.assert_clean``).
    """
    with LakeFSTestServer(tmp_path / "lakefs-server") as server:
        yield server


def lakefs_store(server: LakeFSTestServer, **kwargs: object) -> LakeFSVersionStore:
    options: dict[str, object] = {
        "storage_namespace": "local://datasets",
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        # a tiny page size makes every listing walk several pages of the API's pagination
        "page_size": 7,
    }
    options.update(kwargs)
    return LakeFSVersionStore(
        server.endpoint,
        server.access_key_id,
        server.secret_access_key,
        "datasets",
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> VersionStore:
    """A created, empty repository on each backend."""
    if request.param == "embedded":
        s: VersionStore = LocalVersionStore(tmp_path / "store", "datasets", durable=False)
    else:
        s = lakefs_store(request.getfixturevalue("lakefs_server"))
    s.create_repository()
    return s
