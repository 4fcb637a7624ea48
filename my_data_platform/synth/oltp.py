"""The app's OLTP tables, written with SQLAlchemy Core: ``users``, ``photos``, and the
labelling tables ``photo_annotations`` and ``annotation_gold``.

Core rather than the ORM so one code path serves SQLite and PostgreSQL, and rows go in as
chunked ``executemany`` batches (SQLAlchemy 2 turns them into multi-row inserts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl
import sqlalchemy as sa

metadata = sa.MetaData()

users_table = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("handle", sa.Text, nullable=False),
    sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("follower_count", sa.Integer, nullable=False),
    sa.Column("country", sa.Text, nullable=False),
)

photos_table = sa.Table(
    "photos",
    metadata,
    sa.Column("photo_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.Integer, nullable=False, index=True),
    sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("caption", sa.Text, nullable=False),
    sa.Column("object_key", sa.Text, nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
)

annotations_table = sa.Table(
    "photo_annotations",
    metadata,
    sa.Column("annotation_id", sa.Text, primary_key=True),
    sa.Column("photo_id", sa.Integer, nullable=False, index=True),
    sa.Column("annotator", sa.Text, nullable=False),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("annotated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
)
"""What annotators answered (a labelling vendor's or the team's own tool's), one row each."""

gold_table = sa.Table(
    "annotation_gold",
    metadata,
    sa.Column("photo_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("label", sa.Text, nullable=False),
)
"""Gold items: photos whose answer is known, to measure annotators and the consensus."""

ANNOTATION_COLUMNS = ("annotation_id", "photo_id", "annotator", "label", "annotated_at", "source")
GOLD_COLUMNS = ("photo_id", "label")

INSERT_CHUNK = 5_000


def make_engine(url: str) -> sa.Engine:
    """An engine for ``url``; a SQLite file's parent folder is created first."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return sa.create_engine(url)


def has_rows(engine: sa.Engine) -> bool:
    """Whether a world is already in the database (either table exists with rows)."""
    inspector = sa.inspect(engine)
    with engine.connect() as conn:
        for table in (users_table, photos_table):
            if not inspector.has_table(table.name):
                continue
            if conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first():
                return True
    return False


def recreate(engine: sa.Engine) -> None:
    metadata.drop_all(engine)
    metadata.create_all(engine)


def ensure_tables(engine: sa.Engine) -> None:
    metadata.create_all(engine)


def insert_frame(
    engine: sa.Engine,
    table: sa.Table,
    df: pl.DataFrame,
    columns: Sequence[str],
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Insert ``df[columns]`` in one transaction, in chunks; returns the row count."""
    frame = df.select(list(columns))
    total = frame.height
    with engine.begin() as conn:
        for start in range(0, total, INSERT_CHUNK):
            chunk = frame.slice(start, INSERT_CHUNK)
            conn.execute(table.insert(), chunk.to_dicts())
            if progress:
                progress(min(start + INSERT_CHUNK, total), total)
    return total
