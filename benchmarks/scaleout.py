"""Scale-out benchmark (issue 18 item 7): what the Celery queue and a run launcher cost per run,
and how a backfill of N days speeds up from 1 Celery worker to 2.

Everything is real and on loopback: a PostgreSQL cluster holds Dagster's runs and events, a
Redis server is the Celery broker (db 0) and result backend (db 1), and the workers are
``dagster-celery worker start`` processes (``concurrency=1`` each) with their own HOME, TMPDIR,
MDP_DATA_DIR and DAGSTER_HOME (``my_data_platform_tests/scaleout``: servers.py, workers.py).
The executors are the project's own: the heartbeat executor (in-process or multiprocess, the
embedded profile's default) and ``definitions.celery_heartbeat_executor`` (production's
``MDP_EXECUTOR=celery``), so the heartbeat thread is part of every figure. Steps hand no values
to each other (ordering only; outputs go to a null IO manager), so no S3 is involved: the
figures are the executors' and the queue's, not an IO manager's.

Part A, overhead per run: a chain of ``--steps`` trivial steps (``sum(range(1000))``, well
under a millisecond each) run ``--repeats`` times, each way:

* ``inprocess``: ``execute_job`` in this process, in-process executor;
* ``multiprocess``: the same run, each step in a fresh child process (Dagster's default);
* ``celery_{1,2}w``: this process is the run worker (coordinator), steps go through Redis to
  1 or 2 warm workers;
* ``celery_launched_{1,2}w``: the run worker is a new Python process (what the default run
  launcher does for every run the daemon launches), timed from spawn to exit.

Reported: the median run wall time and the median per-step overhead, ``(run wall - sum of the
steps' own compute time) / steps``. The compute time is measured inside each op and read back
from its STEP_OUTPUT metadata in PostgreSQL.

Part B, a backfill of ``--days`` days: each day's step is the project's own per-day work on a
generated world: the generator's day of ``--events-per-day`` events
(``synth.features_world.event_day_frame``) and ``core.features.activity_features`` for every
photo as of the end of that day, with a checksum of the result. That is the real per-day code,
not the whole asset graph: running the graph per day on the production profile needs DuckLake
on PostgreSQL, S3, MongoDB and lakeFS in every worker, which buys nothing for a measure of the
queue. Each day is about 1 to 2 s of single-threaded CPU at the default size. Polars and BLAS
are pinned to ONE thread everywhere (this process, the children, the workers): otherwise the
in-process baseline would already use both cores and "1 worker" would not mean one core.
Backfilled:

* ``inprocess``: one run per day, one after the other, in this process (the baseline);
* ``multiprocess_steps``: ONE run with a step per day, multiprocess executor, 2 at a time
  (what one host does without Celery);
* ``celery_steps_{1,2}w``: ONE run with a step per day, steps queued to the workers (the queue
  alone);
* ``celery_runs_{1,2}w``: one run per day, all launched at once, each run worker a process of
  its own (what a backfill through the daemon does with no run-concurrency limit: launcher +
  queue). On 2 cores these N run workers compete with the Celery workers for CPU.

Every day's checksum must agree across all ways (``checksums_agree``), else it fails.

What was tried / found: dagster-celery's run worker polls its tasks every second
(``TICK_SECONDS = 1`` in ``core_execution_loop``), so a step costs up to a second of latency
however small it is, and a chain of K steps pays it K times; that tick dominates Part A.
Celery's default prefetch (4 tasks per process) is left as it is: with equal-sized days and
both workers up before the backfill is submitted, the split is even. Each step records its
process's CPU seconds next to its wall time (``cpu_s``; in-process that includes the run
worker's own threads): on a shared host the two part, and ``backfill_*_parallelism`` (the
steps' wall over the backfill's) shows how many cores the backfill really kept busy. Three
runs on 2 vCPUs shared with other test suites (load 2 to 19) gave 4-step runs of 0.7 to 1.2 s
in-process, 5.4 to 5.8 s on Celery and 7.4 to 14 s with a launched run worker, and a 2-worker
speedup of 0.82 to 1.28 for one run of 8 days (0.92 to 1.15 with a run per day): every day
took the same CPU time (about 1.6 s), but two steps at once got about 0.8 of a core between
them, not 2: the other jobs had the rest (docs/scale-out.md, "Benchmark").

Stopping: every server, worker and run worker is stopped on exit, on failure, and on Ctrl-C
or SIGTERM. Dagster captures SIGINT/SIGTERM during a run and can drop them (tried: both were
ignored and the benchmark ran to its end), so a watchdog thread sees the signal through the
wakeup fd and, if the main thread has not unwound within 10 s, stops everything itself.

Machine load matters: the figures are wall times on a host whose cores may be shared with
other jobs; the JSON records ``os.getloadavg()`` at start and end. On 2 cores the ceiling of
``speedup_2w_vs_1w`` is 2.

Prints progress to stderr and ONE JSON line of raw figures to stdout.

    PYTHONPATH=. .venv/bin/python benchmarks/scaleout.py --days 8 --repeats 5
"""

# no `from __future__ import annotations`: Dagster reads the ops' annotations at import

import os

# Before polars or numpy are imported (here or in a child): one thread each, see the docstring.
THREAD_ENV = {
    "POLARS_MAX_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
os.environ.update(THREAD_ENV)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import dagster as dg  # noqa: E402

MODULE = "benchmarks.scaleout"
"""The name workers import this module by (``build_reconstructable_job``)."""

REPO_ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# The jobs (workers import them: no side effects below this line at import time)


class NullIOManager(dg.IOManager):
    """Keeps no output: steps only order each other, so no value crosses processes."""

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        return None

    def load_input(self, context: dg.InputContext) -> Any:
        raise RuntimeError("benchmark steps hand no values to each other")


class TinyConfig(dg.Config):
    work: int = 1000


@dg.op(ins={"after": dg.In(dg.Nothing)})
def tiny(context: dg.OpExecutionContext, config: TinyConfig) -> int:
    """A step with next to no compute: what is left of its wall time is overhead."""
    t0, c0 = time.perf_counter(), time.process_time()
    total = sum(range(config.work))
    context.add_output_metadata(
        {
            "compute_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0,
            "checksum": total,
        }
    )
    return total


class DayConfig(dg.Config):
    day: int
    days: int
    events_per_day: int
    seed: int = 42


@dg.op
def day_work(context: dg.OpExecutionContext, config: DayConfig) -> int:
    """One day's feature work: generate the day's events, compute every photo's activity
    features as of the day's end, and return a checksum of them."""
    import datetime as dt

    import polars as pl

    from my_data_platform.core import features as F
    from my_data_platform.synth.config import WorldConfig
    from my_data_platform.synth.features_world import event_day_frame, world_tables

    t0, c0 = time.perf_counter(), time.process_time()
    cfg = WorldConfig(days=config.days, events_per_day=config.events_per_day, seed=config.seed)
    photos, users = world_tables(cfg)
    events = event_day_frame(cfg, config.day, photos, users)
    until = dt.datetime.combine(cfg.date_of(config.day + 1), dt.time(), tzinfo=dt.UTC)
    public = photos.select("photo_id", "user_id", "uploaded_at", "caption").lazy()
    snapshot = F.collect(
        F.activity_features(
            events.lazy(), public, public.select("photo_id", pl.lit(until).alias("as_of")),
            F.FeatureConfig(),
        ),
        "cpu",
    )  # fmt: skip
    numeric = [c for c, t in snapshot.schema.items() if t.is_integer() and c != "photo_id"]
    checksum = int(sum(int(snapshot[c].sum()) for c in numeric)) + events.height
    context.add_output_metadata(
        {
            "compute_s": time.perf_counter() - t0,
            # CPU seconds of the step's process: below compute_s when the core was shared
            "cpu_s": time.process_time() - c0,
            "checksum": checksum,
            "events": events.height,
        }
    )
    return checksum


def _executor(name: str) -> dg.ExecutorDefinition:
    if name == "celery":
        from my_data_platform.definitions import celery_heartbeat_executor

        return celery_heartbeat_executor()
    from my_data_platform.defs.automation.run_health import heartbeat_executor

    return heartbeat_executor


def make_job(kind: str, steps: int, executor: str) -> dg.JobDefinition:
    """``chain``: ``steps`` tiny steps one after the other; ``days``: ``steps`` independent
    day steps ``day_0`` ... The executor is ``local`` (in-process or multiprocess, chosen by
    run config) or ``celery``."""

    @dg.graph(name=f"{kind}_{steps}")
    def graph() -> None:
        if kind == "chain":
            previous = None
            for i in range(steps):
                op = tiny.alias(f"step_{i}")
                previous = op() if previous is None else op(after=previous)
        else:
            for d in range(steps):
                day_work.alias(f"day_{d}")()

    return graph.to_job(
        name=f"bench_{kind}_{steps}_{executor}",
        executor_def=_executor(executor),
        resource_defs={"io_manager": NullIOManager()},
    )


def reconstructable_job(kind: str, steps: int, executor: str) -> Any:
    return dg.build_reconstructable_job(
        MODULE, "make_job", reconstructable_args=(kind, steps, executor)
    )


# ---------------------------------------------------------------------------------------------
# Running and reading runs


def _coordinate(argv: list[str]) -> int:
    """``python -m benchmarks.scaleout _run DAGSTER_HOME SPEC_JSON``: one run, this process
    its run worker (what the default run launcher starts for each run)."""
    warnings.simplefilter("ignore")
    spec = json.loads(argv[1])
    with (
        dg.DagsterInstance.from_config(argv[0]) as instance,
        dg.execute_job(
            reconstructable_job(*spec["job"]), instance, run_config=spec["run_config"],
            tags=spec["tags"],
        ) as result,
    ):  # fmt: skip
        print(json.dumps({"run_id": result.run_id, "success": result.success}), flush=True)
    return 0


def step_outputs(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict[str, float]]:
    """Each step's own ``compute_s`` (wall), ``cpu_s`` and ``checksum`` from its STEP_OUTPUT
    metadata."""
    out = {}
    for record in instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.STEP_OUTPUT, limit=10_000
    ).records:
        event = record.event_log_entry.dagster_event
        assert event is not None and event.step_key is not None
        metadata = event.step_output_data.metadata
        out[event.step_key] = {k: metadata[k].value for k in ("compute_s", "cpu_s", "checksum")}
    return out


class Bench:
    """The instance, the run config of each executor, and the run workers still alive."""

    def __init__(self, home: Path, execution: dict[str, Any], env: dict[str, str]) -> None:
        self.home = home
        self.instance = dg.DagsterInstance.from_config(str(home))
        self.execution = execution
        self.env = env
        self.children: list[subprocess.Popen[bytes]] = []
        self.logs = Path(tempfile.mkdtemp(prefix="mdp-bench-runs-"))

    def run_config(self, executor: str, ops: dict[str, Any]) -> dict[str, Any]:
        if executor == "celery":
            execution = {"config": self.execution}
        elif executor == "multiprocess":
            execution = {"config": {"multiprocess": {"max_concurrent": 2}}}
        else:
            execution = {"config": {"in_process": {}}}
        # Dagster's console logger at DEBUG prints every event: quiet it in every way alike
        quiet = {"console": {"config": {"log_level": "WARNING"}}}
        return {"execution": execution, "ops": ops, "loggers": quiet}

    def run_here(
        self, job: tuple[str, int, str], run_config: dict[str, Any], tags: dict[str, str]
    ) -> tuple[float, str]:
        """Run in this process (it is the run worker); ``(wall seconds, run id)``."""
        t0 = time.perf_counter()
        with dg.execute_job(
            reconstructable_job(*job), self.instance, run_config=run_config, tags=tags
        ) as result:
            wall = time.perf_counter() - t0
            if not result.success:
                raise RuntimeError(f"run {result.run_id} of {job} failed")
            return wall, result.run_id

    def launch(
        self, job: tuple[str, int, str], run_config: dict[str, Any], tags: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        """Start a run worker process for one run (returns at once)."""
        spec = json.dumps({"job": list(job), "run_config": run_config, "tags": tags})
        log = self.logs / f"run-{len(self.children)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", MODULE, "_run", str(self.home), spec],
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True,
                env={**os.environ, **self.env, "PYTHONPATH": str(REPO_ROOT)},
            )  # fmt: skip
        proc.log = log  # type: ignore[attr-defined]
        self.children.append(proc)
        return proc

    def finish(self, proc: subprocess.Popen[bytes], timeout: float = 600) -> str:
        """Wait for a launched run worker; its run id (raises if the run failed)."""
        proc.wait(timeout)
        text = proc.log.read_text(errors="replace")  # type: ignore[attr-defined]
        lines = [ln for ln in text.splitlines() if ln.startswith('{"run_id"')]
        if proc.returncode != 0 or not lines or not json.loads(lines[-1])["success"]:
            raise RuntimeError(f"launched run failed (exit {proc.returncode}):\n{text[-3000:]}")
        return str(json.loads(lines[-1])["run_id"])

    def close(self) -> None:
        for proc in self.children:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        self.instance.dispose()
        shutil.rmtree(self.logs, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Part A and Part B


def overhead_runs(
    bench: Bench, mode: str, steps: int, repeats: int, warmup: int = 1
) -> dict[str, Any]:
    """``repeats`` runs of the chain after ``warmup`` untimed ones; medians."""
    executor = "celery" if mode.startswith("celery") else "local"
    local = "multiprocess" if mode == "multiprocess" else "in_process"
    job = ("chain", steps, executor)
    run_config = bench.run_config(executor if executor == "celery" else local, {})
    walls, overheads = [], []
    for i in range(warmup + repeats):
        tags = {"mdp/bench": f"overhead-{mode}-{i}"}
        if "launched" in mode:
            t0 = time.perf_counter()
            run_id = bench.finish(bench.launch(job, run_config, tags))
            wall = time.perf_counter() - t0
        else:
            wall, run_id = bench.run_here(job, run_config, tags)
        outputs = step_outputs(bench.instance, run_id)
        assert len(outputs) == steps, outputs
        if i >= warmup:
            walls.append(wall)
            overheads.append((wall - sum(o["compute_s"] for o in outputs.values())) / steps)
    result = {
        "run_s": statistics.median(walls),
        "step_overhead_s": statistics.median(overheads),
        "runs_s": [round(w, 3) for w in walls],
    }
    log(f"A {mode:22s} run {result['run_s']:.3f} s, per step {result['step_overhead_s']:.3f} s")
    return result


def day_ops(days: int, events_per_day: int, seed: int, only: int | None = None) -> dict:
    if only is not None:
        return {"day_0": {"config": {"day": only, "days": days, "events_per_day": events_per_day,
                                     "seed": seed}}}  # fmt: skip
    return {
        f"day_{d}": {"config": {"day": d, "days": days, "events_per_day": events_per_day,
                                "seed": seed}}
        for d in range(days)
    }  # fmt: skip


def backfill(bench: Bench, mode: str, days: int, epd: int, seed: int) -> dict[str, Any]:
    """One backfill of ``days`` days; wall seconds, summed compute and per-day checksums."""
    checks: dict[int, int] = {}
    compute = cpu = 0.0
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    if mode == "inprocess":
        run_ids = []
        for d in range(days):
            cfg = bench.run_config("in_process", day_ops(days, epd, seed, only=d))
            run_ids.append((d, bench.run_here(("days", 1, "local"), cfg, {"mdp/day": str(d)})[1]))
    elif mode.startswith("celery_runs"):
        procs = [
            (d, bench.launch(("days", 1, "celery"), bench.run_config(
                "celery", day_ops(days, epd, seed, only=d)), {"mdp/day": str(d)}))
            for d in range(days)
        ]  # fmt: skip
        run_ids = [(d, bench.finish(p)) for d, p in procs]
    else:
        executor = "celery" if mode.startswith("celery") else "multiprocess"
        job = ("days", days, "celery" if executor == "celery" else "local")
        _, run_id = bench.run_here(job, bench.run_config(executor, day_ops(days, epd, seed)), {})
        run_ids = [(None, run_id)]
    wall = time.perf_counter() - t0
    for only, run_id in run_ids:
        for step, out in step_outputs(bench.instance, run_id).items():
            day = only if only is not None else int(step.removeprefix("day_"))
            checks[day] = int(out["checksum"])
            compute += out["compute_s"]
            cpu += out["cpu_s"]
    if sorted(checks) != list(range(days)):
        raise RuntimeError(f"{mode}: days {sorted(checks)} done, expected {days}")
    log(f"B {mode:22s} {wall:.2f} s (steps' own wall {compute:.2f} s, cpu {cpu:.2f} s)")
    return {
        "s": wall,
        "compute_s": compute,
        "cpu_s": cpu,
        "loadavg_1m_before": load,
        "checksums": [checks[d] for d in range(days)],
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _watchdog(close_all: Callable[[], bool], grace: float = 10.0) -> None:
    """Stop everything on SIGINT/SIGTERM even when the main thread never hears of it.

    Dagster swaps the SIGINT/SIGTERM handlers during a run (``capture_interrupts``) and an
    interrupt it captured can be dropped, so Ctrl-C may never reach this code as a
    KeyboardInterrupt (seen here: the benchmark ran on after SIGINT and SIGTERM). The wakeup fd
    sees every signal whichever Python handler is installed: a daemon thread waits on it, gives
    the main thread ``grace`` seconds to unwind, then stops the run workers, Celery workers
    and servers itself and exits with 130.
    """
    # a pipe's descriptors are plain ints: nothing closes them behind our back (a socket
    # object that went out of scope would, and the fd number would be reused)
    reader, writer = os.pipe()
    os.set_blocking(writer, False)
    signal.set_wakeup_fd(writer, warn_on_full_buffer=False)

    def watch() -> None:
        while True:
            data = os.read(reader, 64)
            if any(b in (signal.SIGINT, signal.SIGTERM) for b in data):
                break
        time.sleep(grace)
        try:
            if not close_all():  # the main thread is closing (or closed) everything
                return
        except BaseException as exc:  # e.g. restoring a signal handler off the main thread
            log(f"while stopping: {exc!r}")
        log("stopped on a signal the run did not act on")
        os._exit(130)

    threading.Thread(target=watch, name="bench-watchdog", daemon=True).start()


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so every server and worker is stopped either way."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():  # not the watchdog
            signal.signal(signal.SIGTERM, previous)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--days", type=int, default=8, help="days in the backfill (Part B)")
    ap.add_argument("--events-per-day", type=int, default=2_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--steps", type=int, default=4, help="steps per run in Part A")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per way in Part A")
    ap.add_argument("--skip-runs-mode", action="store_true",
                    help="Part B without the one-run-worker-per-day backfills")  # fmt: skip
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # dagster's preview/beta warnings; celery's duplicate task

    from my_data_platform_tests.scaleout.servers import PostgresServer, RedisServer
    from my_data_platform_tests.scaleout.workers import (
        CeleryWorker,
        celery_execution_config,
        write_dagster_home,
    )

    load_start = os.getloadavg()
    t_start = time.perf_counter()
    report: dict[str, Any] = {"cores": os.cpu_count(), "loadavg_start": load_start}
    stack = contextlib.ExitStack()
    closing = threading.Lock()

    def close_all() -> bool:
        """Close the stack once, from whichever thread comes first; False if it was taken."""
        if not closing.acquire(blocking=False):
            return False
        stack.close()
        return True

    _watchdog(close_all)
    try:
        stack.enter_context(_terminate_as_interrupt())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mdp-bench-")))
        postgres = stack.enter_context(PostgresServer())
        redis = stack.enter_context(RedisServer())
        postgres.create_database("bench")
        storage = postgres.dagster_storage("bench")
        execution = celery_execution_config(redis.db_url(0), redis.db_url(1))
        env = {**THREAD_ENV, "PYTHONPATH": str(REPO_ROOT)}
        # the instance first: its first connection creates Dagster's tables (workers would race)
        bench = Bench(write_dagster_home(tmp / "dagster_home", storage), execution, env)
        stack.callback(bench.close)
        log(f"servers: postgres {postgres.start_seconds:.1f} s, redis {redis.start_seconds:.1f} s")

        def worker(name: str) -> CeleryWorker:
            w = CeleryWorker(name, storage=storage, execution_config=execution, env=env)
            stack.callback(w.close)  # also if it never becomes ready
            w.start()
            log(f"worker {name} ready in {w.start_seconds:.1f} s")
            return w

        days, epd = args.days, args.events_per_day
        a: dict[str, Any] = {}
        b: dict[str, Any] = {}
        # in-process ways first, with no worker running
        for mode in ("inprocess", "multiprocess"):
            a[mode] = overhead_runs(bench, mode, args.steps, args.repeats)
        backfill(bench, "inprocess", 1, 10_000, args.seed)  # warm: imports, first queries
        b["inprocess"] = backfill(bench, "inprocess", days, epd, args.seed)
        b["multiprocess_steps"] = backfill(bench, "multiprocess_steps", days, epd, args.seed)

        for n_workers in (1, 2):
            worker(f"w{n_workers - 1}")
            # warm every worker's pool process (imports, the job, polars) before timing
            backfill(bench, "celery_steps_warm", 2 * n_workers, 10_000, args.seed)
            for mode in ("celery", "celery_launched"):
                a[f"{mode}_{n_workers}w"] = overhead_runs(bench, mode, args.steps, args.repeats)
            b[f"celery_steps_{n_workers}w"] = backfill(
                bench, f"celery_steps_{n_workers}w", days, epd, args.seed
            )
            if not args.skip_runs_mode:
                b[f"celery_runs_{n_workers}w"] = backfill(
                    bench, f"celery_runs_{n_workers}w", days, epd, args.seed
                )
    finally:
        if not close_all():  # the watchdog is closing everything: let it finish and exit
            time.sleep(600)

    reference = b["inprocess"]["checksums"]
    agree = all(v["checksums"] == reference for v in b.values())
    report.update(
        {
            "steps_per_run": args.steps,
            "repeats": args.repeats,
            **{f"{k}_run_s": round(v["run_s"], 4) for k, v in a.items()},
            **{f"{k}_step_overhead_s": round(v["step_overhead_s"], 4) for k, v in a.items()},
            "overhead_runs_s": {k: v["runs_s"] for k, v in a.items()},
            "backfill_days": days,
            "events_per_day": epd,
            **{f"backfill_{k}_s": round(v["s"], 3) for k, v in b.items()},
            **{f"backfill_{k}_compute_s": round(v["compute_s"], 3) for k, v in b.items()},
            **{f"backfill_{k}_cpu_s": round(v["cpu_s"], 3) for k, v in b.items()},
            # busy cores: the steps' own wall time over the backfill's (ceiling: workers)
            **{
                f"backfill_{k}_parallelism": round(v["compute_s"] / v["s"], 3) for k, v in b.items()
            },
            **{f"backfill_{k}_loadavg_1m": round(v["loadavg_1m_before"], 2) for k, v in b.items()},
            "speedup_2w_vs_1w_steps": round(
                b["celery_steps_1w"]["s"] / b["celery_steps_2w"]["s"], 3
            ),
            "overhead_vs_inprocess_1w_steps": round(
                b["celery_steps_1w"]["s"] / b["inprocess"]["s"], 3
            ),
            "checksums_agree": agree,
            "day_checksums": reference,
        }
    )
    if not args.skip_runs_mode:
        report["speedup_2w_vs_1w_runs"] = round(
            b["celery_runs_1w"]["s"] / b["celery_runs_2w"]["s"], 3
        )
        report["overhead_vs_inprocess_1w_runs"] = round(
            b["celery_runs_1w"]["s"] / b["inprocess"]["s"], 3
        )
    report["loadavg_end"] = os.getloadavg()
    report["total_s"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(report))
    if not agree:
        raise SystemExit("day checksums differ between ways of running")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_run":
        raise SystemExit(_coordinate(sys.argv[2:]))
    main()
