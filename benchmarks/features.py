"""Benchmark of the features group: activity snapshot + labels + training examples.

Builds a clean synthetic world directly as Polars frames (``synth.features_world``: the
generator's own sampling, no JSON or gzip), writes events as one Parquet file per day, photos
and users as Parquet, and then times, each phase in its own subprocess so that every peak RSS
is its own:

(a) polars: the production path, ``core.features`` on lazy Parquet scans, collected with the
    streaming engine: a snapshot of ``activity_features`` for every photo at the end of the
    log, ``labels`` and ``training_examples``;
(b) pandas: a straightforward pandas implementation of the same three outputs, on a smaller
    world of ``--pandas-days`` days (same daily rates) because it needs the whole log in
    memory, next to (a) on that same small world;
(c) duckdb: the same outputs as DuckDB SQL over the same Parquet files (labels into a temp
    table, then ONE query for the snapshot and ONE for the training examples).

Each phase prints checksums of its outputs; the report says whether they agree. The last
line of output is one JSON object.

    .venv/bin/python benchmarks/features.py --days 30 --events-per-day 2000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

from my_data_platform.core import features as F
from my_data_platform.synth.config import WorldConfig
from my_data_platform.synth.features_world import event_day_frame, world_tables

CFG = F.FeatureConfig()
CHECK_COLUMNS = (
    "photo_views_24h", "photo_likes_672h", "photo_unique_users_168h", "author_views_24h",
    "author_likes_168h", "author_shares_672h",
)  # fmt: skip


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------
# Data


def generate(config: WorldConfig, out: Path) -> dict[str, Any]:
    """Write events (one Parquet file per day), photos and users; return sizes."""
    t0 = time.perf_counter()
    photos, users = world_tables(config)
    (out / "events").mkdir(parents=True)
    n = 0
    for d in range(config.days):
        day = event_day_frame(config, d, photos, users)
        day.write_parquet(out / "events" / f"date={config.date_of(d)}.parquet")
        n += day.height
    photos.select("photo_id", "user_id", "uploaded_at", "caption").write_parquet(
        out / "photos.parquet"
    )
    users.select("user_id", "joined_at", "follower_count").write_parquet(out / "users.parquet")
    until = dt.datetime.combine(config.date_of(config.days), dt.time(), tzinfo=dt.UTC)
    return {"events": n, "seconds": time.perf_counter() - t0, "observed_until": until.isoformat()}


def checksums(frames: dict[str, pl.DataFrame]) -> dict[str, Any]:
    snap, lab, train = frames["snapshot"], frames["labels"], frames["training"]
    return {
        "snapshot_rows": snap.height,
        "snapshot": {c: int(snap[c].sum()) for c in CHECK_COLUMNS},
        "labels_rows": lab.height,
        "labelled": int(lab["label"].is_not_null().sum()),
        "positives": int(lab["label"].sum()),
        "engagement": int(lab["engagement"].sum()),
        "training_rows": train.height,
        "training": {c: int(train[c].sum()) for c in CHECK_COLUMNS},
    }


# ---------------------------------------------------------------------------------------------
# (a) Polars, the production path


def run_polars(data: Path, until: dt.datetime) -> dict[str, Any]:
    events = pl.scan_parquet(data / "events" / "*.parquet")
    photos = pl.scan_parquet(data / "photos.parquet")
    users = pl.scan_parquet(data / "users.parquet")
    times = {}
    t0 = time.perf_counter()
    snapshot = F.collect(
        F.activity_features(
            events, photos, photos.select("photo_id", pl.lit(until).alias("as_of")), CFG
        ),
        "cpu",
    )
    times["snapshot_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    lab = F.collect(F.labels(events, photos, CFG, until), "cpu")
    times["labels_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    train = F.collect(F.training_examples(events, photos, users, lab, CFG), "cpu")
    times["training_s"] = time.perf_counter() - t2
    times["seconds"] = time.perf_counter() - t0
    return {**times, "checks": checksums({"snapshot": snapshot, "labels": lab, "training": train})}


# ---------------------------------------------------------------------------------------------
# (b) pandas, the straightforward way


def run_pandas(data: Path, until: dt.datetime) -> dict[str, Any]:
    import pandas as pd

    t0 = time.perf_counter()
    ev = pd.read_parquet(
        data / "events", columns=["photo_id", "user_id", "ts", "event_type", "dwell_ms"]
    )
    photos = pd.read_parquet(data / "photos.parquet")
    users = pd.read_parquet(data / "users.parquet")
    until_ts = pd.Timestamp(until)
    authors = photos[["photo_id", "user_id"]].rename(columns={"user_id": "author_id"})

    def features(q: pd.DataFrame) -> pd.DataFrame:
        longest = pd.Timedelta(hours=max(CFG.windows_hours))
        j = q.merge(ev, on="photo_id")
        j = j[(j["ts"] <= j["as_of"]) & (j["ts"] > j["as_of"] - longest)]
        out = q.drop_duplicates().set_index(["photo_id", "as_of"])
        keys = ["photo_id", "as_of"]
        for w in CFG.windows_hours:
            jw = j[j["ts"] > j["as_of"] - pd.Timedelta(hours=w)]
            g = jw.groupby(keys)
            for kind in F.EVENT_KINDS:
                out[f"photo_{kind}s_{w}h"] = (
                    (jw["event_type"] == kind).groupby([jw["photo_id"], jw["as_of"]]).sum()
                )
            views = jw[jw["event_type"] == "view"]
            out[f"photo_mean_dwell_ms_{w}h"] = views.groupby(keys)["dwell_ms"].mean()
            out[f"photo_unique_users_{w}h"] = g["user_id"].nunique()
        aq = q.merge(authors, on="photo_id")[["author_id", "as_of"]].drop_duplicates()
        aev = ev[["photo_id", "ts", "event_type"]].merge(authors, on="photo_id")
        ja = aq.merge(aev, on="author_id")
        ja = ja[(ja["ts"] <= ja["as_of"]) & (ja["ts"] > ja["as_of"] - longest)]
        af = aq.set_index(["author_id", "as_of"])
        for w in CFG.windows_hours:
            jw = ja[ja["ts"] > ja["as_of"] - pd.Timedelta(hours=w)]
            for kind in F.EVENT_KINDS:
                af[f"author_{kind}s_{w}h"] = (
                    (jw["event_type"] == kind).groupby([jw["author_id"], jw["as_of"]]).sum()
                )
        out = out.fillna(0).reset_index()
        out = out.merge(authors, on="photo_id").merge(
            af.fillna(0).reset_index(), on=["author_id", "as_of"], how="left"
        )
        for prefix in ("photo", "author"):
            for w in CFG.windows_hours:
                v = out[f"{prefix}_views_{w}h"]
                out[f"{prefix}_like_rate_{w}h"] = (out[f"{prefix}_likes_{w}h"] / v).where(v > 0, 0)
        out = out.merge(photos[["photo_id", "uploaded_at"]], on="photo_id")
        out["photo_age_hours"] = (out["as_of"] - out["uploaded_at"]) / pd.Timedelta(hours=1)
        return out

    snapshot = features(photos[["photo_id"]].assign(as_of=until_ts))
    t1 = time.perf_counter()

    lab = photos[["photo_id", "uploaded_at"]].copy()
    lab["label_deadline"] = lab["uploaded_at"] + pd.Timedelta(hours=CFG.label_window_hours)
    e = ev[ev["event_type"].isin(F.ENGAGEMENT_KINDS) & (ev["ts"] <= until_ts)].merge(
        lab, on="photo_id"
    )
    e = e[(e["ts"] >= e["uploaded_at"]) & (e["ts"] <= e["label_deadline"])]
    lab["engagement"] = lab["photo_id"].map(e.groupby("photo_id").size()).fillna(0).astype(int)
    done = lab["label_deadline"] <= until_ts
    lab["label"] = (lab["engagement"] >= CFG.label_min_engagement).astype("Int8").where(done)
    lab["label_status"] = done.map({True: "labelled", False: "too_young"})
    t2 = time.perf_counter()

    q = lab.loc[done, ["photo_id", "uploaded_at"]]
    q = q.assign(as_of=q["uploaded_at"] + pd.Timedelta(hours=CFG.prediction_delay_hours))
    train = features(q[["photo_id", "as_of"]]).merge(lab[["photo_id", "label"]], on="photo_id")
    train = train.merge(users, left_on="author_id", right_on="user_id", how="left")
    train["author_tenure_days"] = (train["as_of"] - train["joined_at"]) / pd.Timedelta(days=1)
    train = train.merge(photos[["photo_id", "caption"]], on="photo_id")
    train["caption_length"] = train["caption"].str.len()
    train["upload_hour"] = train["uploaded_at"].dt.hour
    train["upload_dow"] = train["uploaded_at"].dt.dayofweek + 1
    t3 = time.perf_counter()
    frames = {
        "snapshot": pl.from_pandas(snapshot),
        "labels": pl.from_pandas(lab),
        "training": pl.from_pandas(train),
    }
    return {
        "seconds": t3 - t0,
        "snapshot_s": t1 - t0,
        "labels_s": t2 - t1,
        "training_s": t3 - t2,
        "checks": checksums(frames),
    }


# ---------------------------------------------------------------------------------------------
# (c) DuckDB SQL


def _features_sql(queries_sql: str) -> str:
    """The activity features of ``queries_sql`` (photo_id, as_of) as one SELECT."""
    longest = max(CFG.windows_hours)
    photo_aggs, author_aggs, outs = [], [], []
    for w in CFG.windows_hours:
        in_w = f"e.ts > q.as_of - INTERVAL {w} HOUR"
        for kind in F.EVENT_KINDS:
            photo_aggs.append(
                f"count(*) FILTER (WHERE {in_w} AND e.event_type = '{kind}') AS photo_{kind}s_{w}h"
            )
            author_aggs.append(
                f"count(*) FILTER (WHERE {in_w} AND e.event_type = '{kind}') AS author_{kind}s_{w}h"
            )
        photo_aggs += [
            f"coalesce(avg(e.dwell_ms) FILTER (WHERE {in_w} AND e.event_type = 'view'), 0) "
            f"AS photo_mean_dwell_ms_{w}h",
            f"count(DISTINCT e.user_id) FILTER (WHERE {in_w}) AS photo_unique_users_{w}h",
        ]
        for p in ("photo", "author"):
            outs.append(
                f"CASE WHEN coalesce({p}_views_{w}h, 0) > 0 "
                f"THEN {p}_likes_{w}h / {p}_views_{w}h ELSE 0 END AS {p}_like_rate_{w}h"
            )
    return f"""
    WITH q AS ({queries_sql}),
    ph AS (SELECT photo_id, user_id AS author_id, uploaded_at FROM read_parquet($photos)),
    ev AS (SELECT photo_id, user_id, ts, event_type, dwell_ms FROM read_parquet($events)),
    pf AS (
        SELECT q.photo_id, q.as_of, {", ".join(photo_aggs)}
        FROM q JOIN ev e ON e.photo_id = q.photo_id
            AND e.ts <= q.as_of AND e.ts > q.as_of - INTERVAL {longest} HOUR
        GROUP BY q.photo_id, q.as_of
    ),
    aq AS (SELECT DISTINCT ph.author_id, q.as_of FROM q JOIN ph USING (photo_id)),
    af AS (
        SELECT q.author_id, q.as_of, {", ".join(author_aggs)}
        FROM aq q JOIN ph ON ph.author_id = q.author_id
        JOIN ev e ON e.photo_id = ph.photo_id
            AND e.ts <= q.as_of AND e.ts > q.as_of - INTERVAL {longest} HOUR
        GROUP BY q.author_id, q.as_of
    )
    SELECT q.photo_id, q.as_of, pf.* EXCLUDE (photo_id, as_of),
        af.* EXCLUDE (author_id, as_of), {", ".join(outs)},
        epoch_us(q.as_of - ph.uploaded_at) / 3600e6 AS photo_age_hours, ph.uploaded_at,
        ph.author_id
    FROM q JOIN ph USING (photo_id)
    LEFT JOIN pf ON pf.photo_id = q.photo_id AND pf.as_of = q.as_of
    LEFT JOIN af ON af.author_id = ph.author_id AND af.as_of = q.as_of
    """


def run_duckdb(data: Path, until: dt.datetime) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    params = {
        "events": str(data / "events" / "*.parquet"),
        "photos": str(data / "photos.parquet"),
        "until": until,
    }
    t0 = time.perf_counter()
    snap_sql = _features_sql(
        "SELECT photo_id, $until::TIMESTAMPTZ AS as_of FROM read_parquet($photos)"
    )
    snapshot = con.execute(snap_sql, params).pl()
    t1 = time.perf_counter()
    con.execute(
        f"""
        CREATE TEMP TABLE labels AS
        WITH ph AS (
            SELECT photo_id, uploaded_at,
                uploaded_at + INTERVAL {CFG.label_window_hours} HOUR AS label_deadline
            FROM read_parquet($photos)
        ),
        eng AS (
            SELECT e.photo_id, count(*) AS engagement
            FROM read_parquet($events) e JOIN ph USING (photo_id)
            WHERE e.event_type IN ('like', 'comment', 'share') AND e.ts <= $until
                AND e.ts >= ph.uploaded_at AND e.ts <= ph.label_deadline
            GROUP BY e.photo_id
        )
        SELECT ph.*, coalesce(engagement, 0) AS engagement,
            CASE WHEN label_deadline <= $until
                THEN (coalesce(engagement, 0) >= {CFG.label_min_engagement})::TINYINT END AS label,
            CASE WHEN label_deadline <= $until THEN 'labelled' ELSE 'too_young' END AS label_status
        FROM ph LEFT JOIN eng USING (photo_id)
        """,
        params,
    )
    lab = con.execute("SELECT * FROM labels").pl()
    t2 = time.perf_counter()
    delay_us = round(CFG.prediction_delay_hours * 3600e6)
    train_sql = f"""
        WITH f AS ({
        _features_sql(
            "SELECT photo_id, uploaded_at + to_microseconds("
            f"{delay_us}) AS as_of FROM labels WHERE label_status = 'labelled'"
        )
    })
        SELECT f.* EXCLUDE (uploaded_at, author_id), labels.label,
            u.follower_count AS author_follower_count,
            epoch_us(f.as_of - u.joined_at) / 86400e6 AS author_tenure_days,
            length(p.caption) AS caption_length, hour(f.uploaded_at) AS upload_hour,
            isodow(f.uploaded_at) AS upload_dow
        FROM f JOIN labels USING (photo_id)
        JOIN read_parquet($photos) p USING (photo_id)
        LEFT JOIN read_parquet($users) u ON u.user_id = f.author_id
    """
    train_params = {k: params[k] for k in ("events", "photos")}
    train = con.execute(train_sql, {**train_params, "users": str(data / "users.parquet")}).pl()
    t3 = time.perf_counter()
    frames = {
        "snapshot": snapshot.fill_null(0),
        "labels": lab,
        "training": train.fill_null(0),
    }
    return {
        "seconds": t3 - t0,
        "snapshot_s": t1 - t0,
        "labels_s": t2 - t1,
        "training_s": t3 - t2,
        "checks": checksums(frames),
    }


# ---------------------------------------------------------------------------------------------
# Orchestration


PHASES = {"polars": run_polars, "pandas": run_pandas, "duckdb": run_duckdb}


def phase(name: str, data: Path, until: str) -> dict[str, Any]:
    """Run one phase in a fresh interpreter, so its peak RSS is its own."""
    proc = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--data", str(data), "--until", until],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def world(args: argparse.Namespace, days: int) -> WorldConfig:
    return WorldConfig(
        days=days,
        users=args.users,
        photos=args.photos * days // args.days,
        events_per_day=args.events_per_day,
        seed=args.seed,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--events-per-day", type=int, default=2_000_000)
    ap.add_argument("--photos", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--pandas-days", type=int, default=3)
    ap.add_argument("--skip-pandas", action="store_true")
    ap.add_argument("--skip-duckdb", action="store_true")
    ap.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--until", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.phase:
        out = PHASES[args.phase](args.data, dt.datetime.fromisoformat(args.until))
        out["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(out))
        return

    with tempfile.TemporaryDirectory(prefix="mdp-features-bench-") as tmp:
        big = Path(tmp) / "big"
        gen = generate(world(args, args.days), big)
        rows = gen["events"]
        print(f"generated {rows:,} events in {gen['seconds']:.1f}s -> {big}", file=sys.stderr)
        pol = phase("polars", big, gen["observed_until"])
        print(f"polars: {json.dumps(pol)}", file=sys.stderr)
        duck: dict[str, Any] = {}
        if not args.skip_duckdb:
            duck = phase("duckdb", big, gen["observed_until"])
            print(f"duckdb: {json.dumps(duck)}", file=sys.stderr)
        pan: dict[str, Any] = {}
        pol_small: dict[str, Any] = {}
        small_rows = 0
        if not args.skip_pandas:
            pandas_days = min(args.pandas_days, args.days)
            small = Path(tmp) / "small"
            sgen = generate(world(args, pandas_days), small)
            small_rows = sgen["events"]
            pan = phase("pandas", small, sgen["observed_until"])
            print(f"pandas ({pandas_days} days): {json.dumps(pan)}", file=sys.stderr)
            pol_small = phase("polars", small, sgen["observed_until"])
            print(f"polars ({pandas_days} days): {json.dumps(pol_small)}", file=sys.stderr)

    report: dict[str, Any] = {
        "rows": rows,
        "days": args.days,
        "photos": args.photos,
        "users": args.users,
        "seconds": round(pol["seconds"], 3),
        "rows_per_s": round(rows / pol["seconds"]),
        "stage_s": {k: round(pol[k], 3) for k in ("snapshot_s", "labels_s", "training_s")},
        "peak_rss_mb": round(pol["peak_rss_mb"], 1),
        "cpu_count": os.cpu_count(),
    }
    if duck:
        report |= {
            "duckdb_sql_rows_per_s": round(rows / duck["seconds"]),
            "duckdb_sql_seconds": round(duck["seconds"], 3),
            "duckdb_stage_s": {
                k: round(duck[k], 3) for k in ("snapshot_s", "labels_s", "training_s")
            },
            "duckdb_peak_rss_mb": round(duck["peak_rss_mb"], 1),
            "vs_duckdb": round(duck["seconds"] / pol["seconds"], 2),
            "duckdb_checks_match": duck["checks"] == pol["checks"],
        }
    if pan:
        report |= {
            "pandas_rows": small_rows,
            "pandas_days": min(args.pandas_days, args.days),
            "pandas_rows_per_s": round(small_rows / pan["seconds"]),
            "pandas_peak_rss_mb": round(pan["peak_rss_mb"], 1),
            "polars_same_subset_rows_per_s": round(small_rows / pol_small["seconds"]),
            "vs_pandas": round((rows / pol["seconds"]) / (small_rows / pan["seconds"]), 1),
            "vs_pandas_same_subset": round(pan["seconds"] / pol_small["seconds"], 1),
            "pandas_checks_match": pan["checks"] == pol_small["checks"],
        }
        if not report["pandas_checks_match"]:
            report["pandas_checks"] = pan["checks"]
            report["polars_subset_checks"] = pol_small["checks"]
    if duck and not report["duckdb_checks_match"]:
        report["duckdb_checks"] = duck["checks"]
        report["polars_checks"] = pol["checks"]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
