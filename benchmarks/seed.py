"""Throughput of the event-log generator (the hot path of ``mdp seed``).

Times only the log part of one or more days: sampling, JSON serialization, gzip and the
object-store writes. Users and photos are built beforehand (untimed); no images, no OLTP.
Ends with one JSON line so CI can parse the result.

    .venv/bin/python benchmarks/seed.py [--events 5000000] [--photos 100000] [--users 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from my_data_platform.core.objectstore import LocalObjectStore
from my_data_platform.synth.config import WorldConfig
from my_data_platform.synth.events import generate_event_day, write_event_day
from my_data_platform.synth.population import make_users
from my_data_platform.synth.world import all_photos


def _cpu_seconds() -> float:
    """User + system CPU of this process: a steadier number than wall time on a busy box."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--events", type=int, default=5_000_000, help="events per day")
    ap.add_argument("--photos", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--files-per-day", type=int, default=4)
    ap.add_argument("--corrupt-rate", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)

    config = WorldConfig(
        days=args.days,
        users=args.users,
        photos=args.photos,
        events_per_day=args.events,
        seed=args.seed,
        corrupt_rate=args.corrupt_rate,
        files_per_day=args.files_per_day,
    )
    users = make_users(config.users, config.seed, config.start_date)
    photos = all_photos(config, range(config.days), users)

    with tempfile.TemporaryDirectory(prefix="mdp-bench-seed-") as tmp:
        store = LocalObjectStore(Path(tmp) / "lake")
        lines = nbytes = 0
        started = time.perf_counter()
        cpu_started = _cpu_seconds()
        for d in range(config.days):
            day = generate_event_day(config, d, photos, users, threads=args.threads)
            nbytes += write_event_day(day, store)
            lines += day.lines
        seconds = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu_started

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rate = lines / seconds if seconds else 0.0
    print(
        f"seed: {lines:,} events ({config.days} day(s), {args.photos:,} photos, "
        f"{args.users:,} users) in {seconds:.2f}s = {rate / 1e6:.2f}M events/s, "
        f"{nbytes / 1e6:.1f} MB gzip, {cpu:.2f}s CPU, peak RSS {peak_mb:.0f} MB"
    )
    print(
        json.dumps(
            {
                "benchmark": "seed_events",
                "events": lines,
                "days": config.days,
                "photos": args.photos,
                "users": args.users,
                "corrupt_rate": args.corrupt_rate,
                "seconds": round(seconds, 3),
                "cpu_seconds": round(cpu, 3),
                "load_avg_1m": round(os.getloadavg()[0], 2),
                "events_per_s": round(rate),
                "bytes": nbytes,
                "peak_rss_mb": round(peak_mb, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
