"""The analyst sandbox: a DuckDB session that reads the warehouse and nothing else.

Built from DuckDB's own controls (a READ_ONLY attach, ``enable_external_access``,
``allowed_directories``, ``lock_configuration``, a memory limit) and an allow-list of statements
and table functions checked with DuckDB's own parser. Why each control is there, and what it
stops, is in ``docs/analyst-sandbox.md``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb

if TYPE_CHECKING:
    import pyarrow as pa

from my_data_platform.core.duck import load_extension, sql_literal
from my_data_platform.core.warehouse import (
    WarehouseError,
    WarehouseLocation,
    attach_catalog,
    load_extensions,
)

T = TypeVar("T")

# Table functions an analyst may call: generators, catalog introspection that shows no
# connection string or setting, and DuckLake's read-only history. Everything else is refused:
# file readers (read_*, glob, parquet_*, sniff_csv), other databases (sqlite_*, read_duckdb),
# DuckLake maintenance (it writes files and commits snapshots), SQL from strings (query,
# query_table, json_execute_serialized_sql), and duckdb_databases/settings/secrets/extensions,
# which show the catalog's connection string, paths and credentials.
ALLOWED_TABLE_FUNCTIONS = frozenset(
    {
        "range",
        "generate_series",
        "unnest",
        "json_each",
        "json_tree",
        "duckdb_tables",
        "duckdb_columns",
        "duckdb_schemas",
        "duckdb_views",
        "duckdb_types",
        "duckdb_constraints",
        "duckdb_indexes",
        "duckdb_functions",
        "duckdb_keywords",
        "pragma_table_info",
        "ducklake_snapshots",
        "ducklake_current_snapshot",
        "ducklake_last_committed_snapshot",
        "ducklake_table_info",
        "ducklake_table_insertions",
        "ducklake_table_deletions",
        "ducklake_table_changes",  # a macro over the two above
    }
)

# Scalar functions that reveal the session's configuration or run SQL given as a string.
REFUSED_SCALAR_FUNCTIONS = frozenset(
    {"current_setting", "getenv", "json_execute_serialized_sql", "write_log", "which_secret"}
)

# System views over refused table functions: the same leaks under another name.
REFUSED_RELATIONS = frozenset(
    {
        "duckdb_databases",
        "pragma_database_list",
        "duckdb_settings",
        "pg_settings",
        "duckdb_secrets",
        "duckdb_extensions",
        "duckdb_logs",
    }
)

# Settings httpfs fills from the environment's AWS_* variables when it loads.
_ENV_S3_SETTINGS = ("s3_access_key_id", "s3_secret_access_key", "s3_session_token")

# ``SHOW x`` without a query: only the table and database listings.
ALLOWED_SHOWS = frozenset({"tables", "__show_tables_expanded", "databases"})

_GAP = r"(?:\s|--[^\n]*(?:\n|$)|/\*.*?\*/)"
_EXPLAIN = re.compile(
    rf"^{_GAP}*EXPLAIN{_GAP}+(?P<analyze>ANALY[SZ]E{_GAP}+)?(?P<inner>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_FILE_LIKE = re.compile(r"[/\\:.*?]")


class SandboxError(RuntimeError):
    """The sandbox cannot be opened as configured; the message says what is missing."""


class QueryRefused(SandboxError):
    """A statement is outside the allow-list; the message is one line naming it."""


class QueryTimeout(SandboxError):
    """A statement ran past the session's time limit and was interrupted."""


@dataclass(frozen=True)
class S3ReadCredentials:
    """Read-only S3 credentials of the analysts' own, never the pipeline's."""

    key_id: str
    secret: str = field(repr=False)
    region: str = "us-east-1"
    endpoint: str | None = None
    """``host:port`` of an S3-compatible server; None for AWS."""
    use_ssl: bool = True
    session_token: str | None = field(default=None, repr=False)

    def secret_sql(self, scope: str) -> str:
        """``CREATE SECRET`` for ``scope`` (it takes literals only, so values are quoted)."""
        params = {"KEY_ID": self.key_id, "SECRET": self.secret, "REGION": self.region}
        if self.session_token:
            params["SESSION_TOKEN"] = self.session_token
        if self.endpoint:
            params |= {"ENDPOINT": self.endpoint, "URL_STYLE": "path"}
        params["USE_SSL"] = "true" if self.use_ssl else "false"
        params["SCOPE"] = scope
        parts = ", ".join(f"{k} {sql_literal(v)}" for k, v in params.items())
        return f"CREATE SECRET mdp_analyst_s3 (TYPE s3, {parts})"


# ---------------------------------------------------------------------------------------------
# The check


def check_query(conn: duckdb.DuckDBPyConnection, sql: str) -> list[str]:
    """Parse ``sql`` with DuckDB and return the statements to run, or raise ``QueryRefused``.

    A SELECT (with WITH, set operations, DESCRIBE, SHOW, SUMMARIZE) must serialize with
    ``json_serialize_sql``, which refuses every other statement, and every table function,
    relation and scalar function in its tree must pass. ``EXPLAIN [ANALYZE]`` passes only when
    the one statement inside does; it is rebuilt from that statement, so what runs is what was
    checked.
    """
    try:
        statements = conn.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(f"refused: cannot parse the query: {_first_line(exc)}") from exc
    if not statements:
        raise QueryRefused("refused: no statement given")
    return [_check_statement(conn, st) for st in statements]


def _check_statement(conn: duckdb.DuckDBPyConnection, st: duckdb.Statement) -> str:
    if st.type == duckdb.StatementType.SELECT:
        _check_select(conn, st.query)
        return st.query
    if st.type == duckdb.StatementType.EXPLAIN:
        match = _EXPLAIN.match(st.query)
        if match is None:
            raise QueryRefused("refused: only EXPLAIN [ANALYZE] <query> is allowed, no options")
        try:
            inner = conn.extract_statements(match["inner"])
        except duckdb.Error as exc:
            raise QueryRefused(
                f"refused: cannot parse the explained statement: {_first_line(exc)}"
            ) from exc
        if len(inner) != 1 or inner[0].type != duckdb.StatementType.SELECT:
            kinds = ", ".join(s.type.name for s in inner) or "nothing"
            raise QueryRefused(f"refused: EXPLAIN of {kinds}; only a query may be explained")
        _check_select(conn, inner[0].query)
        return ("EXPLAIN ANALYZE " if match["analyze"] else "EXPLAIN ") + inner[0].query
    raise QueryRefused(
        f"refused: {st.type.name} statements are not allowed; the analyst session is read-only "
        "(SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN [ANALYZE])"
    )


def _check_select(conn: duckdb.DuckDBPyConnection, query: str) -> None:
    row = conn.execute("SELECT json_serialize_sql(?)", [query]).fetchone()
    tree = json.loads(row[0]) if row else {"error": True}
    if tree.get("error"):
        # PRAGMA parses as a SELECT but does not serialize; neither does anything unusual.
        raise QueryRefused(
            "refused: not a plain query (the parser says: "
            f"{tree.get('error_message', 'unreadable')}); PRAGMA and the like are not allowed"
        )
    for node in _nodes(tree):
        kind = node.get("type")
        if kind == "TABLE_FUNCTION":
            name = str(node.get("function", {}).get("function_name", "")).lower()
            if name not in ALLOWED_TABLE_FUNCTIONS:
                raise QueryRefused(f"refused: table function {name}() is not allowed here")
        elif node.get("class") == "FUNCTION":
            name = str(node.get("function_name", "")).lower()
            if name in REFUSED_SCALAR_FUNCTIONS:
                raise QueryRefused(f"refused: function {name}() is not allowed here")
        elif kind == "BASE_TABLE":
            _check_relation(node)
        elif kind == "SHOW_REF" and node.get("query") is None:
            what = str(node.get("table_name", "")).strip('"').lower()
            if what not in ALLOWED_SHOWS:
                raise QueryRefused(f"refused: SHOW {what} is not allowed; SHOW TABLES is")


def _check_relation(node: dict[str, Any]) -> None:
    name = str(node.get("table_name", ""))
    qualifiers = (str(node.get("catalog_name", "")), str(node.get("schema_name", "")))
    if _FILE_LIKE.search(name):
        raise QueryRefused(f"refused: {name!r} reads a file by name; query warehouse tables")
    if name.lower() in REFUSED_RELATIONS:
        raise QueryRefused(f"refused: {name} shows the session's connections or settings")
    if any(q.lower().startswith("__ducklake_metadata") for q in qualifiers):
        raise QueryRefused("refused: the DuckLake metadata catalog is read through ducklake_*()")


def _nodes(tree: Any) -> Iterator[dict[str, Any]]:
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# The session


class AnalystSession:
    """A locked DuckDB session on the warehouse; run queries with ``run``."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def run(self, sql: str, timeout_s: float = 60.0) -> tuple[list[str], list[tuple]]:
        """Check and run ``sql``; returns column names and rows of its last statement."""
        return self._execute(sql, timeout_s, lambda rel: rel.fetchall())

    def arrow(self, sql: str, timeout_s: float = 60.0) -> pa.Table:
        """Check and run ``sql``; returns its last statement's result as an Arrow table (typed
        columns, for frames)."""
        return self._execute(sql, timeout_s, lambda rel: rel.to_arrow_table())[1]

    def _execute(
        self, sql: str, timeout_s: float, fetch: Callable[[Any], T]
    ) -> tuple[list[str], T]:
        """DuckDB 1.5.5 has no statement timeout setting: a timer interrupts the connection."""
        statements = check_query(self._conn, sql)
        with self._lock:
            fired = threading.Event()
            running = threading.Event()
            running.set()

            def interrupt() -> None:
                if running.is_set():
                    fired.set()
                    self._conn.interrupt()

            timer = threading.Timer(timeout_s, interrupt)
            timer.daemon = True
            timer.start()
            try:
                rel = None
                for text in statements:
                    rel = self._conn.execute(text)
                assert rel is not None
                cols = [d[0] for d in (rel.description or [])]
                rows = fetch(rel)
            except duckdb.InterruptException as exc:
                if fired.is_set():
                    raise QueryTimeout(f"the query timed out after {timeout_s:g} s") from exc
                raise
            finally:
                running.clear()
                timer.cancel()
            return cols, rows

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> AnalystSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_analyst_session(
    catalog: str,
    data_path: str,
    *,
    memory_limit: str = "2GB",
    threads: int = 2,
    read_credentials: S3ReadCredentials | None = None,
) -> AnalystSession:
    """Open the warehouse at ``catalog`` (``sqlite:<path>``, ``postgres:<libpq string>`` or
    ``duckdb:<path>``) with data under ``data_path`` (a folder or an ``s3://`` prefix).

    An ``s3://`` data path needs ``read_credentials``: the session never borrows the
    pipeline's. Settings are applied after the extensions load and the catalog is attached,
    and locked last.
    """
    location = WarehouseLocation(catalog=catalog, data_path=data_path)
    on_s3 = data_path.startswith("s3://")
    if on_s3 and read_credentials is None:
        raise SandboxError(
            f"the warehouse data is on S3 ({data_path}): the analyst session needs read-only "
            "credentials of its own (read_credentials); it never uses the pipeline's"
        )
    if not location.catalog_exists():
        raise SandboxError(f"the warehouse has not been built yet: {location.describe()}")
    conn = duckdb.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_persistent_secrets": False,  # ~/.duckdb/stored_secrets may hold the pipeline's
            "allow_community_extensions": False,
            "python_enable_replacements": False,  # no Python variables as tables
            "custom_user_agent": "my_data_platform-analyst",
        },
    )
    try:
        _configure(conn, location, memory_limit, threads, read_credentials)
    except BaseException:
        conn.close()
        raise
    return AnalystSession(conn)


def _configure(
    conn: duckdb.DuckDBPyConnection,
    location: WarehouseLocation,
    memory_limit: str,
    threads: int,
    credentials: S3ReadCredentials | None,
) -> None:
    load_extensions(conn, location)
    data_path = location.data_path.rstrip("/") + "/"
    if credentials is not None and data_path.startswith("s3://"):
        load_extension(conn, "httpfs")
        # httpfs copies AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN from
        # the process environment (the pipeline's keys) into its s3_* settings when it loads:
        # blank them, so the session holds the analysts' scoped secret and nothing else.
        for name in _ENV_S3_SETTINGS:
            conn.execute(f"SET GLOBAL {name} = ''")
        conn.execute(credentials.secret_sql(data_path))
    conn.execute("SET GLOBAL TimeZone = 'UTC'")
    conn.execute("SET enable_progress_bar = false")
    try:
        attach_catalog(conn, location, read_only=True)
    except WarehouseError as exc:
        raise SandboxError(_first_line(exc)) from exc
    conn.execute("SET allowed_directories = ?", [[data_path]])
    # The catalog needs no entry: SQLite and PostgreSQL catalogs are read by their own
    # clients, and DuckLake adds the paths it needs to ``allowed_paths`` itself.
    conn.execute("SET temp_directory = ''")  # no spilling: the default .tmp/ is writable
    conn.execute("SET enable_external_access = false")
    conn.execute("SET memory_limit = ?", [memory_limit])
    conn.execute("SET threads = ?", [int(threads)])
    conn.execute("SET lock_configuration = true")
