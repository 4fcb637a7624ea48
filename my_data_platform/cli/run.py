"""``mdp run``: materialize the asset graph for every landed partition, then summarize.

On the embedded profile the runs execute in this process, against the instance in
``$DAGSTER_HOME``. On the production profile nothing starts here: the running webserver
(``MDP_WEBSERVER_URL``) gets one backfill, which the daemon and the executor run, and this
command follows it to the end (docs/scale-out.md).
"""

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
    from my_data_platform.settings import get_settings

    if get_settings().profile == "production":  # a SettingsError is reported by cli.main
        run_through_webserver(select)
        return
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
            if not outcome.launched:
                mark, run = "[yellow]SKIPPED[/]", "not run: every asset waits on a failure"
            else:
                mark = "[green]ok[/]" if outcome.success else "[red]FAILED[/]"
                run = f"run {outcome.run_id[:8]}"
            counts = ", ".join(
                f"{len(outcome.with_status(s))} {s}"
                for s in ("failed", "skipped")
                if outcome.with_status(s)
            )
            bars.console.print(
                f"  {mark} {label}: {', '.join(outcome.assets)}  ({run})"
                + (f"  [{counts}]" if counts else "")
            )
            bars.advance(task)

        outcomes = execute_plan(defs, instance, plan, done)
    print_run_summary(outcomes, time.perf_counter() - t0)
    raise typer.Exit(exit_status(outcomes))


def exit_status(outcomes: list[Any]) -> int:
    """1 when any asset failed (its step, or a blocking check with ERROR severity) or any run
    failed; 0 otherwise. Warnings and skips caused by a failure do not add to it."""
    failed = any(o.with_status("failed") for o in outcomes)
    return int(failed or any(o.launched and not o.success for o in outcomes))


def print_run_summary(outcomes: list[Any], seconds: float) -> None:
    """Per asset: materializations, rows, failed and skipped runs; then every failed asset,
    skipped asset (with the failure it waited on), failed step and failed check on stderr."""
    rows: dict[str, dict[str, int]] = {}
    for o in outcomes:
        for key, md in o.materializations.items():
            r = rows.setdefault(key, {"materializations": 0, "rows": 0, "failed": 0, "skipped": 0})
            r["materializations"] += len(o.partition_materializations.get(key, {})) or 1
            n = md.get("dagster/row_count")
            if isinstance(n, int):
                r["rows"] += n
        for key, got in o.asset_outcomes.items():
            if got.status != "materialized":
                r = rows.setdefault(
                    key, {"materializations": 0, "rows": 0, "failed": 0, "skipped": 0}
                )
                r[got.status] += 1
    table = Table(title="mdp run summary")
    table.add_column("asset")
    table.add_column("materializations", justify="right")
    table.add_column("rows", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("skipped", justify="right")
    for key in sorted(rows):
        r = rows[key]
        table.add_row(
            key,
            str(r["materializations"]),
            f"{r['rows']:,}",
            str(r["failed"] or ""),
            str(r["skipped"] or ""),
        )
    console.print(table)
    launched = [o for o in outcomes if o.launched]
    ok = sum(o.success for o in launched)
    not_run = len(outcomes) - len(launched)
    console.print(
        f"{ok}/{len(launched)} runs succeeded in {seconds:.1f}s"
        + (f"; {not_run} not run (everything in them waited on a failure)" if not_run else "")
    )
    for o in outcomes:
        where = f" [{o.partition}]" if o.partition else ""
        for key, why in o.with_status("failed").items():
            err.print(f"[red]failed asset[/] {key}{where}: {why}", highlight=False, soft_wrap=True)
        for key, why in o.with_status("skipped").items():
            err.print(
                f"[yellow]skipped asset[/] {key}{where}: {why}", highlight=False, soft_wrap=True
            )
    for f in (s for o in outcomes for s in o.failed_steps):
        err.print(f"[red]failed step[/] {f}", highlight=False, soft_wrap=True)
    for c in (c for o in outcomes for c in o.failed_checks):
        err.print(f"[red]failed check[/] {c}", highlight=False, soft_wrap=True)


def run_through_webserver(select: str | None) -> None:
    """The production profile: one backfill through the webserver's GraphQL API, followed until
    it and its runs are over; exit 1 naming every run that did not succeed."""
    from my_data_platform.core.graphql_client import GraphQLError
    from my_data_platform.profile import check_profile
    from my_data_platform.runner import (
        launch_remote_refresh,
        load_definitions,
        plan_remote_refresh,
        webserver_client,
    )
    from my_data_platform.settings import SettingsError, get_settings

    settings = get_settings()
    try:
        check_profile(settings)
        client = webserver_client(settings)
        plan = plan_remote_refresh(load_definitions(), select)
        backfill_id = launch_remote_refresh(client, plan)
    except (SettingsError, GraphQLError, ValueError) as exc:
        fail(str(exc))
    what = f"{len(plan.days)} landed day(s)" if plan.days else "no partitions"
    console.print(
        f"backfill {backfill_id}: {len(plan.asset_keys)} assets over {what}, "
        f"through {client.url} ({settings.executor_kind} executor)"
    )
    raise typer.Exit(follow_and_report(client, backfill_id))


def follow_and_report(client: Any, backfill_id: str, poll_s: float = 2.0) -> int:
    """Follow the backfill to its end, printing each run as its status changes; then the
    summary, and every run that did not succeed on stderr (its id, day and failed steps).
    The exit status: 0 when the backfill completed and every run succeeded, else 1."""
    from my_data_platform.core.graphql_client import GraphQLError
    from my_data_platform.runner import follow_remote_refresh

    t0 = time.perf_counter()
    seen: dict[str, str] = {}

    def changed(state: Any) -> None:
        for r in state.runs:
            if seen.get(r.run_id) == r.status:
                continue
            seen[r.run_id] = r.status
            mark = {"SUCCESS": "[green]ok[/]", "FAILURE": "[red]FAILED[/]"}.get(
                r.status, f"[yellow]{r.status.lower()}[/]"
            )
            console.print(f"  {mark} {r.partition or 'unpartitioned'}: run {r.run_id[:8]}")
        finished = sum(r.finished for r in state.runs)
        console.print(f"  backfill {state.status.lower()}: {finished}/{len(state.runs)} runs over")

    try:
        state = follow_remote_refresh(client, backfill_id, changed, poll_s=poll_s)
    except GraphQLError as exc:
        fail(f"lost the backfill {backfill_id}: {exc} (it goes on in the webserver)")
    ok = sum(r.status == "SUCCESS" for r in state.runs)
    console.print(
        f"{ok}/{len(state.runs)} runs succeeded in {time.perf_counter() - t0:.1f}s; "
        f"backfill {backfill_id} {state.status}"
    )
    for r in state.failed_runs:
        steps = f" (failed steps: {', '.join(r.failed_steps)})" if r.failed_steps else ""
        err.print(
            f"[red]failed run[/] {r.run_id} [{r.partition or 'unpartitioned'}]: {r.status}{steps}",
            highlight=False,
            soft_wrap=True,
        )
    if state.error:
        err.print(f"[red]backfill error[/] {state.error}", highlight=False, soft_wrap=True)
    return 0 if state.succeeded else 1
