"""Reading the OLTP metadata database (any SQLAlchemy URL; SQLite by default)."""

from __future__ import annotations

import re

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


def read_table(url: str, table: str, columns: list[str]) -> pl.DataFrame:
    """Read ``columns`` of ``table``; a missing table or column is a clear error."""
    for name in (table, *columns):
        if not _IDENT.match(name):
            raise OLTPError(f"not a safe identifier: {name!r}")
    engine = make_engine(url)
    try:
        inspector = sa.inspect(engine)
        if not inspector.has_table(table):
            raise OLTPError(
                f"OLTP table {table!r} does not exist in {redact_url(url)} "
                "(seed a world with `mdp seed` or point MDP_OLTP_URL at your database)"
            )
        present = {c["name"] for c in inspector.get_columns(table)}
        missing = [c for c in columns if c not in present]
        if missing:
            raise OLTPError(f"OLTP table {table!r} in {redact_url(url)} lacks columns {missing}")
        meta = sa.MetaData()
        tbl = sa.Table(table, meta, autoload_with=engine)
        query = sa.select(*[tbl.c[c] for c in columns])
        with engine.connect() as conn:
            return pl.read_database(query, connection=conn, infer_schema_length=None)
    except sa.exc.OperationalError as exc:
        raise OLTPError(f"cannot read OLTP database {redact_url(url)}: {exc.orig}") from exc
    finally:
        engine.dispose()
