"""What every ``mdp`` command shares: the consoles, the one-line errors, the stores, progress
bars and JSON/time helpers.

Errors the user can fix (bad config, missing data) are one line on stderr and a non-zero exit,
never a traceback.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from my_data_platform.core.objectstore import ObjectStore
    from my_data_platform.core.versioning import VersionStore

console = Console()
err = Console(stderr=True)


class UserError(Exception):
    """An error the user can act on: printed as one line, exit code 2."""


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as one error line on stderr and exit with ``code``."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def require_data_dir() -> None:
    """Exit with a hint when the configured data dir does not exist yet."""
    from my_data_platform.settings import get_settings

    data_dir = get_settings().data_dir
    if not data_dir.is_dir():
        fail(
            f"data dir {data_dir} does not exist: run `mdp seed` first, or set MDP_DATA_DIR "
            "to an existing data dir"
        )


def object_store() -> ObjectStore:
    """The object store the settings name."""
    from my_data_platform.defs.lake.resources import object_store_from_settings

    return object_store_from_settings()


def version_store() -> VersionStore:
    """The dataset version store the settings name; a versioning error exits with its message."""
    from my_data_platform.core.versioning import VersioningError
    from my_data_platform.defs.datasets.resources import version_store_from_settings

    try:
        return version_store_from_settings()
    except VersioningError as exc:
        fail(str(exc))


def progress() -> Progress:
    """A progress display on the shared console (bars stay on screen when done)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def jsonable(v: Any) -> Any:
    """``v`` with dates, decimals and bytes turned into JSON values (recursively)."""
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    return v


def parse_time(value: str) -> dt.datetime:
    """An ``--as-of`` value as an aware UTC time (UTC when it has no offset)."""
    try:
        ts = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"--as-of must be an ISO-8601 time (e.g. 2026-01-02T10:00:00Z), got {value!r}")
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)
