"""The DuckLake IO manager: partitions replaced atomically, readers never see a gap."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import polars as pl

from my_data_platform.core import warehouse as wh
from my_data_platform.defs.lake.resources import LocalObjectStoreResource
from my_data_platform.defs.warehouse.resources import DuckLakeIOManager
from my_data_platform_tests.conftest import wait_for_file

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
    _, rows = wh.run_analyst_query(
        _location(tmp_path),
        "SELECT part, count(*), count(DISTINCT i), min(version), max(version) "
        "FROM warehouse.things GROUP BY part ORDER BY part",
    )
    assert rows == [("a", ROWS, ROWS, 3, 3), ("b", ROWS, ROWS, 1, 1)]


READER = textwrap.dedent(
    """
    import json, pathlib, sys, time
    from my_data_platform.core import warehouse as wh
    loc = wh.WarehouseLocation(catalog=sys.argv[1], data_path=sys.argv[2])
    out, errors = [], []
    stop = pathlib.Path(sys.argv[3])
    deadline = time.monotonic() + 300  # bounded even if the writer dies
    while (not stop.exists() or len(out) < 3) and time.monotonic() < deadline:
        try:
            conn = wh.analyst_connection(loc)
            out.append(conn.execute(
                "SELECT count(*), count(DISTINCT version) FROM warehouse.things WHERE part = 'a'"
            ).fetchone())
            conn.close()
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
