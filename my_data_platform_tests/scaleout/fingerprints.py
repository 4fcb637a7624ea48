"""Content fingerprints of what a profile produced: every warehouse table and the dataset.

Why: the distributed test must show the production profile computes *the same data* as the
embedded one on the same seed, not the same bytes (Parquet files, commit ids and row order
differ between a DuckLake on SQLite+folder and one on PostgreSQL+S3). A table's fingerprint is
its row count and a sha256 over its rows sorted by every column, floats rounded to 1e-6.

Run as ``python -m my_data_platform_tests.scaleout.fingerprints`` in the environment of a
profile (its settings decide where the warehouse and the dataset versions are); it prints one
JSON object ``{"tables": {name: [rows, sha256]}, "dataset": {path: [rows, sha256]}}``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import sys
from collections.abc import Iterable, Sequence
from typing import Any

Fingerprint = tuple[int, str]

KEYS: dict[str, tuple[str, ...]] = {
    "warehouse.users": ("user_id",),
    "warehouse.photos": ("photo_id",),
    "warehouse.events": ("event_id",),
    "warehouse.annotations": ("annotation_id",),
    "warehouse.annotation_gold": ("photo_id",),
    "warehouse.photo_engagement_daily": ("photo_id", "event_date"),
    "labels.image_content": ("photo_id",),
    "features.caption_embeddings": ("photo_id",),
    "features.image_embeddings": ("photo_id",),
    "features.image_predictions": ("photo_id",),
    "features.labels": ("photo_id",),
    "features.photo_activity": ("photo_id",),
    "features.training_examples": ("photo_id",),
}
"""Each table's key: a rerun after a killed step must leave no key twice."""


def _normal(value: Any) -> Any:
    """A value with floats rounded to 1e-6 and every type made JSON-stable."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        rounded = round(value, 6)
        return 0.0 if rounded == 0 else rounded  # -0.0 and 0.0 hash alike
    if isinstance(value, dict):
        return {str(k): _normal(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return hashlib.sha256(bytes(value)).hexdigest()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)  # dates, timestamps, decimals, UUIDs: their canonical text


def rows_fingerprint(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Fingerprint:
    """Row count and sha256 of the rows sorted, each normalised to JSON with its columns in
    name order (a table whose columns were added in another order still matches); the column
    names are hashed too."""
    order = sorted(range(len(columns)), key=lambda i: columns[i])
    lines = sorted(
        json.dumps(_normal([r[i] for i in order]), sort_keys=True, default=str) for r in rows
    )
    digest = hashlib.sha256(json.dumps([columns[i] for i in order]).encode())
    for line in lines:
        digest.update(line.encode())
        digest.update(b"\n")
    return len(lines), digest.hexdigest()


def warehouse_tables() -> dict[str, Fingerprint]:
    """Every table of the configured warehouse (all schemas), fingerprinted."""
    from my_data_platform.core import warehouse as wh
    from my_data_platform.defs.lake.resources import object_store_from_settings
    from my_data_platform.defs.warehouse.location import location_from_settings

    store = object_store_from_settings()
    con = wh.connect(location_from_settings(), store, read_only=True)
    try:
        names = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database() AND table_type = 'BASE TABLE' "
            "ORDER BY 1, 2"
        ).fetchall()
        out: dict[str, Fingerprint] = {}
        for schema, table in names:
            cur = con.execute(f'SELECT * FROM "{schema}"."{table}"')
            columns = [d[0] for d in cur.description]
            out[f"{schema}.{table}"] = rows_fingerprint(columns, cur.fetchall())
        return out
    finally:
        con.close()


def duplicate_keys() -> dict[str, int]:
    """For each table of :data:`KEYS` present, how many rows repeat a key (0 when unique)."""
    from my_data_platform.core import warehouse as wh
    from my_data_platform.defs.lake.resources import object_store_from_settings
    from my_data_platform.defs.warehouse.location import location_from_settings

    con = wh.connect(location_from_settings(), object_store_from_settings(), read_only=True)
    try:
        present = {
            f"{s}.{t}"
            for s, t in con.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_catalog = current_database()"
            ).fetchall()
        }
        out = {}
        for table, key in KEYS.items():
            if table in present:
                cols = ", ".join(key)
                (dupes,) = con.execute(
                    f"SELECT count(*) - count(DISTINCT ({cols})) FROM {table}"
                ).fetchone()
                out[table] = int(dupes)
        return out
    finally:
        con.close()


def dataset_files(ref: str = "main") -> dict[str, Fingerprint]:
    """Every file of the dataset repository at ``ref``: tables (Parquet, CSV, JSON lines) by
    their rows, any other file by its bytes' sha256 (row count -1)."""
    import pyarrow.parquet as pq

    from my_data_platform.defs.datasets.resources import version_store_from_settings

    store = version_store_from_settings()
    out: dict[str, Fingerprint] = {}
    for entry in store.list_objects(ref):
        data = store.get_object(ref, entry.path)
        if entry.path.endswith(".parquet"):
            table = pq.read_table(io.BytesIO(data))
            rows = zip(*(c.to_pylist() for c in table.columns), strict=True)
            out[entry.path] = rows_fingerprint(table.column_names, rows)
        elif entry.path.endswith((".jsonl", ".ndjson")):
            records = [json.loads(x) for x in data.decode().splitlines() if x.strip()]
            columns = sorted({k for r in records for k in r})
            out[entry.path] = rows_fingerprint(
                columns, ([r.get(c) for c in columns] for r in records)
            )
        else:
            out[entry.path] = (-1, hashlib.sha256(lineage_free(entry.path, data)).hexdigest())
    return out


LINEAGE_HEADING = b"## Upstream versions"


def lineage_free(path: str, data: bytes) -> bytes:
    """The dataset card without its lineage section: that names the upstream materializations
    (event storage ids, run ids, times), which identify *this* build like commit ids do and
    differ between any two builds of the same data."""
    if path == "README.md" and LINEAGE_HEADING in data:
        return data[: data.index(LINEAGE_HEADING)]
    return data


def dataset_texts(ref: str = "main") -> dict[str, str]:
    """The small text files of the dataset at ``ref`` (the card, label metadata), so a
    difference can be shown line by line."""
    from my_data_platform.defs.datasets.resources import version_store_from_settings

    store = version_store_from_settings()
    texts = {}
    for entry in store.list_objects(ref):
        if entry.path.endswith((".md", ".json", ".txt")):
            data = lineage_free(entry.path, store.get_object(ref, entry.path))
            texts[entry.path] = data.decode(errors="replace")[:65536]
    return texts


def compare(
    expected: dict[str, Fingerprint], actual: dict[str, Fingerprint]
) -> tuple[list[str], list[str]]:
    """Names that match, and a line per difference (missing, extra, rows or hash)."""
    same, diffs = [], []
    for name in sorted(set(expected) | set(actual)):
        e, a = expected.get(name), actual.get(name)
        if e is None:
            diffs.append(f"{name}: only in production ({a[0]} rows)")  # type: ignore[index]
        elif a is None:
            diffs.append(f"{name}: missing in production (embedded has {e[0]} rows)")
        elif tuple(e) != tuple(a):
            diffs.append(
                f"{name}: embedded {e[0]} rows {e[1][:12]}, production {a[0]} rows {a[1][:12]}"
            )
        else:
            same.append(name)
    return same, diffs


def main() -> None:
    result = {
        "tables": warehouse_tables(),
        "dataset": dataset_files(),
        "duplicate_keys": duplicate_keys(),
        "texts": dataset_texts(),
    }
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
