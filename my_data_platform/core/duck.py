"""DuckDB helpers shared by the warehouse, the lake and the CLI.

Extensions come from the ``duckdb-extension-<name>`` PyPI packages pinned with DuckDB, so
nothing is downloaded at run time; a name without such a package falls back to ``INSTALL``.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Any

import duckdb

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def packaged_extension_path(name: str) -> Path | None:
    """The ``.duckdb_extension`` file shipped by ``duckdb-extension-<name>``, if installed."""
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    version = duckdb.__version__.split("-")[0]
    path = root / "extensions" / f"v{version}" / f"{name}.duckdb_extension"
    if path.is_file():
        return path
    found = sorted(root.glob(f"extensions/*/{name}.duckdb_extension"))
    return found[-1] if found else None


def load_extension(conn: duckdb.DuckDBPyConnection, name: str) -> None:
    """Load extension ``name`` from its PyPI package when there is one.

    ``INSTALL`` copies the extension (tens of MB) into DuckDB's extension folder, so it runs
    only when the copy there is missing, came from elsewhere or is older than the package's.
    """
    if not _IDENT.fullmatch(name):
        raise ValueError(f"not an extension name: {name!r}")
    row = conn.execute(
        "SELECT loaded, installed, install_path, installed_from FROM duckdb_extensions() "
        "WHERE extension_name = ? OR list_contains(aliases, ?)",
        [name, name],
    ).fetchone()
    if row and row[0]:
        return
    path = packaged_extension_path(name)
    if path is not None:
        if not (row and row[1] and row[3] == str(path) and _not_older(row[2], path)):
            conn.execute(f"INSTALL '{_quote(str(path))}'")
    elif not (row and row[1]):
        conn.execute(f"INSTALL {name}")
    conn.execute(f"LOAD {name}")


def _not_older(installed: str | None, source: Path) -> bool:
    try:
        return installed is not None and os.stat(installed).st_mtime >= source.stat().st_mtime
    except OSError:
        return False


def quote_ident(name: str) -> str:
    """Quote an identifier that was already checked against an allow-list or pattern."""
    if not _IDENT.fullmatch(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return f'"{name}"'


def _quote(value: str) -> str:
    return value.replace("'", "''")


def sql_literal(value: Any) -> str:
    """A quoted SQL string literal, for the few statements that take no bound parameters."""
    return "'" + _quote(str(value)) + "'"
