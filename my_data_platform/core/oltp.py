"""Reading the OLTP metadata database (any SQLAlchemy URL; SQLite by default)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import numpy as np
import polars as pl
import sqlalchemy as sa

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class OLTPError(RuntimeError):
    """The metadata database or one of its tables cannot be read; the message names it."""


def redact_url(url: str) -> str:
    """The URL with any password masked, safe for logs and metadata."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split(":", 1)[0] + ":***"


def make_engine(url: str) -> sa.Engine:
    try:
        return sa.create_engine(url, future=True)
    except Exception as exc:
        raise OLTPError(f"invalid OLTP URL {redact_url(url)}: {exc}") from exc


@contextlib.contextmanager
def _selecting(url: str, table: str, columns: list[str]) -> Iterator[tuple[sa.Engine, sa.Select]]:
    """An engine and ``SELECT columns FROM table``; any driver error while the block runs
    becomes an ``OLTPError`` naming the missing table or columns when that is the cause.
    The schema is inspected (slow on some databases) only to explain a failure."""
    for name in (table, *columns):
        if not _IDENT.fullmatch(name):
            raise OLTPError(f"not a safe identifier: {name!r}")
    engine = make_engine(url)
    dbapi_error = engine.dialect.loaded_dbapi.Error  # PEP 249: every driver error
    try:
        yield engine, sa.select(*[sa.column(c) for c in columns]).select_from(sa.table(table))
    except (sa.exc.DBAPIError, dbapi_error) as exc:
        _explain(engine, url, table, columns)
        orig = getattr(exc, "orig", exc)
        raise OLTPError(f"cannot read OLTP database {redact_url(url)}: {orig}") from exc
    finally:
        engine.dispose()


def read_table(url: str, table: str, columns: list[str]) -> pl.DataFrame:
    """Read ``columns`` of ``table``; a missing table or column is a clear error."""
    with _selecting(url, table, columns) as (engine, query), engine.connect() as conn:
        return pl.read_database(query, connection=conn, infer_schema_length=None)


def as_utc(df: pl.DataFrame, *cols: str) -> pl.DataFrame:
    """``cols`` as UTC datetimes: SQLite hands timestamps back naive (or as text); they are
    UTC by contract."""
    out = []
    for c in cols:
        dtype = df.schema[c]
        if dtype == pl.String:
            out.append(pl.col(c).str.to_datetime(time_zone="UTC"))
        elif isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
            out.append(pl.col(c).dt.replace_time_zone("UTC"))
        elif isinstance(dtype, pl.Datetime):
            out.append(pl.col(c).dt.convert_time_zone("UTC"))
    return df.with_columns(out) if out else df


def read_ids(url: str, table: str, column: str) -> np.ndarray:
    """One integer column (an id) as int64, fetched through the raw driver cursor: several
    times faster than building a DataFrame row by row, for the id sets the lake checks."""
    with _selecting(url, table, [column]) as (engine, query), engine.connect() as conn:
        sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql)
            values = [row[0] for row in cursor.fetchall()]
        finally:
            cursor.close()
    if any(v is None for v in values):
        raise OLTPError(f"OLTP column {table}.{column} in {redact_url(url)} holds NULL ids")
    try:
        return np.asarray(values, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise OLTPError(
            f"OLTP column {table}.{column} in {redact_url(url)} does not hold integer ids: {exc}"
        ) from None


def _explain(engine: sa.Engine, url: str, table: str, columns: list[str]) -> None:
    """Raise the clear error for a missing table or columns, if that is what went wrong."""
    try:
        inspector = sa.inspect(engine)
        if not inspector.has_table(table):
            raise OLTPError(
                f"OLTP table {table!r} does not exist in {redact_url(url)} "
                "(seed a world with `mdp seed` or point MDP_OLTP_URL at your database)"
            )
        present = {c["name"] for c in inspector.get_columns(table)}
    except sa.exc.DBAPIError:
        return  # the database itself is unreachable: the caller reports the original error
    missing = [c for c in columns if c not in present]
    if missing:
        raise OLTPError(f"OLTP table {table!r} in {redact_url(url)} lacks columns {missing}")


def has_table(url: str, table: str) -> bool:
    """Whether ``table`` exists (optional tables, such as annotations, may be absent)."""
    if not _IDENT.fullmatch(table):
        raise OLTPError(f"not a safe identifier: {table!r}")
    engine = make_engine(url)
    try:
        return bool(sa.inspect(engine).has_table(table))
    except sa.exc.DBAPIError as exc:
        raise OLTPError(f"cannot read OLTP database {redact_url(url)}: {exc.orig}") from exc
    finally:
        engine.dispose()
