"""Tier 3/4: the whole lake + warehouse path on a temporary world, local and on S3 (moto).

Runs go through the same runner as ``mdp run`` (Dagster execution against an instance), and the
assertions are about the data: counts reconcile with the files as landed, every injected
corruption ends in quarantine with its reason, and a second full refresh changes nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import zlib
from collections import Counter
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from my_data_platform.cli.sql import analyst_session
from my_data_platform.defs.lake.objects import referenced_lake_keys
from my_data_platform.defs.lake.resources import object_store_from_settings
from my_data_platform.runner import execute_plan, load_definitions, plan_refresh
from my_data_platform.settings import get_settings
from my_data_platform.synth import WorldConfig, generate_world
from my_data_platform.synth.events import QUARANTINE_REASONS
from my_data_platform_tests.conftest import wait_for_file

CONFIG = WorldConfig(days=2, users=60, photos=300, events_per_day=4_000, seed=11, corrupt_rate=0.03)
# the generator's own record of which quarantine reason each injected kind must end in
REASON_OF_KIND = {k: v for k, v in QUARANTINE_REASONS.items() if k != "truncated_file"}
TABLES = ["users", "photos", "events", "events_quarantine", "photo_engagement_daily"]
SELECTION = "group:lake or group:warehouse"  # the features group has its own tests


def _seed_and_refresh(instance: dg.DagsterInstance) -> list:
    s = get_settings()
    store = object_store_from_settings()
    generate_world(CONFIG, store, s.oltp_url, s.ground_truth_dir)
    defs = load_definitions()
    plan = plan_refresh(defs, instance, SELECTION)
    outcomes = execute_plan(defs, instance, plan)
    assert [o.failed_steps for o in outcomes if not o.success] == []
    assert len(outcomes) == plan.run_count
    return outcomes


def _landed_lines_by_day() -> dict[str, int]:
    """Count non-blank landed lines independently of the pipeline (plain zlib)."""
    store = object_store_from_settings()
    counts: Counter[str] = Counter()
    for obj in store.list("landing/events/"):
        day = obj.key.split("/")[2].removeprefix("date=")
        d = zlib.decompressobj(wbits=31)
        data = store.get_bytes(obj.key)
        text = b""
        try:
            while data:
                text += d.decompress(data)
                data = d.unused_data
                if data:
                    d = zlib.decompressobj(wbits=31)
        except zlib.error:
            pass
        counts[day] += sum(1 for line in text.split(b"\n") if line.strip())
    return dict(counts)


def _query(sql: str) -> list[tuple]:
    with analyst_session() as session:  # `mdp sql`'s sandbox (with the analysts' S3 key)
        return session.run(sql)[1]


def _snapshot() -> dict[str, pl.DataFrame]:
    with analyst_session() as session:
        return {
            t: pl.from_arrow(session.arrow(f"SELECT * FROM warehouse.{t}")).sort(pl.all())
            for t in TABLES
        }


def _assert_world_loaded_correctly(outcomes: list) -> None:
    gt = pl.read_parquet(get_settings().ground_truth_dir / "corruptions.parquet")
    landed = _landed_lines_by_day()
    assert len(landed) == CONFIG.days
    per_day_counts = {
        str(d): (loaded, quarantined)
        for d, loaded, quarantined in _query(
            "SELECT e.landing_date, e.n, q.n FROM "
            "(SELECT landing_date, count(*) n FROM warehouse.events GROUP BY 1) e JOIN "
            "(SELECT landing_date, count(*) n FROM warehouse.events_quarantine "
            " WHERE line_no IS NOT NULL GROUP BY 1) q USING (landing_date)"
        )
    }
    # nothing lost: every landed line is loaded or quarantined, per day, exactly
    assert {d: lo + q for d, (lo, q) in per_day_counts.items()} == landed
    # every injected corruption kind is quarantined with its reason, in the exact amount
    got = Counter(
        {
            (str(d), r): n
            for d, r, n in _query(
                "SELECT landing_date, reason, count(*) FROM warehouse.events_quarantine "
                "GROUP BY ALL"
            )
        }
    )
    for row in gt.iter_rows(named=True):
        day = str(row["day"])
        if row["kind"] in REASON_OF_KIND:
            assert got[(day, REASON_OF_KIND[row["kind"]])] == row["count"], row
        elif row["kind"] == "truncated_file":
            assert got[(day, "truncated_file")] == row["count"], row
    # late events load in the partition they landed in, with their own timestamps
    late = dict(
        gt.filter(pl.col("kind") == "late").select(pl.col("day").cast(pl.String), "count").rows()
    )
    late_loaded = dict(
        (str(d), n)
        for d, n in _query(
            "SELECT landing_date, count(*) FROM warehouse.events "
            "WHERE CAST(ts AS DATE) < landing_date GROUP BY 1"
        )
    )
    for day, n in late.items():
        assert late_loaded.get(day, 0) >= n > 0
    # no duplicate event ids reach the warehouse within a day
    assert _query(
        "SELECT count(*) FROM (SELECT landing_date, event_id FROM warehouse.events "
        "GROUP BY ALL HAVING count(*) > 1)"
    ) == [(0,)]
    # images: broken files are flagged, not dropped, and not fatal
    bad_images = int(
        gt.filter(pl.col("kind").is_in(["image_truncated", "image_not_an_image"]))["count"].sum()
    )
    assert _query(
        "SELECT count(*), count(*) FILTER (WHERE NOT image_decodable) FROM warehouse.photos"
    ) == [(CONFIG.photos, bad_images)]
    # every day was loaded in one run (single-run backfill policy), each day's materialization
    # carries that day's own counts, and the reconciliation check passed
    days = sorted(landed)
    assert [o.partition for o in outcomes if o.partition] == [f"{days[0]}...{days[-1]}"]
    per_day = {
        day: md
        for o in outcomes
        for day, md in o.partition_materializations.get("lake/events", {}).items()
    }
    assert sorted(per_day) == days
    for day, md in per_day.items():
        assert md["landed_lines"] == landed[day] == md["loaded"] + md["quarantined"]
        assert md["dagster/row_count"] == md["loaded"] == per_day_counts[day][0]
        assert md["duplicates"] >= 1 and md["extra_field_lines"] >= 1
    warehouse = {
        day: md["dagster/row_count"]
        for o in outcomes
        for day, md in o.partition_materializations.get("warehouse/events", {}).items()
    }
    assert warehouse == {d: n for d, (n, _) in per_day_counts.items()}
    assert all(not o.failed_checks for o in outcomes)


def _lake_layout(data_env: Path) -> list[str]:
    """The lake's objects, with each day's generation name (time + run id) left out."""
    root = data_env / "lake"
    return sorted(
        re.sub(
            r"-\d{8}T\d{12}Z-[0-9a-f]{8}\.parquet$",
            "-<generation>.parquet",
            str(p.relative_to(root)),
        )
        for p in (root / "lake").rglob("*")
        if p.is_file()
    )


@pytest.mark.slow  # generates a world and runs the lake and warehouse twice
def test_local_full_refresh_reconciles_and_is_idempotent(data_env: Path) -> None:
    with dg.instance_for_test() as instance:
        outcomes = _seed_and_refresh(instance)
        _assert_world_loaded_correctly(outcomes)
        first = _snapshot()
        lake_files = _lake_layout(data_env)
        # a second full refresh replaces every partition: identical contents, no duplicates
        defs = load_definitions()
        again = execute_plan(defs, instance, plan_refresh(defs, instance, SELECTION))
        assert all(o.success for o in again)
        second = _snapshot()
        for t in TABLES:
            assert first[t].equals(second[t]), t
            assert first[t].height > 0, t
        # each day republished under a new generation, the previous one deleted: no leftovers
        assert _lake_layout(data_env) == lake_files
        store = object_store_from_settings()
        assert {o.key for o in store.list("lake/")} == referenced_lake_keys(store)
        # the runs are recorded in the instance, as they would be from the UI
        assert len(instance.get_runs()) == 2 * len(outcomes)


@pytest.mark.slow
def test_s3_full_refresh_over_http(
    s3_env: dict[str, str], data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDP_ANALYST_AWS_ACCESS_KEY_ID", "analyst")  # moto takes any key
    monkeypatch.setenv("MDP_ANALYST_AWS_SECRET_ACCESS_KEY", "analyst-secret")
    from my_data_platform_tests.conftest import s3_client

    with dg.instance_for_test() as instance:
        outcomes = _seed_and_refresh(instance)
        _assert_world_loaded_correctly(outcomes)
    keys = [
        o["Key"]
        for page in s3_client(s3_env["MDP_S3_ENDPOINT_URL"])
        .get_paginator("list_objects_v2")
        .paginate(Bucket=s3_env["MDP_S3_BUCKET"])
        for o in page.get("Contents", [])
    ]
    assert any(k.startswith("platform/lake/events/date=") for k in keys)
    assert any(k.startswith("platform/warehouse/") and k.endswith(".parquet") for k in keys)
    # the lake's event Parquet became DuckLake's files by a server-side copy, not a rewrite
    assert any(k.startswith("platform/warehouse/warehouse/events/mdp-") for k in keys)
    # nothing but the DuckLake catalog and the Dagster instance were written locally
    assert not (data_env / "lake").exists()


READER = textwrap.dedent(
    """
    import json, pathlib, sys, time
    from my_data_platform.core.sandbox import open_analyst_session
    from my_data_platform.defs.warehouse.location import location_from_settings
    loc = location_from_settings()
    out, errors = [], []
    stop = pathlib.Path(sys.argv[1])
    deadline = time.monotonic() + 300  # bounded even if the writer dies
    while (not stop.exists() or len(out) < 3) and time.monotonic() < deadline:
        try:
            with open_analyst_session(loc.catalog, loc.data_path) as s:
                out.append(s.run(
                    "SELECT landing_date::VARCHAR, count(*), count(DISTINCT event_id) "
                    "FROM warehouse.events GROUP BY 1 ORDER BY 1"
                )[1])
            stop.with_suffix(".ready").touch()
        except Exception as exc:
            errors.append(repr(exc))
    print(json.dumps({"results": out, "errors": errors}))
    """
)


@pytest.mark.slow
def test_analyst_reads_while_partitions_are_rematerialized(data_env: Path) -> None:
    with dg.instance_for_test() as instance:
        _seed_and_refresh(instance)
        expected = [
            list(r)
            for r in _query(
                "SELECT landing_date::VARCHAR, count(*), count(DISTINCT event_id) "
                "FROM warehouse.events GROUP BY 1 ORDER BY 1"
            )
        ]
        stop = data_env / "stop"
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, str(stop)], stdout=subprocess.PIPE, text=True
        )
        defs = load_definitions()
        job = defs.resolve_implicit_global_asset_job_def()
        day = expected[0][0]
        wait_for_file(stop.with_suffix(".ready"))
        rounds = 0
        while rounds < 5:
            rounds += 1
            r = job.execute_in_process(
                instance=instance,
                partition_key=day,
                asset_selection=[dg.AssetKey(["warehouse", "events"])],
            )
            assert r.success
        stop.touch()
        report = json.loads(reader.communicate(timeout=120)[0].strip().splitlines()[-1])
    assert report["errors"] == []
    assert len(report["results"]) >= 3 and rounds >= 2
    assert all(r == expected for r in report["results"])
