"""DuckDB helpers shared by the warehouse, the lake and the CLI.

Extensions come from the ``duckdb-extension-<name>`` PyPI packages pinned with DuckDB, so
nothing is downloaded at run time; a name without such a package falls back to ``INSTALL``.
"""

from __future__ import annotations

import importlib.util
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
    """Load extension ``name`` from its PyPI package when there is one."""
    if not _IDENT.match(name):
        raise ValueError(f"not an extension name: {name!r}")
    loaded = conn.execute(
        "SELECT loaded FROM duckdb_extensions() WHERE extension_name = ?", [name]
    ).fetchone()
    if loaded and loaded[0]:
        return
    path = packaged_extension_path(name)
    if path is not None:
        conn.execute(f"INSTALL '{_quote(str(path))}'")
    else:
        conn.execute(f"INSTALL {name}")
    conn.execute(f"LOAD {name}")


def quote_ident(name: str) -> str:
    """Quote an identifier that was already checked against an allow-list or pattern."""
    if not _IDENT.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return f'"{name}"'


def _quote(value: str) -> str:
    return value.replace("'", "''")


def sql_literal(value: Any) -> str:
    """A quoted SQL string literal, for the few statements that take no bound parameters."""
    return "'" + _quote(str(value)) + "'"
