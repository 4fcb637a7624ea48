"""One shared ``mongod`` per database directory, for FiftyOne's embedded default.

The first caller starts it under a lock and later callers reuse it; a small supervisor stops it
when idle. The folder layout and the reasons are in docs/storage.md.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from my_data_platform.core.fsutil import atomic_write_bytes, file_lock

logger = logging.getLogger(__name__)

STATE_FILE = "mongod.json"
LOCK_FILE = "mongod.lock"
LOG_FILE = "mongod.log"
LEASE_FILE = "lease"
SUPERVISOR_APP = "mdp-mongod-supervisor"
DEFAULT_IDLE_TIMEOUT_S = 300.0
_PING_TIMEOUT_MS = 1500


class MongodError(RuntimeError):
    """``mongod`` could not be found, started or stopped; the message says which and where."""


def find_mongod() -> Path:
    """The ``mongod`` bundled with FiftyOne (found without importing ``fiftyone``)."""
    spec = importlib.util.find_spec("fiftyone")
    if spec is None or not spec.submodule_search_locations:
        raise MongodError("fiftyone is not installed, so there is no bundled mongod")
    path = Path(next(iter(spec.submodule_search_locations))) / "db" / "bin" / "mongod"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise MongodError(
            f"no executable mongod at {path}: reinstall with `make install` (it installs a "
            "mongod that runs here), or set a database_uri for an external MongoDB"
        )
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _locked(db_dir: Path) -> Iterator[None]:
    with file_lock(db_dir / LOCK_FILE):
        yield


def _read_state(db_dir: Path) -> dict[str, Any] | None:
    """The state of this folder's mongod, or None. A state written for another folder (the
    data dir was copied or moved here) is not ours: its pid and port belong to the original's
    mongod, which must be neither reused nor stopped from here."""
    try:
        state = json.loads((db_dir / STATE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not isinstance(state, dict):
        return None
    recorded = state.get("dbpath")
    if recorded is not None and Path(recorded).resolve() != (db_dir / "data").resolve():
        return None
    return state


def _write_state(db_dir: Path, state: dict[str, Any]) -> None:
    atomic_write_bytes(db_dir / STATE_FILE, json.dumps(state).encode(), fsync=False)


def _client(uri: str, appname: str = "mdp") -> Any:
    import pymongo

    return pymongo.MongoClient(
        uri,
        directConnection=True,
        serverSelectionTimeoutMS=_PING_TIMEOUT_MS,
        connectTimeoutMS=_PING_TIMEOUT_MS,
        appname=appname,
    )


def _serves(uri: str, dbpath: Path) -> bool:
    """True if a mongod answers at ``uri`` *and* owns ``dbpath`` (not a stranger on a reused
    port)."""
    from pymongo.errors import PyMongoError

    client = _client(uri)
    try:
        opts = client.admin.command("getCmdLineOpts")
        served = opts.get("parsed", {}).get("storage", {}).get("dbPath")
        return served is not None and Path(served).resolve() == dbpath.resolve()
    except PyMongoError:
        return False
    finally:
        client.close()


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an unreaped zombie is dead for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _log_tail(db_dir: Path, lines: int = 8) -> str:
    """The errors of the newest start attempt, then its last lines (mongod logs JSON)."""
    try:
        text = (db_dir / LOG_FILE).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log written)"
    starts = [i for i, line in enumerate(text) if "SERVER RESTARTED" in line]
    text = text[starts[-1] :] if starts else text
    errors = [line for line in text if '"s":"E"' in line or '"s":"F"' in line]
    tail = [line for line in text[-lines:] if line not in errors]
    return "\n".join([*errors[-5:], *tail])


def _start(db_dir: Path, port: int | None, cache_gb: float) -> dict[str, Any]:
    mongod = find_mongod()
    dbpath = db_dir / "data"
    dbpath.mkdir(parents=True, exist_ok=True)
    attempts = 1 if port else 3  # a free port can be taken between choosing and binding it
    last = ""
    for _ in range(attempts):
        chosen = port or _free_port()
        cmd = [
            str(mongod), "--dbpath", str(dbpath), "--bind_ip", "127.0.0.1",
            "--port", str(chosen), "--nounixsocket", "--fork",
            "--logpath", str(db_dir / LOG_FILE), "--logappend",
            "--pidfilepath", str(db_dir / "mongod.pid"),
            "--wiredTigerCacheSizeGB", str(cache_gb),
            "--setParameter", "diagnosticDataCollectionEnabled=false",
        ]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise MongodError(f"could not run {mongod} for {dbpath}: {exc}") from exc
        uri = f"mongodb://127.0.0.1:{chosen}"
        if proc.returncode == 0 and _serves(uri, dbpath):
            pid = _forked_pid(proc.stdout, db_dir)
            logger.info("started mongod (pid %s) on %s for %s", pid, uri, dbpath)
            return {"pid": pid, "port": chosen, "uri": uri, "dbpath": str(dbpath)}
        last = (proc.stdout + proc.stderr).strip()[-800:]
    raise MongodError(
        f"{mongod} did not start for {dbpath} (exit {proc.returncode}): {last}\n"
        f"last lines of {db_dir / LOG_FILE}:\n{_log_tail(db_dir)}"
    )


def _forked_pid(stdout: str, db_dir: Path) -> int | None:
    for line in stdout.splitlines():
        if "forked process:" in line:
            with contextlib.suppress(ValueError):
                return int(line.rsplit(":", 1)[1])
    with contextlib.suppress(OSError, ValueError):
        return int((db_dir / "mongod.pid").read_text().strip())
    return None


# Starts argv[1:] in a new session, detached from the caller, and prints its pid.
_DETACH = (
    "import subprocess, sys; d = subprocess.DEVNULL; print(subprocess.Popen(sys.argv[1:], "
    "stdin=d, stdout=d, stderr=d, start_new_session=True, close_fds=True).pid)"
)


def _spawn_supervisor(db_dir: Path, idle_timeout_s: float, debug: bool) -> int:
    """Start the idle supervisor so that it outlives this process and is not its child: a
    short-lived launcher starts it and exits, so nothing here is left to reap (a child still
    running when its ``Popen`` is collected is a zombie-to-be and a ResourceWarning)."""
    cmd = [sys.executable, "-m", "my_data_platform.core.mongo", "supervise", str(db_dir),
           str(idle_timeout_s), *(["--debug"] if debug else [])]  # fmt: skip
    launched = subprocess.run(
        [sys.executable, "-c", _DETACH, *cmd], capture_output=True, text=True, timeout=60
    )
    if launched.returncode != 0:
        raise MongodError(f"could not start the mongod supervisor: {launched.stderr.strip()}")
    return int(launched.stdout.strip())


def ensure_mongod(
    db_dir: str | Path,
    port: int | None = None,
    *,
    idle_timeout_s: float | None = DEFAULT_IDLE_TIMEOUT_S,
    cache_gb: float = 0.25,
    debug: bool = False,
) -> str:
    """The URI of the ``mongod`` that serves ``db_dir``, started if none does.

    Safe to call from many processes at once: one starts it, the others wait on the lock and
    reuse it. ``idle_timeout_s=None`` keeps it running until :func:`stop_mongod`. ``debug``
    makes its idle supervisor log every poll (``supervisor.log`` in ``db_dir``).
    """
    db_dir = Path(db_dir).resolve()
    with _locked(db_dir):
        (db_dir / LEASE_FILE).touch()
        state = _read_state(db_dir)
        if state and _serves(state["uri"], db_dir / "data"):
            if idle_timeout_s is not None and not _pid_alive(state.get("supervisor_pid")):
                state["supervisor_pid"] = _spawn_supervisor(db_dir, idle_timeout_s, debug)
                _write_state(db_dir, state)
            return state["uri"]
        if state and _pid_alive(state.get("pid")):
            # recorded but not answering (hung, or still shutting down): make room for a new one
            _terminate(state["pid"], timeout_s=20)
        state = _start(db_dir, port, cache_gb)
        if idle_timeout_s is not None:
            state["supervisor_pid"] = _spawn_supervisor(db_dir, idle_timeout_s, debug)
        _write_state(db_dir, state)
        return state["uri"]


def _terminate(pid: int, timeout_s: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            return
        time.sleep(0.05)


def _shutdown(db_dir: Path, state: dict[str, Any], timeout_s: float) -> None:
    from pymongo.errors import PyMongoError

    if _serves(state["uri"], db_dir / "data"):
        client = _client(state["uri"])
        # the server drops the connection while it shuts down
        with contextlib.suppress(PyMongoError):
            client.admin.command("shutdown", timeoutSecs=5)
        client.close()
    pid = state.get("pid")
    if pid:
        _terminate(pid, timeout_s)
    (db_dir / STATE_FILE).unlink(missing_ok=True)


def stop_mongod(db_dir: str | Path, timeout_s: float = 30) -> bool:
    """Stop the ``mongod`` serving ``db_dir`` (and its supervisor); False if none was running."""
    db_dir = Path(db_dir).resolve()
    if not db_dir.is_dir():
        return False
    with _locked(db_dir):
        state = _read_state(db_dir)
        if not state:
            return False
        _shutdown(db_dir, state, timeout_s)
        sup = state.get("supervisor_pid")
        if sup and _pid_alive(sup):
            _terminate(sup, timeout_s=5)
        return True


def client_connections(client: Any) -> int:
    """Connections from clients other than the supervisor (FiftyOne, the app, steps).

    Only connections that finished their handshake count: a connection still opening has no
    metadata yet, so it would be counted whoever opened it.
    """
    ops = client.admin.aggregate(
        [
            {"$currentOp": {"allUsers": True, "idleConnections": True}},
            {
                "$match": {
                    "client": {"$exists": True},
                    "clientMetadata": {"$exists": True},
                    "appName": {"$ne": SUPERVISOR_APP},
                }
            },
            {"$count": "n"},
        ]
    )
    rows = list(ops)
    return int(rows[0]["n"]) if rows else 0


def supervise(db_dir: Path, idle_timeout_s: float, poll_s: float | None = None) -> None:
    """Stop the mongod of ``db_dir`` once it has been idle for ``idle_timeout_s``."""
    from pymongo.errors import PyMongoError

    poll = poll_s or max(0.5, min(5.0, idle_timeout_s / 4))
    last_active = time.time()
    with _locked(db_dir):  # our spawner writes the state under this lock
        state = _read_state(db_dir)
    if state is None or state.get("supervisor_pid") != os.getpid():
        return
    client = _client(state["uri"], appname=SUPERVISOR_APP)  # one client: no handshakes per poll
    try:
        while True:
            time.sleep(poll)
            state = _read_state(db_dir)
            if state is None or state.get("supervisor_pid") not in (None, os.getpid()):
                return  # stopped, or replaced by a newer supervisor
            if not (db_dir / "data").is_dir():
                # the folder was removed under it (a test's tmp dir): nothing worth keeping
                with contextlib.suppress(OSError):
                    _terminate(state["pid"], timeout_s=10)
                return
            try:
                if client_connections(client) > 0:
                    last_active = time.time()
            except PyMongoError:
                if not _pid_alive(state.get("pid")):
                    return
                continue
            idle = time.time() - max(last_active, _mtime(db_dir / LEASE_FILE))
            logger.debug("idle for %.1fs", idle)
            if idle < idle_timeout_s:
                continue
            with _locked(db_dir):
                state = _read_state(db_dir)
                if state is None:
                    return
                if time.time() - _mtime(db_dir / LEASE_FILE) < idle_timeout_s:
                    continue  # a caller is about to connect
                try:
                    busy = client_connections(client) > 0
                except PyMongoError:
                    continue
                if busy:
                    last_active = time.time()
                    continue
                logger.info("mongod for %s idle for %ss: stopping it", db_dir, idle_timeout_s)
                _shutdown(db_dir, state, timeout_s=30)
                return
    finally:
        client.close()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _main(argv: list[str]) -> int:
    debug = argv[3:] == ["--debug"]
    if len(argv) in (3, 4) and argv[0] == "supervise" and (len(argv) == 3 or debug):
        logging.basicConfig(
            filename=Path(argv[1]) / "supervisor.log",
            level=logging.INFO,
            format="%(asctime)s %(process)d %(message)s",
        )
        if debug:
            logger.setLevel(logging.DEBUG)
        with contextlib.suppress(KeyboardInterrupt):
            supervise(Path(argv[1]), float(argv[2]))
        return 0
    sys.stderr.write(
        "usage: python -m my_data_platform.core.mongo supervise DB_DIR IDLE_S [--debug]\n"
    )
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
