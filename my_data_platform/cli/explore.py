"""``mdp explore``: the FiftyOne app for one dataset version."""

from __future__ import annotations

import signal
import socket
import sys
import time
from typing import Annotated, Any

import typer

from my_data_platform.cli._common import (
    console,
    fail,
    object_store,
    require_data_dir,
    version_store,
)


def resolve_commit(vs: Any, ref: str | None) -> str:
    """A commit id from a commit id (or a unique prefix of one on main), tag or branch;
    default: the newest published dataset (main's head)."""
    from my_data_platform.core import datasets as D
    from my_data_platform.core.versioning import DEFAULT_BRANCH, RefNotFoundError

    if ref is None:
        commit = vs.branch_head(DEFAULT_BRANCH)
        if not any(o.path == D.EXAMPLES for o in vs.list_objects(commit)):
            raise LookupError(
                "no dataset has been published to main yet: materialize datasets/popularity "
                "(`mdp run`) first"
            )
        return commit
    try:
        return vs.resolve_ref(ref)
    except RefNotFoundError:
        if len(ref) < 6 or any(c not in "0123456789abcdef" for c in ref):
            raise
    matches = {c.id for c in vs.log(DEFAULT_BRANCH, limit=10_000) if c.id.startswith(ref)}
    matches |= {c for c in vs.list_tags().values() if c.startswith(ref)}
    if len(matches) != 1:
        raise LookupError(
            f"{ref!r} matches {len(matches)} commits; give more of the commit id, a tag or a branch"
        )
    return matches.pop()


def _port_free(address: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def explore(
    ref: Annotated[
        str | None,
        typer.Argument(help="Dataset commit id (or prefix), tag or branch; default: main."),
    ] = None,
    port: Annotated[int, typer.Option(min=1, max=65535)] = 5151,
    address: Annotated[str, typer.Option(help="Interface to serve on.")] = "127.0.0.1",
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="Serve until interrupted (default), or return once the app is up "
            "(the app stops with this process).",
        ),
    ] = True,
) -> None:
    """Open a dataset version in the FiftyOne app (building its FiftyOne dataset if needed)."""
    from my_data_platform.core import exploration as X
    from my_data_platform.core.mongo import MongodError
    from my_data_platform.core.versioning import VersioningError
    from my_data_platform.defs.exploration.resources import fiftyone_from_settings

    require_data_dir()
    vs = version_store()
    try:
        commit = resolve_commit(vs, ref)
    except (LookupError, VersioningError) as exc:
        fail(str(exc))
    if not _port_free(address, port):
        fail(f"port {port} on {address} is in use: pass --port")
    resource = fiftyone_from_settings()
    try:
        fo = resource.get_fiftyone()
    except (MongodError, X.ExplorationError) as exc:
        fail(str(exc))
    with console.status(f"preparing the FiftyOne dataset of commit {commit[:12]}"):
        try:
            built = resource.dataset_for_commit(fo, vs, object_store(), commit)
        except (X.ExplorationError, VersioningError) as exc:
            fail(str(exc))
    ds = built.dataset
    what = f"built now ({built.added} samples)" if built.added else "already built"
    console.print(
        f"dataset commit {commit}: FiftyOne dataset {ds.name!r}, {len(ds)} samples, {what}",
        highlight=False,
        soft_wrap=True,
    )
    session = fo.launch_app(ds, address=address, port=port, remote=True, auto=False)
    host = "127.0.0.1" if address in ("0.0.0.0", "") else address
    console.print(f"FiftyOne app: http://{host}:{port}/", highlight=False, soft_wrap=True)
    sys.stdout.flush()
    if not wait:
        return
    console.print("serving; press Ctrl+C to stop", highlight=False)
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop closes the app too
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        session.close()
