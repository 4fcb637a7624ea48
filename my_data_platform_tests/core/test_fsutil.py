"""Atomic writes leave the old file or the new one, and the file lock excludes other processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from my_data_platform.core.fsutil import (
    LockTimeout,
    atomic_path,
    atomic_write,
    atomic_write_bytes,
    file_lock,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


class Boom(Exception):
    pass


def test_atomic_write_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "state.json"
    atomic_write_bytes(target, b"old")
    with atomic_write(target, "w") as f:
        f.write("new ")
        assert target.read_bytes() == b"old"  # nothing visible until the block ends
        f.write("text")
    assert target.read_text() == "new text"
    assert os.listdir(target.parent) == ["state.json"]


@pytest.mark.parametrize("existing", [None, b"old"])
def test_an_exception_leaves_no_partial_file(tmp_path: Path, existing: bytes | None) -> None:
    target = tmp_path / "data.bin"
    if existing is not None:
        target.write_bytes(existing)
    with pytest.raises(Boom), atomic_write(target) as f:
        f.write(b"half")
        raise Boom
    assert os.listdir(tmp_path) == ([] if existing is None else ["data.bin"])
    if existing is not None:
        assert target.read_bytes() == existing


def test_atomic_path_keeps_the_suffix_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "table.parquet"
    with atomic_path(target, suffix=".parquet", fsync=True) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".tmp-")
        assert tmp.suffix == ".parquet"
        tmp.write_bytes(b"x")
    assert target.read_bytes() == b"x"
    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise Boom
    assert os.listdir(tmp_path) == ["table.parquet"]
    assert target.read_bytes() == b"x"


def test_atomic_write_refuses_append_modes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"), atomic_write(tmp_path / "x", "ab"):
        pass


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from my_data_platform.core.fsutil import file_lock
    with file_lock(Path(sys.argv[1])):
        Path(sys.argv[2]).touch()
        time.sleep(float(sys.argv[3]))
    """
)


def _hold_in_other_process(lock: Path, ready: Path, seconds: float) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(lock), str(ready), str(seconds)],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    return proc


def test_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    lock = tmp_path / "locks" / "writer.lock"
    proc = _hold_in_other_process(lock, tmp_path / "ready", 1.0)
    try:
        t0 = time.monotonic()
        with pytest.raises(LockTimeout, match=r"writer\.lock") as exc, file_lock(lock, timeout=0.2):
            pass
        assert exc.value.path == lock and time.monotonic() - t0 >= 0.2
        assert isinstance(exc.value, TimeoutError)
        with file_lock(lock):  # no timeout: waits until the other process lets go
            waited = time.monotonic() - t0
        assert proc.wait(30) == 0 and waited >= 0.5
    finally:
        proc.kill()
        proc.wait()


def test_lock_is_released_on_exit_and_on_error(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with pytest.raises(Boom), file_lock(lock, timeout=1):
        raise Boom
    with file_lock(lock, timeout=0):
        pass
    assert lock.exists()
