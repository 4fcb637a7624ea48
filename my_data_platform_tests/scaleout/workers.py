"""Dagster celery workers as separate processes that share nothing but the servers.

Why: the scale-out test must show steps running in processes with their own home, temp and
data folders and their own Dagster instance directory, reaching each other only through
PostgreSQL (run storage), Redis (broker and results) and S3 (step outputs). A worker here is
started the documented way, ``dagster-celery worker start -A dagster_celery.app -y <yaml>``,
in its own process group so the test can stop it cleanly or SIGKILL all of it at once (a
machine that dies).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from my_data_platform_tests.scaleout.servers import ServerError, log_tail, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]


def write_dagster_home(home: Path, storage: dict[str, Any]) -> Path:
    """A ``DAGSTER_HOME`` whose dagster.yaml keeps runs, events and schedules in ``storage``
    (e.g. :meth:`PostgresServer.dagster_storage`); returns ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    config = {"storage": storage, "telemetry": {"enabled": False}}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return home


def celery_execution_config(
    broker: str, backend: str, config_source: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``execution: config:`` block shared by the run and its workers (they must agree)."""
    config: dict[str, Any] = {"broker": broker, "backend": backend}
    if config_source:
        config["config_source"] = config_source
    return config


def ping_workers(broker: str, backend: str, timeout: float = 1.0) -> set[str]:
    """The names of the celery workers that answer a broadcast ping now."""
    from dagster_celery.make_app import make_app

    app = make_app({"broker": broker, "backend": backend})
    try:
        replies = app.control.ping(timeout=timeout) or []
    finally:
        app.close()
    return {name for reply in replies for name in reply}


class CeleryWorker:
    """One ``dagster-celery`` worker (one task at a time) with private folders.

    ``env`` adds variables (server addresses, credentials); nothing else of the test's
    environment leaks in except PATH, the interpreter's and the repository on PYTHONPATH.
    """

    def __init__(
        self,
        name: str,
        *,
        storage: dict[str, Any],
        execution_config: dict[str, Any],
        env: dict[str, str] | None = None,
        concurrency: int = 1,
    ) -> None:
        self.name = name
        self.root = Path(tempfile.mkdtemp(prefix=f"mdp-worker-{name}-"))
        self.log = self.root / "worker.log"
        self.dagster_home = write_dagster_home(self.root / "dagster_home", storage)
        self.config_yaml = self.root / "celery.yaml"
        self.config_yaml.write_text(
            yaml.safe_dump({"execution": {"config": execution_config}}, sort_keys=False)
        )
        self.execution_config = execution_config
        self.env = env or {}
        self.concurrency = concurrency
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds = 0.0
        """Wall time from launch to the first answered ping."""
        self._t0 = 0.0
        self.hostname = f"{name}@{socket.gethostname()}"
        """The celery node name (``dagster-celery`` appends ``@%h``)."""

    def _environment(self) -> dict[str, str]:
        for sub in ("home", "tmp", "data"):
            (self.root / sub).mkdir(exist_ok=True)
        keep = {k: os.environ[k] for k in ("LANG", "LC_ALL", "TZ") if k in os.environ}
        # the CLI runs `celery` from PATH: this interpreter's bin folder (the venv) goes first
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        return {
            **keep,
            "PATH": path,
            "HOME": str(self.root / "home"),
            "TMPDIR": str(self.root / "tmp"),
            "MDP_DATA_DIR": str(self.root / "data"),
            "DAGSTER_HOME": str(self.dagster_home),
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
            "MDP_SCALEOUT_WORKER": self.name,
            **self.env,
        }

    def launch(self) -> Self:
        """Start the worker process; :meth:`wait_ready` waits for it (launch several first:
        they start in parallel)."""
        bindir = Path(sys.executable).parent
        args = [
            str(bindir / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
            "-y", str(self.config_yaml), "-n", self.name, "-l", "INFO",
            "--", f"--concurrency={self.concurrency}", "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        self._t0 = time.monotonic()
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=self._environment(),
                cwd=self.root, start_new_session=True,
            )  # fmt: skip
        return self

    def wait_ready(self, timeout: float = 120) -> Self:
        """Block until the worker answers a broadcast ping (it consumes tasks by then)."""
        proc = self.proc
        assert proc is not None, "launch() first"
        broker, backend = self.execution_config["broker"], self.execution_config["backend"]
        wait_until(
            lambda: self.hostname in ping_workers(broker, backend),
            f"celery worker {self.name}", timeout=timeout,
            alive=lambda: proc.poll() is None, log=self.log,
        )  # fmt: skip
        self.start_seconds = time.monotonic() - self._t0
        return self

    def start(self, timeout: float = 120) -> Self:
        return self.launch().wait_ready(timeout)

    @property
    def pids(self) -> list[int]:
        """Every process of the worker (the CLI, celery's main process, its pool children)."""
        if self.proc is None:
            return []
        out = subprocess.run(
            ["pgrep", "-g", str(self.proc.pid)], capture_output=True, text=True, check=False
        )
        return [int(p) for p in out.stdout.split()]

    def kill(self) -> None:
        """SIGKILL the whole worker at once, as if its machine died."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self._reap_group()

    def stop(self, grace: float = 20) -> None:
        """Celery's warm shutdown (SIGTERM), then SIGKILL whatever is left."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(grace)
        self._reap_group()

    def _reap_group(self) -> None:
        # the CLI can exit before celery's own processes: kill the group's leftovers too
        if self.proc is None:
            return
        deadline = time.monotonic() + 20
        while self.pids and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            time.sleep(0.1)
        if self.pids:
            raise ServerError(f"worker {self.name} left processes {self.pids}")

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log, lines)


@contextlib.contextmanager
def celery_workers(
    names: list[str],
    *,
    storage: dict[str, Any],
    execution_config: dict[str, Any],
    env: dict[str, str] | None = None,
) -> Iterator[dict[str, CeleryWorker]]:
    """Several workers, launched together and all stopped on exit (also on a failed start)."""
    workers: dict[str, CeleryWorker] = {}
    try:
        for name in names:
            workers[name] = CeleryWorker(
                name, storage=storage, execution_config=execution_config, env=env
            ).launch()
        for worker in workers.values():
            worker.wait_ready()
        yield workers
    finally:
        errors = []
        for worker in workers.values():
            try:
                worker.close()
            except ServerError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
