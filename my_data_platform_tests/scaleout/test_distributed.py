"""The whole graph on the production profile, on real servers, equals the embedded profile.

Why (issue 18): the production profile is only worth having if it computes the same data as the
embedded one while every step runs on a Celery worker that shares no disk with anything else.
The test generates one tiny world (50 users, 100 photos, 2k events a day, 3 days) twice, on the
same seed:

* embedded: ``mdp seed`` and ``mdp run`` in a temporary data dir (SQLite, folders, the bundled
  mongod, the local version store);
* production: PostgreSQL (Dagster storage, DuckLake catalog, OLTP), moto's S3 (lake and
  warehouse data files), the lakeFS test server (dataset versions), a mongod server (FiftyOne),
  Redis (Celery broker and results); ``dagster-webserver`` and ``dagster-daemon`` on loopback,
  two Celery workers each with its own MDP_DATA_DIR, HOME and TMPDIR, and ``mdp run`` launching
  one backfill through the webserver's GraphQL, as docs/scale-out.md deploys it.

Every warehouse table (the features among them) and every file of the dataset at ``main``
must have the same row count and the same hash of its rows sorted, floats rounded to 1e-6
(:mod:`.fingerprints`), never the same bytes.

While that run materializes ``features/image_embeddings`` (the longest step), the worker
running it is SIGKILLed whole, as if its machine died; a new worker joins. With late
acknowledgement (``definitions.celery_config_source``) the step goes to a live worker after the
visibility timeout and the run completes; a second ``mdp run`` then completes too and leaves no
key twice and the same fingerprints. Each worker's own MDP_DATA_DIR holds nothing but the
per-host FiftyOne media cache at the end.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from my_data_platform.definitions import celery_config_source
from my_data_platform_tests.core.versioning.lakefs_server import LakeFSTestServer
from my_data_platform_tests.scaleout.conftest import unique_name
from my_data_platform_tests.scaleout.fingerprints import compare
from my_data_platform_tests.scaleout.production import (
    Production,
    clean_environ,
    webserver_and_daemon,
)
from my_data_platform_tests.scaleout.servers import (
    MongodServer,
    MotoS3,
    PostgresServer,
    RedisServer,
)
from my_data_platform_tests.scaleout.workers import (
    REPO_ROOT,
    CeleryWorker,
    celery_execution_config,
    celery_workers,
    write_dagster_home,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning"),
]

WORLD = ("--users", "50", "--photos", "100", "--events-per-day", "2000", "--days", "3")
SEED = ("--seed", "7")
KILL_STEP = "features__image_embeddings"
"""The step whose worker is killed: the longest of the graph (seconds, on this world)."""
VISIBILITY_TIMEOUT_S = 75.0
"""Longer than any step of this world plus a worker's first code-location load, so a running
step is never delivered twice; a killed worker's step comes back after about this long."""
RERUN = "group:warehouse"
"""What runs again after the kill: the event partitions append, the rest merge or replace."""
HOST_CACHES = ("fiftyone/media/",)
"""What a worker may leave under its MDP_DATA_DIR: per-host caches (docs/scale-out.md)."""
REDIS_DB = 10  # and 11: a broker and a result db of this module's own on the session's Redis


def _mdp(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "my_data_platform.cli", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


def _fingerprints(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "my_data_platform_tests.scaleout.fingerprints"],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.splitlines()[-1])


def _ok(res: subprocess.CompletedProcess[str], what: str) -> str:
    text = res.stdout + res.stderr
    assert res.returncode == 0, f"{what} failed ({res.returncode}):\n{text[-6000:]}"
    return text


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The world generated and materialized on the embedded profile; its fingerprints."""
    root = tmp_path_factory.mktemp("embedded")
    env = clean_environ() | {
        "MDP_DATA_DIR": str(root / "data"),
        "DAGSTER_HOME": str(root / "data" / "dagster_home"),
        "PYTHONPATH": str(REPO_ROOT),
        "COLUMNS": "200",
    }
    t0 = time.monotonic()
    _ok(_mdp(env, root, "seed", *WORLD, *SEED), "embedded mdp seed")
    _ok(_mdp(env, root, "run"), "embedded mdp run")
    prints = _fingerprints(env, root)
    prints["seconds"] = time.monotonic() - t0
    return prints


def _step_start(instance: dg.DagsterInstance, step: str) -> tuple[str, int] | None:
    """The run id and pid of the first STEP_START of ``step`` in any run, if there is one."""
    for run in instance.get_runs():
        records = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.STEP_START
        ).records
        for r in records:
            if r.event_log_entry.step_key == step:
                return run.run_id, r.event_log_entry.dagster_event.pid
    return None


def _text_diffs(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    return [
        "".join(
            difflib.unified_diff(
                expected.get(name, "").splitlines(True),
                actual.get(name, "").splitlines(True),
                f"embedded/{name}",
                f"production/{name}",
            )
        )
        for name in sorted(set(expected) | set(actual))
        if expected.get(name) != actual.get(name)
    ]


def _local_files(data_dir: Path) -> list[str]:
    """What a worker left in its own MDP_DATA_DIR: no other host can read it."""
    return sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if p.is_file())


def _start_counts(instance: dg.DagsterInstance, run_id: str) -> dict[str, int]:
    """How many times each step of a run started."""
    counts: dict[str, int] = {}
    for r in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records:
        step = r.event_log_entry.step_key or ""
        counts[step] = counts.get(step, 0) + 1
    return counts


def _step_seconds(instance: dg.DagsterInstance) -> dict[str, float]:
    """Each step's longest attempt, start to success, over every run (seconds)."""
    longest: dict[str, float] = {}
    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
    for run in instance.get_runs():
        started: dict[str, float] = {}
        for r in instance.get_records_for_run(run.run_id, of_type=kinds).records:
            e = r.event_log_entry
            if e.dagster_event.event_type == dg.DagsterEventType.STEP_START:
                started[e.step_key] = e.timestamp
            elif e.step_key in started:
                took = e.timestamp - started[e.step_key]
                longest[e.step_key] = max(took, longest.get(e.step_key, 0.0))
    return longest


def _failures(instance: dg.DagsterInstance) -> str:
    """Every failed step of every run with its error, for an assertion message."""
    lines = []
    for run in instance.get_runs():
        records = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE
        ).records
        for r in records:
            event = r.event_log_entry.dagster_event
            error = event.step_failure_data.error if event.step_failure_data else None
            text = error.to_string() if error else r.event_log_entry.user_message
            lines.append(f"--- run {run.run_id[:8]} step {r.event_log_entry.step_key}:\n{text}")
    return "\n".join(lines)[-12000:]


@contextlib.contextmanager
def _running(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> Iterator[Any]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def _wait(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> str:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"mdp run did not end in {timeout:.0f} s:\n{log.read_text()[-6000:]}")
    return log.read_text()


def test_production_on_real_servers_equals_embedded_and_survives_a_killed_worker(
    embedded: dict[str, Any],
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres_server: PostgresServer,
    redis_server: RedisServer,
    moto_s3: MotoS3,
    mongod_server: MongodServer,
    lakefs_test_server: LakeFSTestServer,
) -> None:
    timings = {"embedded": embedded["seconds"]}
    t0 = time.monotonic()
    prod = Production.create(
        unique_name(request, "e2e"), postgres=postgres_server, redis=redis_server,
        redis_db=REDIS_DB, moto=moto_s3, mongod=mongod_server, lakefs=lakefs_test_server,
        visibility_timeout_s=VISIBILITY_TIMEOUT_S,
    )  # fmt: skip
    # the same world, generated from the test's host into PostgreSQL (OLTP) and S3 (lake)
    host = tmp_path / "host"
    _ok(prod.mdp(host, "seed", *WORLD, *SEED), "production mdp seed")
    execution = celery_execution_config(
        prod.broker, prod.backend, celery_config_source(VISIBILITY_TIMEOUT_S)
    )
    worker_env = dict(prod.env)  # no data dir, home or temp: each worker has its own
    home = write_dagster_home(tmp_path / "observer", prod.dagster_storage)
    # the instance first: its first connection creates Dagster's tables in PostgreSQL
    with (
        dg.DagsterInstance.from_config(str(home)) as instance,
        celery_workers(
            ["w0", "w1"], storage=prod.dagster_storage, execution_config=execution,
            env=worker_env,
        ) as workers,
        webserver_and_daemon(prod) as (url, logs),
        contextlib.ExitStack() as stack,
    ):  # fmt: skip
        timings["servers and workers up"] = time.monotonic() - t0
        env = prod.host_env(host) | {"MDP_WEBSERVER_URL": url}
        mdp_run = [sys.executable, "-m", "my_data_platform.cli", "run"]

        # --- the whole graph, one worker killed in the middle of the longest step -----------
        t1 = time.monotonic()
        log = tmp_path / "mdp_run_1.log"
        with _running(mdp_run, env, host, log) as proc:
            deadline = time.monotonic() + 400
            started = None
            while started is None:
                assert proc.poll() is None, (
                    f"ended before {KILL_STEP}:\n{log.read_text()[-6000:]}\n{_failures(instance)}"
                )
                assert time.monotonic() < deadline, f"{KILL_STEP} never started\n{log.read_text()}"
                time.sleep(0.5)
                started = _step_start(instance, KILL_STEP)
            run_id, pid = started
            victim = next(w for w in workers.values() if pid in w.pids)
            victim.kill()  # the whole worker, as if its host died mid-step
            killed_at = time.monotonic() - t1
            # a new host joins; the step comes back to a live worker after the visibility timeout
            replacement = stack.enter_context(
                CeleryWorker(
                    "w2", storage=prod.dagster_storage, execution_config=execution, env=worker_env
                )
            )
            out = _wait(proc, log, 600)
        timings["mdp run (whole graph, kill)"] = time.monotonic() - t1
        assert proc.returncode == 0, (
            f"mdp run failed after the kill:\n{out[-8000:]}\n"
            + "\n".join(f"--- {w.name}\n{w.log_tail(60)}" for w in [*workers.values(), replacement])
            + _failures(instance)
        )
        attempts = [
            r.event_log_entry.dagster_event.pid
            for r in instance.get_records_for_run(
                run_id, of_type=dg.DagsterEventType.STEP_START
            ).records
            if r.event_log_entry.step_key == KILL_STEP
        ]
        assert attempts[0] == pid and len(attempts) == 2, attempts  # killed once, run again
        assert attempts[1] not in victim.pids
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        # no other step was delivered twice (a step outliving the visibility timeout would be)
        twice = [
            (r.run_id[:8], step)
            for r in instance.get_runs()
            for step, n in _start_counts(instance, r.run_id).items()
            if n > 1 and (r.run_id, step) != (run_id, KILL_STEP)
        ]
        assert not twice, twice

        t2 = time.monotonic()
        first = _fingerprints(prod.host_env(tmp_path / "reader"), tmp_path)
        timings["fingerprints"] = time.monotonic() - t2
        summary = []
        for part in ("tables", "dataset"):
            same, diffs = compare(embedded[part], first[part])
            summary.append(f"{part} {len(same)}/{len(same) + len(diffs)} equal")
            assert not diffs, f"{part} differ from the embedded profile:\n" + "\n".join(
                diffs + _text_diffs(embedded["texts"], first["texts"])
            )
        assert first["duplicate_keys"] and not any(first["duplicate_keys"].values()), first
        steps = _step_seconds(instance)
        slowest = max(steps, key=steps.__getitem__)
        # a step longer than the visibility timeout would be delivered twice while it runs
        assert steps[slowest] < VISIBILITY_TIMEOUT_S, steps

        # --- a rerun of the warehouse (appends and merges): no duplicates, the same data ------
        t3 = time.monotonic()
        log2 = tmp_path / "mdp_run_2.log"
        rerun = [*mdp_run, "--select", RERUN]
        with _running(rerun, env, host, log2) as proc2:
            out2 = _wait(proc2, log2, 600)
        timings["mdp run (rerun)"] = time.monotonic() - t3
        assert proc2.returncode == 0, f"the rerun failed:\n{out2[-8000:]}\n{_failures(instance)}"
        second = _fingerprints(prod.host_env(tmp_path / "reader"), tmp_path)
        _ = logs
        local = {w.name: _local_files(w.root / "data") for w in [*workers.values(), replacement]}

    for part in ("tables", "dataset"):
        _, diffs2 = compare(first[part], second[part])
        assert not diffs2, f"{part} changed on the rerun:\n" + "\n".join(diffs2)
    assert not any(second["duplicate_keys"].values()), second["duplicate_keys"]
    timings["total"] = time.monotonic() - t0 + embedded["seconds"]
    left = sorted({f for files in local.values() for f in files})
    # a worker's own disk holds caches only (the FiftyOne media cache, refilled from the object
    # store): anything else there is data the other hosts never see
    assert all(f.startswith(HOST_CACHES) for f in left), [
        f for f in left if not f.startswith(HOST_CACHES)
    ]
    print(
        f"\nscale-out equality: {'; '.join(summary)} (rows and row hashes); killed "
        f"{victim.name} at {killed_at:.0f} s in {KILL_STEP}, step redelivered, run succeeded; "
        f"rerun of {RERUN} unchanged, no duplicate keys; slowest step {slowest} "
        f"{steps[slowest]:.0f} s; files left in the workers' data dirs "
        f"{ {k: len(v) for k, v in local.items()} } {left[:20]}; timings "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
    )
