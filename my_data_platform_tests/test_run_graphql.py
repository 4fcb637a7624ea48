"""The webserver path of ``mdp run`` (production profile), against a real webserver and daemon.

``dagster-webserver`` and ``dagster-daemon`` run on loopback over ``graphql_defs`` (a tiny code
location, in-process executor) with a SQLite instance in a temporary DAGSTER_HOME; our client
registers dynamic partitions, launches backfills through ``launchPartitionBackfill`` and follows
them through ``partitionBackfillOrError``. The daemon's loop interval (30 s in Dagster, not
configurable) is shortened to 1 s in the daemon process, so a backfill ends in seconds.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from my_data_platform.cli.run import follow_and_report
from my_data_platform.core.graphql_client import (
    BackfillState,
    DagsterWebserverClient,
    GraphQLError,
    WebserverUnreachable,
)
from my_data_platform.runner import RemoteRefresh, follow_remote_refresh, launch_remote_refresh
from my_data_platform_tests.conftest import free_port
from my_data_platform_tests.scaleout.servers import stop_process_group

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


@pytest.fixture(scope="module")
def webserver() -> Iterator[tuple[str, Path]]:
    # not tmp_path_factory: a pytest started meanwhile by another user of this machine prunes
    # older pytest-of-<user> folders, this one included, while the servers still use it
    with tempfile.TemporaryDirectory(prefix="mdp-graphql-") as tmp:
        home, logs = Path(tmp) / "home", Path(tmp) / "logs"  # Dagster prunes $DAGSTER_HOME/logs
        home.mkdir()
        logs.mkdir()
        yield from _servers(home, logs)


def _servers(home: Path, logs: Path) -> Iterator[tuple[str, Path]]:
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    # create the storage (and run its migrations) once, here: a webserver and a daemon that
    # both find an empty home race on the schema and one of them dies
    dg.DagsterInstance.from_config(str(home)).dispose()
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(ROOT)}
    port = free_port()
    webserver_bin = str(Path(sys.executable).parent / "dagster-webserver")
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
                    log = "\n".join(f.read_text()[-2000:] for f in sorted(logs.iterdir()))
                    raise AssertionError(f"webserver did not come up:\n{log}") from None
                time.sleep(0.5)
        yield url, home
    finally:
        for proc in procs:
            stop_process_group(proc, 10)


def _stored(home: Path, asset: str, day: str) -> int:
    """The value the fs io manager stored for one partition: the run really computed it."""
    return pickle.loads((home / "storage" / asset / day).read_bytes())


@pytest.mark.slow
def test_a_backfill_of_two_partitions_runs_both_and_materializes(
    webserver: tuple[str, Path],
) -> None:
    """What ``mdp run`` does on the production profile: register the days, launch one backfill,
    follow it to the end."""
    url, home = webserver
    client = DagsterWebserverClient(url)
    days = ["2024-03-04", "2024-03-07"]
    plan = RemoteRefresh(asset_keys=[dg.AssetKey("numbers"), dg.AssetKey("doubled")], days=days)

    states: list[BackfillState] = []
    backfill_id = launch_remote_refresh(client, plan)
    final = follow_remote_refresh(client, backfill_id, states.append, poll_s=0.5)

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
            assert instance.get_run_by_id(run.run_id).tags["mdp/source"] == "mdp run"
    finally:
        instance.dispose()


@pytest.mark.slow
def test_a_failed_run_is_reported_with_its_partition_and_step(
    webserver: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = webserver
    client = DagsterWebserverClient(url)
    repo = client.find_repository()
    assert repo.location == MODULE
    days = ["2024-03-10", "2024-03-11"]
    assert client.add_dynamic_partitions(repo, "event_days", days) == days
    assert client.add_dynamic_partitions(repo, "event_days", days) == []  # already there
    backfill_id = client.launch_backfill([["fragile"]], days)
    assert follow_and_report(client, backfill_id, poll_s=0.5) == 1  # what `mdp run` exits with
    final = client.backfill(backfill_id)

    assert final.done and not final.succeeded
    assert final.status in ("COMPLETED_FAILED", "FAILED")
    failed = final.failed_runs
    assert [r.partition for r in failed] == ["2024-03-11"]
    assert failed[0].failed_steps == ("fragile",)
    assert [r.partition for r in final.runs if r.status == "SUCCESS"] == ["2024-03-10"]
    out, err = capsys.readouterr()
    assert "1/2 runs succeeded" in out and f"backfill {backfill_id} {final.status}" in out
    assert f"ok 2024-03-10: run {final.runs[0].run_id[:8]}" in out
    assert f"failed run {failed[0].run_id} [2024-03-11]: FAILURE (failed steps: fragile)" in err


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


PRODUCTION_SERVERS = {
    "MDP_PROFILE": "production",
    "MDP_OBJECT_STORE": "s3",
    "MDP_S3_BUCKET": "lake-bucket",
    "MDP_OLTP_URL": "postgresql+psycopg2://app:pw@db.internal:5432/photos",
    "MDP_WAREHOUSE_CATALOG": "postgres:dbname=ducklake host=db.internal",
    "MDP_VERSIONING": "lakefs",
    "LAKEFS_ENDPOINT": "http://lakefs.internal:8000",
    "MDP_FIFTYONE_DATABASE_URI": "mongodb://mongo.internal:27017",
    "MDP_DAGSTER_POSTGRES_URL": "postgresql://dagster:pw@db.internal:5432/dagster",
    "MDP_CELERY_BROKER_URL": "redis://redis.internal:6379/0",
}


def _mdp_run(tmp_path: Path, extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MDP_", "LAKEFS_"))}
    env |= {"MDP_DATA_DIR": str(tmp_path), "DAGSTER_HOME": str(tmp_path / "dh")}
    env |= {**PRODUCTION_SERVERS, **extra, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "my_data_platform.cli", "run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_mdp_run_on_production_needs_a_reachable_webserver(tmp_path: Path) -> None:
    """Nothing starts in process: without the webserver, ``mdp run`` stops with the reason."""
    missing = _mdp_run(tmp_path, {})
    assert missing.returncode != 0
    assert "set MDP_WEBSERVER_URL" in missing.stderr
    port = free_port()
    down = _mdp_run(tmp_path, {"MDP_WEBSERVER_URL": f"http://127.0.0.1:{port}"})
    assert down.returncode != 0
    assert f"MDP_WEBSERVER_URL: no Dagster webserver answered at http://127.0.0.1:{port}" in (
        down.stderr.replace("\n", "")
    )
    assert not (tmp_path / "dh" / "history").exists()  # no run was recorded here
