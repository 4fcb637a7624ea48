"""The DuckDB warehouse: a DuckLake catalog whose data files live in the lake.

DuckLake keeps table metadata in a catalog database (SQLite by default, PostgreSQL in
production) and data as Parquet files under ``DATA_PATH``. Every commit is a snapshot, so an
analyst's long query reads one consistent snapshot while the pipeline commits new ones, and a
partition replaced inside one transaction is never seen half written or missing.

Tables follow asset keys: asset ``warehouse/events`` is ``warehouse.events`` once the lake is
the default catalog (``USE mdp``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from my_data_platform.core.duck import load_extension, quote_ident, sql_literal
from my_data_platform.core.objectstore import ObjectStore

CATALOG_ALIAS = "mdp"

_METADATA = f"__ducklake_metadata_{CATALOG_ALIAS}"
"""DuckLake's own tables for the attached catalog (``ducklake_metadata`` and the rest)."""

logger = logging.getLogger(__name__)


class WarehouseError(RuntimeError):
    """The warehouse cannot be reached or used; the message names the catalog."""


@dataclass(frozen=True)
class WarehouseLocation:
    """Where the catalog and the data files are.

    ``catalog`` is ``sqlite:<path>``, ``postgres:<libpq connection string>`` or
    ``duckdb:<path>``; ``data_path`` is a folder or an ``s3://`` prefix.
    """

    catalog: str
    data_path: str

    @property
    def kind(self) -> str:
        """``sqlite``, ``postgres`` or ``duckdb``."""
        return self.catalog.partition(":")[0]

    @property
    def catalog_file(self) -> Path | None:
        """The file that holds the catalog (SQLite and DuckDB catalogs); None for a server."""
        kind, _, rest = self.catalog.partition(":")
        return Path(rest) if kind in ("sqlite", "duckdb") else None

    def describe(self) -> str:
        # A PostgreSQL connection string may carry a password: show only its kind and dbname.
        kind, _, rest = self.catalog.partition(":")
        if kind == "postgres":
            db = re.search(r"dbname=(\S+)", rest)
            return f"DuckLake on postgres:{db.group(1) if db else '?'}, data in {self.data_path}"
        return f"DuckLake catalog {self.catalog}, data in {self.data_path}"

    def ensure_local_dirs(self) -> None:
        if self.catalog_file is not None:
            self.catalog_file.parent.mkdir(parents=True, exist_ok=True)
        if not self.data_path.startswith("s3://"):
            Path(self.data_path).mkdir(parents=True, exist_ok=True)

    def catalog_exists(self) -> bool:
        return self.catalog_file is None or self.catalog_file.is_file()


def load_extensions(conn: duckdb.DuckDBPyConnection, location: WarehouseLocation) -> None:
    load_extension(conn, "ducklake")
    if location.kind in ("sqlite", "postgres"):
        load_extension(conn, location.kind)
    if "://" in location.data_path and not location.data_path.startswith("file://"):
        # from its package, before ATTACH: DuckDB would otherwise autoload it from the
        # extension folder under HOME, and download it when that is empty (a fresh host)
        load_extension(conn, "httpfs")


def attach_catalog(
    conn: duckdb.DuckDBPyConnection, location: WarehouseLocation, *, read_only: bool
) -> None:
    """Attach the DuckLake catalog as ``mdp`` and make it the default database."""
    if read_only and not location.catalog_exists():
        raise WarehouseError(
            f"the warehouse has not been built yet: {location.describe()} does not exist "
            "(run `mdp run` first)"
        )
    if not read_only:
        location.ensure_local_dirs()
        if location.kind == "sqlite" and location.catalog_file is not None:
            _use_wal(location.catalog_file)
    # The configured data path always wins over the one stored in the catalog: a data dir
    # copied or restored elsewhere (catalog and files together) must read its own files, and
    # write there, never into the original's folder. File paths inside the catalog are
    # relative to it, so nothing else moves.
    options = [f"DATA_PATH {sql_literal(location.data_path)}", "OVERRIDE_DATA_PATH true"]
    if read_only:
        options.append("READ_ONLY")
    try:
        conn.execute(
            f"ATTACH IF NOT EXISTS {sql_literal('ducklake:' + location.catalog)} "
            f"AS {CATALOG_ALIAS} ({', '.join(options)})"
        )
        if not read_only:
            _repoint_stored_data_path(conn, location)
        conn.execute(f"USE {CATALOG_ALIAS}")
    except duckdb.Error as exc:
        raise WarehouseError(f"cannot open {location.describe()}: {exc}") from exc


def stored_data_path(conn: duckdb.DuckDBPyConnection) -> str | None:
    """The data path recorded in the attached catalog (what a plain ``ATTACH`` without
    ``DATA_PATH`` would use)."""
    row = conn.execute(
        f"SELECT value FROM {_METADATA}.ducklake_metadata "  # noqa: S608
        "WHERE key = 'data_path' AND scope IS NULL"
    ).fetchone()
    return str(row[0]) if row and row[0] is not None else None


def _repoint_stored_data_path(conn: duckdb.DuckDBPyConnection, location: WarehouseLocation) -> None:
    """Record the configured data path in the catalog when it differs (a moved data dir), so
    a plain ``ATTACH 'ducklake:...'`` (the DuckDB CLI, a notebook) finds the files too.

    A local data path holding no files, for a catalog that lists some, is refused rather than
    re-pointed: that is a mistyped ``MDP_WAREHOUSE_DATA_PATH`` or a catalog restored without
    its files, and writing there would split the warehouse in two.
    """
    stored = stored_data_path(conn)
    wanted = location.data_path
    if stored is None or stored.rstrip("/") == wanted.rstrip("/"):
        return
    if not wanted.startswith("s3://") and _catalog_has_files(conn) and not _has_files(Path(wanted)):
        conn.execute(f"DETACH {CATALOG_ALIAS}")
        raise WarehouseError(
            f"the catalog {location.describe()} records its data under {stored}, and the "
            f"configured data path {wanted} holds no files: restore the data files there "
            "with the catalog, or set MDP_WAREHOUSE_DATA_PATH to where they are"
        )
    conn.execute(
        f"UPDATE {_METADATA}.ducklake_metadata SET value = ? "  # noqa: S608
        "WHERE key = 'data_path' AND scope IS NULL",
        [wanted],
    )
    logger.warning("warehouse data path re-pointed from %s to %s", stored, wanted)


def _catalog_has_files(conn: duckdb.DuckDBPyConnection) -> bool:
    row = conn.execute(f"SELECT count(*) FROM {_METADATA}.ducklake_data_file").fetchone()  # noqa: S608
    return bool(row and row[0])


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


def _use_wal(path: Path) -> None:
    """Put a SQLite catalog in WAL mode (it stays so: the mode is kept in the file).

    In SQLite's default rollback-journal mode a reader holds a shared lock, and DuckDB's
    SQLite attachment keeps holding it while the session that read stays open, so an
    analyst's idle session would make every pipeline commit fail with "database is locked".
    In WAL mode readers never block the writer, nor the writer readers.
    """
    try:
        con = sqlite3.connect(path, timeout=10)
    except sqlite3.Error as exc:
        raise WarehouseError(f"cannot open the catalog {path}: {exc}") from exc
    try:
        (mode,) = con.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() != "wal":
            con.execute("PRAGMA journal_mode = WAL")
    except sqlite3.OperationalError:
        pass  # in use by an older session right now: the next writer switches it
    finally:
        con.close()


def connect(
    location: WarehouseLocation,
    store: ObjectStore | None = None,
    *,
    read_only: bool = False,
    threads: int | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB session with the warehouse attached as its default catalog.

    A writing session (the default) is a cursor on this process's shared instance for the
    location (see ``_shared``): loading the DuckLake and catalog extensions costs about 0.3 s
    per DuckDB instance, which a run would otherwise pay at every warehouse step. Each cursor
    has its own transactions; closing it leaves the instance to the next one. A read-only
    session, or one with its own ``threads``, gets an in-memory instance of its own.
    """
    if read_only or threads:
        return _private(location, store, read_only=read_only, threads=threads)
    conn = _shared(location, store).cursor()
    try:
        conn.execute("SET enable_progress_bar = false")  # library code never draws on a terminal
        if store is not None:
            store.configure_duckdb(conn)  # the store's current credentials (an instance secret)
        conn.execute(f"USE {CATALOG_ALIAS}")
    except BaseException:
        conn.close()
        raise
    return conn


def _private(
    location: WarehouseLocation,
    store: ObjectStore | None,
    *,
    read_only: bool,
    threads: int | None,
) -> duckdb.DuckDBPyConnection:
    conn = _new_database(location, threads=threads)
    try:
        conn.execute("SET enable_progress_bar = false")  # library code never draws on a terminal
        if store is not None:
            store.configure_duckdb(conn)
        attach_catalog(conn, location, read_only=read_only)
    except BaseException:
        conn.close()
        raise
    return conn


# ---------------------------------------------------------------------------------------------
# The process's shared instances


@dataclass
class _Instance:
    """An in-memory DuckDB instance with the extensions a location needs loaded."""

    base: duckdb.DuckDBPyConnection
    lock: threading.Lock = field(default_factory=threading.Lock)
    attached: tuple[int, int] | None = None
    """What was attached: the catalog file's (device, inode), or (0, 0) for a server; None
    while nothing is."""


_INSTANCES: OrderedDict[tuple[str, ...], _Instance] = OrderedDict()
_LOCK = threading.Lock()
_MAX_INSTANCES = 4


def _key(location: WarehouseLocation, store: ObjectStore | None) -> tuple[str, ...]:
    # The pid: an instance inherited through fork() is not this process's to use.
    return (
        str(os.getpid()),
        location.catalog,
        location.data_path,
        store.describe() if store else "",
    )


def _new_database(
    location: WarehouseLocation, *, threads: int | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB in UTC with the extensions the location needs loaded."""
    config: dict[str, str | int] = {"custom_user_agent": "my_data_platform"}
    if threads:
        config["threads"] = threads
    base = duckdb.connect(":memory:", config=config)
    try:
        base.execute("SET GLOBAL TimeZone = 'UTC'")
        load_extensions(base, location)
    except BaseException:
        base.close()
        raise
    return base


def _publish(key: tuple[str, ...], instance: _Instance) -> _Instance:
    """Make ``instance`` the shared one for ``key`` unless another got there first (then it
    is closed and the other returned). The least recently used beyond a few are dropped, not
    closed: closing a connection closes its cursors, and one may still be in use; the
    instance goes when its last cursor does."""
    with _LOCK:
        current = _INSTANCES.get(key)
        if current is not None:
            instance.base.close()  # never handed out
            return current
        _INSTANCES[key] = instance
        while len(_INSTANCES) > _MAX_INSTANCES:
            _INSTANCES.popitem(last=False)
        return instance


def _catalog_identity(location: WarehouseLocation) -> tuple[int, int] | None:
    """The catalog file's (device, inode); None when it is missing; (0, 0) for a server,
    which has nothing on disk to go missing."""
    if location.catalog_file is None:
        return (0, 0)
    try:
        st = location.catalog_file.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _shared(location: WarehouseLocation, store: ObjectStore | None) -> duckdb.DuckDBPyConnection:
    """The base connection of the shared instance for the location, with the catalog attached.

    A catalog file that was deleted or replaced since it was attached (a data dir wiped and
    rebuilt) retires the instance: writing through the old attachment would go nowhere.
    """
    key = _key(location, store)
    with _LOCK:
        instance = _INSTANCES.get(key)
        if instance is not None:
            _INSTANCES.move_to_end(key)
    if instance is None:
        instance = _publish(key, _Instance(_new_database(location)))
    with instance.lock:
        if instance.attached is None:
            attach_catalog(instance.base, location, read_only=False)
            instance.attached = _catalog_identity(location)
        elif instance.attached != _catalog_identity(location):
            with _LOCK:
                if _INSTANCES.get(key) is instance:
                    del _INSTANCES[key]  # dropped, not closed (see _publish)
            return _shared(location, store)
        else:
            location.ensure_local_dirs()  # a data folder removed since is made again
        return instance.base


@contextlib.contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One DuckLake commit: everything inside becomes visible at once, or not at all."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield conn
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@dataclass(frozen=True)
class ParquetFiles:
    """Parquet objects for the warehouse to load by itself, never through Python.

    ``uris`` are as ``ObjectStore.uri`` gives them. Columns are matched by name; a file may
    lack a column. See ``load_parquet_files`` for how they get into a table.
    """

    uris: tuple[str, ...]

    def source_sql(self) -> str:
        """The ``read_parquet`` call over the files (paths are quoted literals)."""
        if not self.uris:
            raise ValueError("ParquetFiles needs at least one file")
        files = ", ".join(sql_literal(u) for u in self.uris)
        return f"read_parquet([{files}], hive_partitioning = false, union_by_name = true)"


def load_parquet_files(
    conn: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    files: ParquetFiles,
    *,
    store: ObjectStore | None = None,
    data_path: str | None = None,
) -> int:
    """Add the rows of ``files`` to ``schema.table`` (which must exist) inside the caller's
    transaction; returns the number of rows added.

    When the files and DuckLake's ``data_path`` are in ``store`` and every column of
    every file has the table's type, each file is copied into the table's folder (a hard link
    locally, a server-side copy on S3) and registered as it is (``ducklake_add_data_files``):
    its rows are never decoded and encoded again. DuckLake owns that copy (compaction may
    delete it) while the lake keeps its own object, which it only ever replaces, never edits,
    so a snapshot an analyst is reading cannot change under them. Otherwise DuckDB reads the
    files with all its threads and writes DuckLake files of its own (``INSERT ... SELECT``).
    A copy left behind by a transaction that failed to commit is an orphan that
    ``ducklake_delete_orphaned_files`` removes.
    """
    target = f"{quote_ident(schema)}.{quote_ident(table)}"
    _add_new_columns(conn, target, files)
    folder = store.key_of(data_path.rstrip("/") + "/") if store and data_path else None
    keys = [store.key_of(u) for u in files.uris] if store and folder is not None else []
    if store is None or folder is None or None in keys or not _columns_fit(conn, target, files):
        inserted = conn.execute(
            f"INSERT INTO {target} BY NAME SELECT * FROM {files.source_sql()}"  # noqa: S608
        ).fetchone()
        return int(inserted[0]) if inserted else 0
    copies: list[str] = []
    try:
        for key in keys:
            assert key is not None
            copy = f"{folder}{schema}/{table}/mdp-{uuid.uuid4()}.parquet"
            store.copy(key, copy)
            copies.append(copy)
            conn.execute(
                "CALL ducklake_add_data_files(?, ?, ?, schema => ?, allow_missing => true)",
                [CATALOG_ALIAS, table, store.uri(copy), schema],
            )
    except BaseException:
        for copy in copies:
            with contextlib.suppress(Exception):
                store.delete(copy)
        raise
    (rows,) = conn.execute(
        "SELECT coalesce(sum(num_rows), 0) FROM parquet_file_metadata(?)", [list(files.uris)]
    ).fetchone() or (0,)
    return int(rows)


def _file_columns(conn: duckdb.DuckDBPyConnection, uri: str) -> list[tuple[str, str]]:
    return [
        (name, kind)
        for name, kind, *_ in conn.execute(
            f"DESCRIBE SELECT * FROM read_parquet({sql_literal(uri)}, hive_partitioning = false)"  # noqa: S608
        ).fetchall()
    ]


def _add_new_columns(conn: duckdb.DuckDBPyConnection, target: str, files: ParquetFiles) -> None:
    """Additive schema evolution: a column the files have and the table lacks (a table created
    by an older release) is added, nullable, so older rows read it as NULL."""
    table = {r[0] for r in conn.execute(f"DESCRIBE {target}").fetchall()}
    for uri in files.uris:
        for name, kind in _file_columns(conn, uri):
            if name not in table:
                conn.execute(f"ALTER TABLE {target} ADD COLUMN {quote_ident(name)} {kind}")
                table.add(name)


def _columns_fit(conn: duckdb.DuckDBPyConnection, target: str, files: ParquetFiles) -> bool:
    """Every column of every file exists in ``target`` with the same type."""
    table = {r[0]: r[1] for r in conn.execute(f"DESCRIBE {target}").fetchall()}
    return all(
        table.get(name) == kind for uri in files.uris for name, kind in _file_columns(conn, uri)
    )


def table_exists(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_catalog = ? AND table_schema = ? AND table_name = ?",
        [CATALOG_ALIAS, schema, table],
    ).fetchone()
    return bool(row and row[0])
