"""The issue's ingest benchmark: one landed day through the real Dagster assets.

Builds a world in a temporary ``MDP_DATA_DIR`` (``--users`` users and ``--photos`` photos in a
SQLite OLTP, one day of ``--events`` events as gzip JSON Lines with ``--corrupt-rate`` bad lines;
no images), then runs, each in a fresh subprocess so peak RSS is that phase's alone:

1. ``lake/events`` + ``lake/events_quarantine`` + ``warehouse/events`` for the day, through
   ``job.execute_in_process`` on a test instance (the timed pipeline), each time from an empty
   lake and warehouse (a day that is new); then once more over the loaded day, which
   re-materializing replaces (``replace_wall_s``);
2. the straightforward pandas implementation from ``ingest_core.py`` on whole files covering
   about ``--pandas-events`` events (``pandas_events`` in the JSON);
3. DuckDB's ``SELECT COUNT(*) FROM read_json(<the files>)``.

The last line of output is one JSON object with throughputs, CPU seconds, load averages, the
ratios and the pipeline's peak RSS.

    .venv/bin/python benchmarks/ingest.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DAY_INDEX = 0


def _env_for(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["MDP_DATA_DIR"] = str(data_dir)
    env["DAGSTER_HOME"] = str(data_dir / "dagster_home")
    env.pop("MDP_OBJECT_STORE", None)
    env.pop("MDP_OLTP_URL", None)
    return env


def _usage() -> dict[str, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_mb": ru.ru_maxrss / 1024}


def _timed(fn: Any) -> tuple[Any, dict[str, float]]:
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return out, {
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "load_avg_1m_before": round(load0, 2),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
    }


# ---------------------------------------------------------------------------------------------
# world


def build_world(args: argparse.Namespace) -> dict[str, Any]:
    from my_data_platform.settings import get_settings, reset_settings

    reset_settings()
    from my_data_platform.defs.lake.resources import object_store_from_settings
    from my_data_platform.synth import oltp
    from my_data_platform.synth.config import WorldConfig
    from my_data_platform.synth.events import generate_event_day, write_event_day
    from my_data_platform.synth.population import (
        PHOTO_DB_COLUMNS,
        USER_DB_COLUMNS,
        make_users,
    )
    from my_data_platform.synth.world import all_photos

    config = WorldConfig(
        days=1,
        users=args.users,
        photos=args.photos,
        events_per_day=args.events,
        corrupt_rate=args.corrupt_rate,
        files_per_day=args.files,
    )
    settings = get_settings()
    engine = oltp.make_engine(settings.oltp_url)
    try:
        oltp.recreate(engine)
        users = make_users(config.users, config.seed, config.start_date)
        oltp.insert_frame(engine, oltp.users_table, users, USER_DB_COLUMNS)
        photos = all_photos(config, range(config.days), users)
        oltp.insert_frame(engine, oltp.photos_table, photos, PHOTO_DB_COLUMNS)
    finally:
        engine.dispose()
    day = generate_event_day(config, DAY_INDEX, photos, users)
    store = object_store_from_settings()
    written = write_event_day(day, store)
    return {
        "day": config.date_of(DAY_INDEX).isoformat(),
        "lines": day.lines,
        "files": sorted(day.files),
        "input_gz_mb": round(written / 2**20, 1),
        "corruptions": dict(day.corruptions),
        "file_root": str(settings.lake_root),
    }


# ---------------------------------------------------------------------------------------------
# phases (each runs in its own subprocess)


def phase_pipeline(day: str) -> dict[str, Any]:
    import dagster as dg

    from my_data_platform.runner import load_definitions
    from my_data_platform.settings import reset_settings

    reset_settings()
    keys = [
        dg.AssetKey(["lake", "events"]),
        dg.AssetKey(["lake", "events_quarantine"]),
        dg.AssetKey(["warehouse", "events"]),
    ]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("event_days", [day])
        defs = load_definitions()
        job = defs.resolve_implicit_global_asset_job_def()

        def run() -> Any:
            return job.execute_in_process(
                partition_key=day, asset_selection=keys, instance=instance
            )

        result, timing = _timed(run)
        assert result.success, "pipeline run failed"
        meta = {}
        for event in result.get_asset_materialization_events():
            mat = event.event_specific_data.materialization  # type: ignore[union-attr]
            meta["/".join(mat.asset_key.path)] = {
                k: v.value
                for k, v in mat.metadata.items()
                if k in ("landed_lines", "loaded", "quarantined", "duplicates", "file_errors")
            }
    return {**timing, **meta, "peak_rss_mb": round(_usage()["maxrss_mb"])}


def phase_pandas(paths: list[str], pandas_events: int, total_lines: int) -> dict[str, Any]:
    import numpy as np
    import sqlalchemy as sa

    sys.path.insert(0, str(HERE))
    from ingest_core import pandas_ingest  # type: ignore[import-not-found]

    from my_data_platform.settings import get_settings, reset_settings

    reset_settings()
    engine = sa.create_engine(get_settings().oltp_url)
    with engine.connect() as conn:
        users = np.array([r[0] for r in conn.execute(sa.text("SELECT user_id FROM users"))])
        photos = np.array([r[0] for r in conn.execute(sa.text("SELECT photo_id FROM photos"))])
    engine.dispose()
    per_file = total_lines / max(1, len(paths))
    k = max(1, min(len(paths), round(pandas_events / max(per_file, 1))))
    files = [(Path(p).name, Path(p).read_bytes()) for p in sorted(paths)[:k]]
    (loaded, quarantined), timing = _timed(lambda: pandas_ingest(files, users, photos))
    return {**timing, "events": loaded + quarantined, "files": k}


def phase_duckdb(paths: list[str], threads: int) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect(config={"threads": threads})
    sql = "SELECT COUNT(*) FROM read_json(?, ignore_errors = true)"
    ((count,),), timing = _timed(lambda: con.execute(sql, [sorted(paths)]).fetchall())
    con.close()
    return {**timing, "events": count}


def _remove_outputs(data_dir: Path) -> None:
    """The lake files, the DuckLake catalog and its data files of earlier runs (the landed
    world and the OLTP database stay)."""
    for sub in ("lake/lake", "lake/warehouse", "warehouse"):
        shutil.rmtree(data_dir / sub, ignore_errors=True)


def _subprocess(data_dir: Path, *argv: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, *argv],
        env=_env_for(data_dir),
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=5_000_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--photos", type=int, default=100_000)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--corrupt-rate", type=float, default=0.002)
    ap.add_argument("--pandas-events", type=int, default=500_000)
    ap.add_argument("--repeat", type=int, default=3, help="best of N for pipeline and scan")
    ap.add_argument("--duckdb-threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--phase", choices=["world", "pipeline", "pandas", "duckdb"])
    ap.add_argument("--arg", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.phase:  # inside a subprocess: MDP_DATA_DIR / DAGSTER_HOME are already set
        extra = json.loads(args.arg)
        if args.phase == "world":
            out = build_world(args)
        elif args.phase == "pipeline":
            out = phase_pipeline(extra["day"])
        elif args.phase == "pandas":
            out = phase_pandas(extra["paths"], args.pandas_events, extra["lines"])
        else:
            out = phase_duckdb(extra["paths"], args.duckdb_threads)
        print(json.dumps(out))
        return

    passthrough = [
        f"--events={args.events}", f"--users={args.users}", f"--photos={args.photos}",
        f"--files={args.files}", f"--corrupt-rate={args.corrupt_rate}",
        f"--pandas-events={args.pandas_events}", f"--duckdb-threads={args.duckdb_threads}",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="ingest_issue_bench_") as tmp:
        data_dir = Path(tmp)
        t0 = time.perf_counter()
        world = _subprocess(data_dir, *passthrough, "--phase=world")
        gen_s = time.perf_counter() - t0
        paths = [str(Path(world["file_root"]) / key) for key in world["files"]]
        arg = json.dumps({"day": world["day"], "paths": paths, "lines": world["lines"]})

        runs: dict[str, list[dict[str, Any]]] = {"pipeline": [], "duckdb": []}
        for _ in range(args.repeat):
            for phase in ("pipeline", "duckdb"):
                if phase == "pipeline":  # every timed run ingests a day that is new
                    _remove_outputs(data_dir)
                res = _subprocess(data_dir, *passthrough, f"--phase={phase}", f"--arg={arg}")
                runs[phase].append(res)
                print(phase, json.dumps(res), file=sys.stderr)
        # and once more over the day just loaded: re-materializing replaces it
        replace = _subprocess(data_dir, *passthrough, "--phase=pipeline", f"--arg={arg}")
        print("replace", json.dumps(replace), file=sys.stderr)
        pandas = _subprocess(data_dir, *passthrough, "--phase=pandas", f"--arg={arg}")
        print("pandas", json.dumps(pandas), file=sys.stderr)

    pipe = min(runs["pipeline"], key=lambda r: r["wall_s"])
    scan = min(runs["duckdb"], key=lambda r: r["wall_s"])
    lake = pipe["lake/events"]
    # landed lines readable by the pipeline: a truncated file's cut tail is not among them
    events = lake["landed_lines"]
    assert events == lake["loaded"] + lake["quarantined"], lake
    eps = events / pipe["wall_s"]
    p_eps = pandas["events"] / pandas["wall_s"]
    s_eps = scan["events"] / scan["wall_s"]
    out = {
        "events": events,
        "files": len(paths),
        "lines_written": world["lines"],
        "loaded": lake.get("loaded"),
        "quarantined": lake.get("quarantined"),
        "duplicates": lake.get("duplicates"),
        "pipeline_wall_s": pipe["wall_s"],
        "pipeline_cpu_s": pipe["cpu_s"],
        # the same day materialized again: DuckLake deletes the old rows in the transaction
        "replace_wall_s": replace["wall_s"],
        "events_per_s": round(eps),
        "pandas_events": pandas["events"],
        "pandas_wall_s": pandas["wall_s"],
        "pandas_cpu_s": pandas["cpu_s"],
        "pandas_events_per_s": round(p_eps),
        "duckdb_scan_events": scan["events"],
        "duckdb_scan_wall_s": scan["wall_s"],
        "duckdb_scan_cpu_s": scan["cpu_s"],
        "duckdb_scan_events_per_s": round(s_eps),
        "speedup_vs_pandas": round(eps / p_eps, 2),
        "ratio_vs_duckdb_scan": round(eps / s_eps, 3),
        # CPU time per event: on a shared machine wall time depends on neighbours, CPU less so.
        "cpu_speedup_vs_pandas": round(
            (pandas["cpu_s"] / pandas["events"]) / (pipe["cpu_s"] / events), 2
        ),
        "cpu_ratio_vs_duckdb_scan": round(
            (scan["cpu_s"] / scan["events"]) / (pipe["cpu_s"] / events), 3
        ),
        "peak_rss_mb": pipe["peak_rss_mb"],
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "load_avg_1m_during_pipeline": pipe["load_avg_1m_after"],
        "cpu_count": os.cpu_count(),
        "input_gz_mb": world["input_gz_mb"],
        "generate_s": round(gen_s, 1),
        "corruptions": world["corruptions"],
        "date": dt.date.today().isoformat(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
