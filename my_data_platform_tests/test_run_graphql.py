"""The webserver path of ``mdp run`` (production profile), against a real webserver and daemon.

``dagster-webserver`` and ``dagster-daemon`` run on loopback over ``graphql_defs`` (a tiny code
location, in-process executor) with a SQLite instance in a temporary DAGSTER_HOME; our client
registers dynamic partitions, launches backfills through ``launchPartitionBackfill`` and follows
them through ``partitionBackfillOrError``. The daemon's loop interval (30 s in Dagster, not
configurable) is shortened to 1 s in the daemon process, so a backfill ends in seconds.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from my_data_platform.core.graphql_client import (
    BackfillState,
    DagsterWebserverClient,
    GraphQLError,
    WebserverUnreachable,
)
from my_data_platform_tests.conftest import free_port

MODULE = "my_data_platform_tests.graphql_defs"
ROOT = Path(__file__).resolve().parent.parent
INSTANCE_YAML = """\
telemetry:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
"""
FAST_DAEMON = (
    "import sys, dagster._daemon.controller as c; c.DEFAULT_DAEMON_INTERVAL_SECONDS = 1; "
    "from dagster._daemon.cli import main; sys.argv[0] = 'dagster-daemon'; main()"
)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End the process group (the server and the code server it spawned)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def webserver() -> Iterator[tuple[str, Path]]:
    # not tmp_path_factory: a pytest started meanwhile by another user of this machine prunes
    # older pytest-of-<user> folders, this one included, while the servers still use it
    with tempfile.TemporaryDirectory(prefix="mdp-graphql-") as tmp:
        yield from _servers(Path(tmp))


def _servers(home: Path) -> Iterator[tuple[str, Path]]:
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(ROOT)}
    port = free_port()
    webserver_bin = str(Path(sys.executable).parent / "dagster-webserver")
    logs = home / "logs"
    logs.mkdir()
    procs = []
    try:
        for name, cmd in (
            (
                "webserver",
                [webserver_bin, "-m", MODULE, "-h", "127.0.0.1", "-p", f"{port}"],
            ),
            ("daemon", [sys.executable, "-c", FAST_DAEMON, "run", "-m", MODULE]),
        ):
            with (logs / f"{name}.log").open("wb") as out:  # the child keeps its own handle
                procs.append(
                    subprocess.Popen(
                        cmd,
                        env=env,
                        cwd=home,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # its own group: _stop ends its code server too
                    )
                )
        url = f"http://127.0.0.1:{port}"
        client = DagsterWebserverClient(url, timeout_s=10)
        deadline = time.monotonic() + 90
        while True:
            try:
                client.find_repository()
                break
            except GraphQLError:
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    log = (logs / "webserver.log").read_text()[-3000:]
                    raise AssertionError(f"webserver did not come up:\n{log}") from None
                time.sleep(0.5)
        yield url, home
    finally:
        for proc in procs:
            _stop(proc)


def _stored(home: Path, asset: str, day: str) -> int:
    """The value the fs io manager stored for one partition: the run really computed it."""
    return pickle.loads((home / "storage" / asset / day).read_bytes())


@pytest.mark.slow
def test_a_backfill_of_two_partitions_runs_both_and_materializes(
    webserver: tuple[str, Path],
) -> None:
    url, home = webserver
    client = DagsterWebserverClient(url)
    repo = client.find_repository()
    assert repo.location == MODULE
    days = ["2024-03-04", "2024-03-07"]
    assert client.add_dynamic_partitions(repo, "days", days) == days
    assert client.add_dynamic_partitions(repo, "days", days) == []  # already there

    states: list[BackfillState] = []
    backfill_id = client.launch_backfill([["numbers"], ["doubled"]], days, tags={"t": "1"})
    final = client.follow_backfill(backfill_id, states.append, poll_s=0.5, timeout_s=120)

    assert final.succeeded, final
    assert final.status == "COMPLETED_SUCCESS"
    assert sorted(r.partition for r in final.runs) == days
    assert all(r.status == "SUCCESS" for r in final.runs)
    assert states[-1] == final and len(states) >= 2  # progress was seen along the way
    assert _stored(home, "numbers", "2024-03-04") == 4
    assert _stored(home, "doubled", "2024-03-07") == 14

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        for asset in ("numbers", "doubled"):
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == set(days)
        for run in final.runs:
            assert instance.get_run_by_id(run.run_id).tags["t"] == "1"  # our tags reached runs
    finally:
        instance.dispose()


@pytest.mark.slow
def test_a_failed_run_is_reported_with_its_partition_and_step(
    webserver: tuple[str, Path],
) -> None:
    url, _ = webserver
    client = DagsterWebserverClient(url)
    repo = client.find_repository()
    days = ["2024-03-10", "2024-03-11"]
    client.add_dynamic_partitions(repo, "days", days)
    backfill_id = client.launch_backfill([["fragile"]], days)
    final = client.follow_backfill(backfill_id, poll_s=0.5, timeout_s=120)

    assert final.done and not final.succeeded
    assert final.status in ("COMPLETED_FAILED", "FAILED")
    failed = final.failed_runs
    assert [r.partition for r in failed] == ["2024-03-11"]
    assert failed[0].failed_steps == ("fragile",)
    assert [r.partition for r in final.runs if r.status == "SUCCESS"] == ["2024-03-10"]


@pytest.mark.slow
def test_graphql_errors_come_back_as_errors(webserver: tuple[str, Path]) -> None:
    client = DagsterWebserverClient(webserver[0])
    with pytest.raises(GraphQLError, match="BackfillNotFoundError"):
        client.backfill("no-such-backfill")
    with pytest.raises(GraphQLError):
        client.launch_backfill([["no_such_asset"]], ["2024-03-04"])
    with pytest.raises(GraphQLError, match="does not have code location 'elsewhere'"):
        client.find_repository("elsewhere")


def test_an_unreachable_webserver_is_a_clear_error() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(WebserverUnreachable, match=f"no Dagster webserver answered at .*:{port}"):
        DagsterWebserverClient(f"http://127.0.0.1:{port}", timeout_s=5).version()
    with pytest.raises(ValueError, match="http:// or https://"):
        DagsterWebserverClient("file:///etc/passwd")
