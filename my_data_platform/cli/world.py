"""``mdp seed``: generate (or extend) the synthetic world."""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated, Any

import typer

from my_data_platform.cli._common import console, fail, object_store, progress


def seed(
    days: Annotated[int, typer.Option(min=1, help="Days of activity logs.")] = 3,
    users: Annotated[int, typer.Option(min=1)] = 300,
    photos: Annotated[int, typer.Option(min=1, help="Photos uploaded over the days.")] = 3000,
    events_per_day: Annotated[int, typer.Option(min=1)] = 60_000,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same world.")] = 42,
    corrupt_rate: Annotated[float, typer.Option(min=0.0, max=0.5)] = 0.0,
    start_date: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.")] = "2026-01-01",
    append_days: Annotated[
        int, typer.Option(min=0, help="Append N days to the existing world instead.")
    ] = 0,
    force: Annotated[bool, typer.Option(help="Replace an existing world.")] = False,
) -> None:
    """Generate a synthetic photo-sharing world: OLTP tables, JPEG images, daily event logs."""
    from my_data_platform.settings import get_settings
    from my_data_platform.synth import WorldConfig, WorldExistsError, generate_world
    from my_data_platform.synth import append_days as append

    s = get_settings()
    store = object_store()
    if s.object_store == "local":
        # a world seeded before the truth moved to the object store: move it there first
        from my_data_platform.core.synthetic_truth import migrate_local_truth

        moved = migrate_local_truth(store, s.ground_truth_dir)
        if moved:
            console.print(f"moved the ground truth into {store.describe()}: {', '.join(moved)}")
    t0 = time.perf_counter()
    with progress() as bars:
        tasks: dict[str, Any] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=total)
            bars.update(tasks[stage], completed=done, total=total)

        try:
            if append_days:
                summary = append(append_days, store, s.oltp_url, progress=report)
            else:
                try:
                    start = dt.date.fromisoformat(start_date)
                except ValueError:
                    fail(f"--start-date must be YYYY-MM-DD, got {start_date!r}")
                cfg = WorldConfig(
                    days=days,
                    users=users,
                    photos=photos,
                    events_per_day=events_per_day,
                    seed=seed,
                    corrupt_rate=corrupt_rate,
                    start_date=start,
                )
                summary = generate_world(cfg, store, s.oltp_url, progress=report, force=force)
        except WorldExistsError as exc:
            fail(f"{exc} (use --force to replace it, or --append-days N to extend it)")
        except FileNotFoundError as exc:
            fail(str(exc))
    secs = time.perf_counter() - t0
    n_days = len(summary.days)
    console.print(
        f"[green]seeded[/] {n_days} day(s) {summary.days[0]}..{summary.days[-1]}: "
        f"{summary.users} users, {summary.photos} photos, {summary.events:,} event lines "
        f"in {secs:.1f}s into {store.describe()}"
    )
    if summary.corruptions:
        bad = ", ".join(f"{k}={v}" for k, v in sorted(summary.corruptions.items()) if v)
        console.print(f"injected bad data: {bad}")
