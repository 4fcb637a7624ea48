"""Files written whole or not at all, and an exclusive lock that several processes share.

Every temp-file-then-rename and every ``flock`` in the package goes through here. Temp files
sit beside their destination (a rename is only atomic within one filesystem) and are named
``.tmp-*``, so directory listings can skip them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TEMP_PREFIX = ".tmp-"


class LockTimeout(TimeoutError):
    """Another holder kept the lock past the timeout; the message names the lock file."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        super().__init__(f"lock {path} was held by another process for more than {timeout:g}s")


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` survive a power loss."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(
    path: Path, *, suffix: str = "", fsync: bool = False, make_parents: bool = True
) -> Iterator[Path]:
    """Yield a temp path beside ``path`` for the caller to write (e.g. ``df.write_parquet``);
    it replaces ``path`` when the block succeeds and is removed when it fails.

    ``suffix`` keeps the extension writers look at. ``fsync`` flushes the file and the
    directory, so the new ``path`` survives a power loss, not only a crash.
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex}{suffix}")
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_write(
    path: Path, mode: str = "wb", *, fsync: bool = True, make_parents: bool = True
) -> Iterator[IO[Any]]:
    """Open a temp file beside ``path`` for writing; readers see the old file or the whole new
    one, never a part. ``mode`` is ``"wb"`` or ``"w"`` (text)."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write writes a new file: mode must be 'wb' or 'w', not {mode!r}")
    with (
        atomic_path(path, fsync=fsync, make_parents=make_parents) as tmp,
        open(tmp, mode.replace("w", "x")) as f,
    ):
        yield f


def atomic_write_bytes(
    path: Path, data: bytes, *, fsync: bool = True, make_parents: bool = True
) -> None:
    with atomic_write(path, fsync=fsync, make_parents=make_parents) as f:
        f.write(data)


@contextlib.contextmanager
def file_lock(path: Path, *, timeout: float | None = None, poll: float = 0.05) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created, with its folder, if missing).

    ``timeout=None`` waits as long as it takes; otherwise :class:`LockTimeout` is raised once
    ``timeout`` seconds have passed. Waiting polls, starting at a millisecond and backing off
    to ``poll`` seconds. The lock dies with its process, so a crashed holder never blocks.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + timeout
            delay = min(0.001, poll)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(path, timeout) from None
                    time.sleep(delay)
                    delay = min(delay * 2, poll)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
