"""Benchmark of ``core.events.ingest_day`` against pandas and a bare DuckDB scan.

Generates one realistic landing day (``--events`` events in ``--files`` gzip JSON Lines files,
with a small share of bad lines, duplicates, unknown ids, extra keys, offsets and absent
dwell_ms), then times, in this process:

(a) ``ingest_day`` on the in-memory file bytes (what the lake asset hands it);
(b) a straightforward pandas implementation of the same validation and deduplication
    (on ``--pandas-events`` events when that is smaller, said so in the JSON);
(c) DuckDB's ``SELECT COUNT(*) FROM read_json('<dir>/*.jsonl.gz')`` over the same files.

The last line of output is one JSON object with the throughputs, ratios and peak RSS.

    .venv/bin/python benchmarks/ingest_core.py --events 5000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import gzip
import json
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import psutil
from isal import isal_zlib

from my_data_platform.core.events import EVENT_TYPES, ingest_day

LANDING = dt.date(2026, 1, 1)
N_USERS = 500_000
N_PHOTOS = 2_000_000
CLIENTS = np.array(["ios/5.2.1", "android/5.1.0", "web/2026.01.3", "ios/5.1.9"])


def generate_lines(n: int, seed: int) -> pl.Series:
    """``n`` JSON lines, about 180 bytes each, ~1% of them bad in one way or another."""
    rng = np.random.default_rng(seed)
    ms = rng.integers(0, 86_400_000, n)
    ts = pl.Series(np.datetime64("2026-01-01T00:00:00.000") + ms.astype("timedelta64[ms]"))
    hi = rng.integers(0, 2**62, n)
    # ~0.3% re-sent events: reuse an earlier event id.
    dup = rng.random(n) < 0.003
    src = rng.integers(0, n, n)
    hi[dup] = hi[src[dup]]
    lo = rng.integers(0, 2**62, n)
    lo[dup] = lo[src[dup]]
    user = rng.integers(1, N_USERS + 1, n)
    user[rng.random(n) < 0.001] += N_USERS  # unknown users
    df = pl.DataFrame(
        {
            "eid": pl.Series(hi).cast(pl.String) + "-" + pl.Series(lo).cast(pl.String),
            "et": rng.choice(np.array(EVENT_TYPES), n, p=[0.8, 0.12, 0.05, 0.03]),
            "u": user,
            "p": rng.integers(1, N_PHOTOS + 1, n),
            "ts": ts.dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"),
            "d": rng.integers(0, 600_000, n),
            "c": rng.choice(CLIENTS, n),
            "r": rng.random(n),
        }
    )
    dwell = (
        pl.when(pl.col("r") < 0.05)
        .then(pl.lit(""))
        .when(pl.col("r") < 0.07)
        .then(pl.lit(',"dwell_ms":null'))
        .otherwise(pl.lit(',"dwell_ms":') + pl.col("d").cast(pl.String))
    )
    tail = (
        pl.when((pl.col("r") > 0.5) & (pl.col("r") < 0.51))
        .then(pl.lit(',"app_build":"1234"}'))
        .otherwise(pl.lit("}"))
    )
    line = pl.concat_str(
        [
            pl.lit('{"event_id":"'), pl.col("eid"),
            pl.lit('","event_type":"'), pl.col("et"),
            pl.lit('","user_id":'), pl.col("u").cast(pl.String),
            pl.lit(',"photo_id":'), pl.col("p").cast(pl.String),
            pl.lit(',"ts":"'), pl.col("ts"), pl.lit('"'), dwell,
            pl.lit(',"client":"'), pl.col("c"), pl.lit('"'), tail,
        ]
    )  # fmt: skip
    bad = (
        pl.when(pl.col("r") > 0.998)
        .then(line.str.slice(0, 60))  # malformed JSON
        .when(pl.col("r") > 0.997)
        .then(
            line.str.replace('"user_id":', '"user_id":"', literal=True).str.replace(
                ',"photo_id"', '","photo_id"', literal=True
            )
        )  # wrong_type:user_id
        .when(pl.col("r") > 0.9965)
        .then(line.str.replace("Z", "+02:00", literal=True))  # valid, offset ts
        .otherwise(line)
    )
    return df.select(bad.alias("line"))["line"]


def write_day(root: Path, n: int, n_files: int) -> list[Path]:
    """Write the day as ``n_files`` gzip files; ISA-L level 1 keeps generation quick."""
    paths = []
    per = -(-n // n_files)
    for i in range(n_files):
        k = min(per, n - i * per)
        if k <= 0:
            break
        lines = generate_lines(k, seed=i)
        text = (
            pl.DataFrame({"l": lines}).write_csv(include_header=False, quote_style="never").encode()
        )
        path = root / f"events-{i:04d}.jsonl.gz"
        path.write_bytes(isal_zlib.compress(text, 1, wbits=31))
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------
# (b) the straightforward pandas implementation

_TS_RE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"
_FIELDS = ["event_id", "event_type", "user_id", "photo_id", "ts", "dwell_ms", "client"]
_REQUIRED = ["event_id", "event_type", "user_id", "photo_id", "ts", "client"]


def pandas_ingest(
    files: list[tuple[str, bytes]], users: np.ndarray, photos: np.ndarray
) -> tuple[int, int]:
    """Same rules, written the way most teams would: json.loads per line, then pandas."""
    rows, bad = [], []
    for name, data in sorted(files):
        text = gzip.decompress(data)
        for no, raw in enumerate(text.split(b"\n"), 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                bad.append((name, no, "malformed_json"))
                continue
            if not isinstance(obj, dict):
                bad.append((name, no, "malformed_json"))
                continue
            rows.append({**{f: obj.get(f) for f in _FIELDS}, "source_file": name, "line_no": no,
                         "extra": bool(set(obj) - set(_FIELDS))})  # fmt: skip
    df = pd.DataFrame(rows)
    reason = pd.Series(pd.NA, index=df.index, dtype=object)

    def mark(mask: pd.Series, why: str) -> None:
        reason[mask & reason.isna()] = why

    for f in _REQUIRED:
        mark(df[f].isna(), f"missing_field:{f}")
    is_int = lambda s: s.map(lambda v: type(v) is int)  # noqa: E731
    is_str = lambda s: s.map(lambda v: isinstance(v, str))  # noqa: E731
    for f in _FIELDS:
        ok = is_int(df[f]) if f in ("user_id", "photo_id", "dwell_ms") else is_str(df[f])
        if f == "dwell_ms":
            ok |= df[f].isna()
        mark(~ok, f"wrong_type:{f}")
    mark(df["event_id"] == "", "invalid_value:event_id")
    mark(~df["event_type"].isin(EVENT_TYPES), "invalid_value:event_type")
    ts_str = df["ts"].where(is_str(df["ts"]), None).astype("string")
    ts = pd.to_datetime(ts_str.where(ts_str.str.match(_TS_RE)), utc=True, errors="coerce",
                        format="ISO8601")  # fmt: skip
    mark(ts.isna(), "invalid_value:ts")
    dwell = pd.to_numeric(df["dwell_ms"], errors="coerce")
    mark(dwell < 0, "invalid_value:dwell_ms")
    mark(~df["user_id"].isin(users), "unknown_user")
    mark(~df["photo_id"].isin(photos), "unknown_photo")
    valid = reason.isna()
    dup = valid & df["event_id"].where(valid).duplicated() & df["event_id"].notna()
    mark(dup, "duplicate")
    events = df[reason.isna()].assign(ts=ts[reason.isna()])
    return len(events), len(bad) + int(reason.notna().sum())


# ---------------------------------------------------------------------------------------------


class PeakRss:
    """Samples this process's RSS in a thread: the high-water mark of one phase only."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._proc = psutil.Process()

    def __enter__(self) -> PeakRss:
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=5_000_000)
    ap.add_argument("--files", type=int, default=25)
    ap.add_argument("--pandas-events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2, help="best of N for the fast paths")
    args = ap.parse_args()

    users = np.arange(1, N_USERS + 1, dtype=np.int64)
    photos = np.arange(1, N_PHOTOS + 1, dtype=np.int64)
    with tempfile.TemporaryDirectory(prefix="ingest_bench_") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        paths = write_day(root, args.events, args.files)
        gen_s = time.perf_counter() - t0
        files = [(p.name, p.read_bytes()) for p in paths]
        gc.collect()

        rss_before = psutil.Process().memory_info().rss
        best, best_cpu, result = float("inf"), float("inf"), None
        with PeakRss() as peak:
            for _ in range(args.repeat):
                result = None
                gc.collect()
                t0, c0 = time.perf_counter(), time.process_time()
                result = ingest_day(files, LANDING, users, photos)
                best = min(best, time.perf_counter() - t0)
                best_cpu = min(best_cpu, time.process_time() - c0)
        assert result is not None
        stats = result.stats
        del result
        gc.collect()

        con = duckdb.connect(config={"threads": 2})
        pattern = str(root / "*.jsonl.gz")
        scan, scan_cpu = float("inf"), float("inf")
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            (count,) = con.execute(
                "SELECT COUNT(*) FROM read_json(?, ignore_errors = true)", [pattern]
            ).fetchone()
            scan = min(scan, time.perf_counter() - t0)
            scan_cpu = min(scan_cpu, time.process_time() - c0)
        con.close()

        # pandas on whole files covering about --pandas-events events
        per_file = stats.landed_lines / max(1, len(files))
        k = max(1, min(len(files), round(args.pandas_events / max(per_file, 1))))
        subset = sorted(files)[:k]
        t0, c0 = time.perf_counter(), time.process_time()
        p_loaded, p_quarantined = pandas_ingest(subset, users, photos)
        pandas_s = time.perf_counter() - t0
        pandas_cpu = time.process_time() - c0
        pandas_events = p_loaded + p_quarantined

    out = {
        "events": stats.landed_lines,
        "files": stats.files,
        "loaded": stats.loaded,
        "quarantined": stats.quarantined,
        "duplicates": stats.duplicates,
        "extra_field_lines": stats.extra_field_lines,
        "ingest_s": round(best, 3),
        "events_per_s": round(stats.landed_lines / best),
        "pandas_events": pandas_events,
        "pandas_s": round(pandas_s, 3),
        "pandas_events_per_s": round(pandas_events / pandas_s),
        "duckdb_scan_events": count,
        "duckdb_scan_s": round(scan, 3),
        "duckdb_scan_events_per_s": round(count / scan),
        "speedup_vs_pandas": round((stats.landed_lines / best) / (pandas_events / pandas_s), 2),
        "ratio_vs_duckdb_scan": round((stats.landed_lines / best) / (count / scan), 3),
        # CPU seconds: on a shared machine wall time depends on neighbours, CPU time less so.
        "ingest_cpu_s": round(best_cpu, 3),
        "pandas_cpu_s": round(pandas_cpu, 3),
        "duckdb_scan_cpu_s": round(scan_cpu, 3),
        "cpu_per_event_ratio_vs_pandas": round(
            (pandas_cpu / pandas_events) / (best_cpu / stats.landed_lines), 2
        ),
        "cpu_per_event_ratio_vs_duckdb_scan": round(
            (scan_cpu / count) / (best_cpu / stats.landed_lines), 3
        ),
        "load_avg_1m": round(psutil.getloadavg()[0], 2),
        "peak_rss_mb": round(peak.peak / 2**20),
        "rss_before_ingest_mb": round(rss_before / 2**20),
        "input_gz_mb": round(sum(len(d) for _, d in files) / 2**20),
        "generate_s": round(gen_s, 2),
        "reasons": stats.reasons,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
