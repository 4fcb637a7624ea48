"""``mdp run``: materialize the asset graph for every landed partition, then summarize."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.table import Table

from my_data_platform.cli._common import console, err, fail, progress, require_data_dir


def run(
    select: Annotated[
        str | None,
        typer.Option("--select", "-s", help="Dagster asset selection, e.g. 'group:warehouse'."),
    ] = None,
) -> None:
    """Materialize the selected assets (default: all) for every landed partition."""
    from my_data_platform.runner import execute_plan, get_instance, load_definitions, plan_refresh

    require_data_dir()
    instance = get_instance()
    defs = load_definitions()
    try:
        plan = plan_refresh(defs, instance, select)
    except Exception as exc:
        fail(str(exc))
    console.print(
        f"refreshing {sum(len(k) for _, k in plan.phases)} assets over "
        f"{len(plan.days)} landed day(s) in {plan.run_count} run(s); "
        f"instance: {instance.root_directory}"
    )
    t0 = time.perf_counter()
    with progress() as bars:
        task = bars.add_task("runs", total=plan.run_count)

        def done(outcome: Any) -> None:
            label = outcome.partition or "unpartitioned"
            mark = "[green]ok[/]" if outcome.success else "[red]FAILED[/]"
            bars.console.print(
                f"  {mark} {label}: {', '.join(outcome.assets)}  (run {outcome.run_id[:8]})"
            )
            bars.advance(task)

        outcomes = execute_plan(defs, instance, plan, done)
    print_run_summary(outcomes, time.perf_counter() - t0)
    if not all(o.success for o in outcomes) or any(
        "(blocking)" in c and "(warn)" not in c for o in outcomes for c in o.failed_checks
    ):
        raise typer.Exit(1)


def print_run_summary(outcomes: list[Any], seconds: float) -> None:
    """Materializations and rows per asset, then the failed steps and checks on stderr."""
    rows: dict[str, dict[str, int]] = {}
    for o in outcomes:
        for key, md in o.materializations.items():
            r = rows.setdefault(key, {"materializations": 0, "rows": 0})
            r["materializations"] += len(o.partition_materializations.get(key, {})) or 1
            n = md.get("dagster/row_count")
            if isinstance(n, int):
                r["rows"] += n
    table = Table(title="mdp run summary")
    table.add_column("asset")
    table.add_column("materializations", justify="right")
    table.add_column("rows", justify="right")
    for key in sorted(rows):
        table.add_row(key, str(rows[key]["materializations"]), f"{rows[key]['rows']:,}")
    console.print(table)
    failed = [s for o in outcomes for s in o.failed_steps]
    checks = [c for o in outcomes for c in o.failed_checks]
    ok = sum(o.success for o in outcomes)
    console.print(f"{ok}/{len(outcomes)} runs succeeded in {seconds:.1f}s")
    for f in failed:
        err.print(f"[red]failed step[/] {f}", highlight=False, soft_wrap=True)
    for c in checks:
        err.print(f"[red]failed check[/] {c}", highlight=False, soft_wrap=True)
