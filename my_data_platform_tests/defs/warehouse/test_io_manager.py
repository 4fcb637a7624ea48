"""The DuckLake IO manager: partitions replaced atomically, readers never see a gap."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from my_data_platform.core import warehouse as wh
from my_data_platform.core.objectstore import LocalObjectStore
from my_data_platform.core.sandbox import open_analyst_session
from my_data_platform.defs.lake.resources import LocalObjectStoreResource
from my_data_platform.defs.warehouse.resources import DuckLakeIOManager
from my_data_platform_tests.conftest import wait_for_file

pytestmark = pytest.mark.slow  # writer and reader processes on real DuckLake catalogs


parts = dg.StaticPartitionsDefinition(["a", "b"])
ROWS = 20_000


@dg.asset(
    key=["warehouse", "things"],
    partitions_def=parts,
    metadata={"partition_expr": "part"},
    config_schema={"version": dg.Field(int, default_value=1)},
)
def things(context: dg.AssetExecutionContext) -> pl.DataFrame:
    v = context.op_execution_context.op_config["version"]
    return pl.DataFrame(
        {"part": [context.partition_key] * ROWS, "i": range(ROWS), "version": [v] * ROWS}
    )


def _resources(tmp_path: Path) -> dict:
    store = LocalObjectStoreResource(root=str(tmp_path / "lake"))
    return {
        "io_manager": DuckLakeIOManager(
            catalog=f"sqlite:{tmp_path / 'wh' / 'catalog.sqlite'}",
            data_path=str(tmp_path / "lake" / "warehouse") + "/",
            object_store=store,
        )
    }


def _materialize(tmp_path: Path, part: str, version: int) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [things],
        partition_key=part,
        resources=_resources(tmp_path),
        run_config={"ops": {"warehouse__things": {"config": {"version": version}}}},
    )


def _analyst_query(loc: wh.WarehouseLocation, sql: str) -> tuple[list[str], list[tuple]]:
    with open_analyst_session(loc.catalog, loc.data_path) as session:
        return session.run(sql)


def _location(tmp_path: Path) -> wh.WarehouseLocation:
    return wh.WarehouseLocation(
        catalog=f"sqlite:{tmp_path / 'wh' / 'catalog.sqlite'}",
        data_path=str(tmp_path / "lake" / "warehouse") + "/",
    )


def test_rematerializing_replaces_the_slice(tmp_path: Path) -> None:
    r = _materialize(tmp_path, "a", 1)
    assert r.success
    mat = r.asset_materializations_for_node("warehouse__things")[0]
    assert mat.metadata["dagster/row_count"].value == ROWS
    _materialize(tmp_path, "b", 1)
    _materialize(tmp_path, "a", 2)
    _materialize(tmp_path, "a", 3)
    _, rows = _analyst_query(
        _location(tmp_path),
        "SELECT part, count(*), count(DISTINCT i), min(version), max(version) "
        "FROM warehouse.things GROUP BY part ORDER BY part",
    )
    assert rows == [("a", ROWS, ROWS, 3, 3), ("b", ROWS, ROWS, 1, 1)]


@dg.asset(
    key=["warehouse", "things_versions"],
    partitions_def=parts,
    metadata={"partition_expr": "part"},
    ins={"things": dg.AssetIn(["warehouse", "things"], metadata={"columns": ["version", "part"]})},
)
def things_versions(things: pl.DataFrame) -> pl.DataFrame:
    """Reads two of its parent's columns through the IO manager, and stores what it read."""
    return things


def test_an_input_loads_only_the_columns_it_asks_for(tmp_path: Path) -> None:
    _materialize(tmp_path, "a", 1)
    _materialize(tmp_path, "b", 2)
    result = dg.materialize(
        [things, things_versions],
        selection=[things_versions.key],
        partition_key="b",
        resources=_resources(tmp_path),
    )
    loaded = result.output_for_node("warehouse__things_versions")
    assert loaded.columns == ["version", "part"]  # in the order asked, "i" never read
    assert loaded.group_by("part", "version").len().rows() == [("b", 2, ROWS)]  # one partition


days = dg.StaticPartitionsDefinition(["d1", "d2", "d3"])


@dg.asset(
    key=["warehouse", "ranged"],
    partitions_def=days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"partition_expr": "part"},
    config_schema={"version": dg.Field(int, default_value=1), "stream": dg.Field(bool)},
)
def ranged(context: dg.AssetExecutionContext) -> Any:
    """One frame per day of the run's range, as one DataFrame or as an Arrow stream."""
    cfg = context.op_execution_context.op_config
    frames = [
        pl.DataFrame({"part": [d] * 100, "i": range(100), "version": [cfg["version"]] * 100})
        for d in context.partition_keys
    ]
    if not cfg["stream"]:
        return pl.concat(frames)
    schema = frames[0].to_arrow().schema
    return pa.RecordBatchReader.from_batches(
        schema, (b for f in frames for b in f.to_arrow().to_batches())
    )


@dg.asset(
    key=["warehouse", "ranged_copy"],
    partitions_def=days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"partition_expr": "part"},
)
def ranged_copy(context: dg.AssetExecutionContext, ranged: pl.DataFrame) -> pl.DataFrame:
    """Loads its parent's slice for the same range through the IO manager."""
    assert sorted(ranged["part"].unique()) == sorted(context.partition_keys)
    return ranged


def _materialize_range(
    tmp_path: Path, first: str, last: str, version: int, *, stream: bool
) -> dg.ExecuteInProcessResult:
    """A run over a partition range, tagged exactly as a single-run backfill's run is."""
    tags = {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
    return dg.materialize(
        [ranged, ranged_copy],
        tags=tags,
        resources=_resources(tmp_path),
        run_config={
            "ops": {"warehouse__ranged": {"config": {"version": version, "stream": stream}}}
        },
    )


def _counts(tmp_path: Path, table: str) -> list[tuple]:
    return _analyst_query(
        _location(tmp_path),
        f"SELECT part, count(*), count(DISTINCT i), min(version), max(version) "
        f"FROM warehouse.{table} GROUP BY part ORDER BY part",
    )[1]


@pytest.mark.parametrize("stream", [False, True], ids=["dataframe", "arrow-stream"])
def test_a_partition_range_is_written_in_one_run_and_days_replace_cleanly(
    tmp_path: Path, stream: bool
) -> None:
    r = _materialize_range(tmp_path, "d1", "d3", 1, stream=stream)
    assert r.success
    assert _counts(tmp_path, "ranged") == [(d, 100, 100, 1, 1) for d in ("d1", "d2", "d3")]
    assert _counts(tmp_path, "ranged_copy") == _counts(tmp_path, "ranged")  # range input
    mats = r.asset_materializations_for_node("warehouse__ranged")
    assert sorted(m.partition for m in mats) == ["d1", "d2", "d3"]  # one per day, one run
    # re-running one day replaces only that day: no duplicates, the others untouched
    assert _materialize_range(tmp_path, "d2", "d2", 2, stream=stream).success
    assert _counts(tmp_path, "ranged") == [
        ("d1", 100, 100, 1, 1),
        ("d2", 100, 100, 2, 2),
        ("d3", 100, 100, 1, 1),
    ]
    # and re-running the whole range again replaces all of it
    assert _materialize_range(tmp_path, "d1", "d3", 3, stream=stream).success
    assert _counts(tmp_path, "ranged") == [(d, 100, 100, 3, 3) for d in ("d1", "d2", "d3")]
    assert _counts(tmp_path, "ranged_copy") == _counts(tmp_path, "ranged")


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from my_data_platform_tests.defs.warehouse.test_io_manager import _materialize_range
    failed = 0
    for version in range(int(sys.argv[2])):
        try:
            _materialize_range(Path(sys.argv[1]), "d1", "d3", version, stream=True)
        except Exception as exc:
            failed += 1
            print(repr(exc)[:300], file=sys.stderr)
    print(failed)
    """
)


def test_concurrent_writers_take_turns(tmp_path: Path) -> None:
    """Two processes re-writing the same tables at once (as two steps of a run, or two runs,
    do): on a SQLite catalog, overlapping DuckLake commits fail with "database is locked"
    unless the writers take turns, which ``writer_lock`` makes them do."""
    assert _materialize_range(tmp_path, "d1", "d3", 0, stream=False).success
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), "3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=300) for w in writers]
    assert [out.strip().splitlines()[-1] for out, _ in outputs] == ["0", "0"], outputs
    counts = _counts(tmp_path, "ranged")
    assert [(p, n, distinct) for p, n, distinct, _, _ in counts] == [
        (d, 100, 100) for d in ("d1", "d2", "d3")
    ]


READER = textwrap.dedent(
    """
    import json, pathlib, sys, time
    from my_data_platform.core.sandbox import open_analyst_session
    out, errors = [], []
    stop = pathlib.Path(sys.argv[3])
    deadline = time.monotonic() + 300  # bounded even if the writer dies
    while (not stop.exists() or len(out) < 3) and time.monotonic() < deadline:
        try:
            with open_analyst_session(sys.argv[1], sys.argv[2]) as s:
                out.append(s.run(
                    "SELECT count(*), count(DISTINCT version) FROM warehouse.things "
                    "WHERE part = 'a'"
                )[1][0])
            stop.with_suffix(".ready").touch()
        except Exception as exc:
            errors.append(repr(exc))
    print(json.dumps({"results": out, "errors": errors}))
    """
)


def test_reader_process_never_sees_a_partial_partition(tmp_path: Path) -> None:
    assert _materialize(tmp_path, "a", 1).success
    loc = _location(tmp_path)
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, loc.catalog, loc.data_path, str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    wait_for_file(stop.with_suffix(".ready"))
    writes = 0
    while writes < 6:
        writes += 1
        assert _materialize(tmp_path, "a", writes + 1).success
    stop.touch()
    out, _ = reader.communicate(timeout=120)
    report = json.loads(out.strip().splitlines()[-1])
    assert report["errors"] == []
    assert len(report["results"]) >= 3
    # every read saw exactly one whole version of the partition: never missing, never doubled
    assert all(tuple(r) == (ROWS, 1) for r in report["results"]), report["results"][:5]
    assert writes >= 3


@dg.asset(
    key=["warehouse", "from_files"],
    partitions_def=days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"partition_expr": "part"},
    config_schema={"version": dg.Field(int, default_value=1), "root": dg.Field(str)},
)
def from_files(context: dg.AssetExecutionContext) -> wh.ParquetFiles:
    """Writes one Parquet file per day of the range and hands the files to the IO manager."""
    cfg = context.op_execution_context.op_config
    uris = []
    for d in context.partition_keys:
        path = Path(cfg["root"]) / f"date={d}" / f"v{cfg['version']}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = pl.DataFrame(
            {"part": [d] * 100, "i": range(100), "version": [cfg["version"]] * 100}
        )
        if d == "d3":  # a day may lack a column: columns are matched by name
            frame = frame.drop("i").with_columns(pl.lit(None, pl.Int64).alias("i"))
        frame.write_parquet(path)
        uris.append(str(path))
    return wh.ParquetFiles(tuple(uris))


def test_parquet_files_are_loaded_by_duckdb_and_replace_their_days(tmp_path: Path) -> None:
    def run(first: str, last: str, version: int) -> dg.ExecuteInProcessResult:
        tags = {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
        cfg = {"version": version, "root": str(tmp_path / "files")}
        return dg.materialize(
            [from_files],
            tags=tags,
            resources=_resources(tmp_path),
            run_config={"ops": {"warehouse__from_files": {"config": cfg}}},
        )

    result = run("d1", "d3", 1)
    assert result.success
    counts = _counts(tmp_path, "from_files")
    assert counts == [("d1", 100, 100, 1, 1), ("d2", 100, 100, 1, 1), ("d3", 100, 0, 1, 1)]
    assert run("d2", "d2", 2).success
    assert [c[4] for c in _counts(tmp_path, "from_files")] == [1, 2, 1]
    mats = run("d1", "d3", 3).asset_materializations_for_node("warehouse__from_files")
    assert all(m.metadata["dagster/row_count"].value == 300 for m in mats)
    assert [c[1:] for c in _counts(tmp_path, "from_files")] == [
        (100, 100, 3, 3),
        (100, 100, 3, 3),
        (100, 0, 3, 3),
    ]


def _lake_day(store: LocalObjectStore, day: str, version: int, *, narrow: bool = False) -> str:
    """Publishes one day's lake file (as lake/events does) and returns its URI."""
    key = f"lake/adopted/date={day}/part.parquet"
    table = pa.table(
        {
            "part": [day] * 100,
            "i": pa.array(range(100), pa.int32() if narrow else pa.int64()),
            "version": pa.array([version] * 100, pa.int64()),
        }
    )
    with store.writing(key, suffix=".parquet") as path:
        pq.write_table(table, path)
    return store.uri(key)


@dg.asset(
    key=["warehouse", "adopted"],
    partitions_def=days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"partition_expr": "part"},
    config_schema={"version": int, "root": str, "narrow": dg.Field(bool, default_value=False)},
)
def adopted(context: dg.AssetExecutionContext) -> wh.ParquetFiles:
    """Lake files inside the object store that holds DuckLake's data path."""
    cfg = context.op_execution_context.op_config
    store = LocalObjectStore(cfg["root"])
    return wh.ParquetFiles(
        tuple(
            _lake_day(store, d, cfg["version"], narrow=cfg["narrow"])
            for d in context.partition_keys
        )
    )


def _data_files(tmp_path: Path, table: str) -> list[Path]:
    conn = wh.connect(_location(tmp_path))
    try:
        rows = conn.execute(
            "SELECT data_file FROM ducklake_list_files('mdp', ?, schema => 'warehouse')", [table]
        ).fetchall()
    finally:
        conn.close()
    return sorted(Path(r[0]) for r in rows)


def test_lake_files_become_ducklake_files_without_being_rewritten(tmp_path: Path) -> None:
    """Files in the store are linked into the table's folder and registered as they are; the
    warehouse keeps its snapshot when the lake republishes a day, and a day whose column
    types differ from the table's is loaded by DuckDB instead."""
    store = LocalObjectStore(tmp_path / "lake")

    def run(first: str, last: str, version: int, narrow: bool = False) -> dg.ExecuteInProcessResult:
        tags = {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
        cfg = {"version": version, "root": str(store.root), "narrow": narrow}
        return dg.materialize(
            [adopted],
            tags=tags,
            resources=_resources(tmp_path),
            run_config={"ops": {"warehouse__adopted": {"config": cfg}}},
        )

    assert run("d1", "d3", 1).success
    assert _counts(tmp_path, "adopted") == [(d, 100, 100, 1, 1) for d in ("d1", "d2", "d3")]
    files = _data_files(tmp_path, "adopted")
    table_dir = tmp_path / "lake" / "warehouse" / "warehouse" / "adopted"
    assert len(files) == 3 and all(f.parent == table_dir for f in files)
    lake_inodes = {
        (store.root / "lake" / "adopted" / f"date={d}" / "part.parquet").stat().st_ino
        for d in ("d1", "d2", "d3")
    }
    assert {f.stat().st_ino for f in files} == lake_inodes  # the same bytes, never rewritten

    _lake_day(store, "d2", 9)  # the lake republishes a day; the warehouse is not re-run
    assert _counts(tmp_path, "adopted")[1] == ("d2", 100, 100, 1, 1)

    mats = run("d2", "d2", 2).asset_materializations_for_node("warehouse__adopted")
    assert [m.metadata["dagster/row_count"].value for m in mats] == [100]
    assert [c[3] for c in _counts(tmp_path, "adopted")] == [1, 2, 1]

    assert run("d3", "d3", 3, narrow=True).success  # int32 "i" into a BIGINT column
    assert _counts(tmp_path, "adopted") == [
        ("d1", 100, 100, 1, 1),
        ("d2", 100, 100, 2, 2),
        ("d3", 100, 100, 3, 3),
    ]
    files = _data_files(tmp_path, "adopted")
    narrow_lake = (store.root / "lake" / "adopted" / "date=d3" / "part.parquet").stat().st_ino
    assert len(files) == 3 and narrow_lake not in {f.stat().st_ino for f in files}
