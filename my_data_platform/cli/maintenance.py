"""``mdp maintenance``: run the weekly housekeeping job now, on the instance, and report."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from my_data_platform.cli._common import console, fail, require_data_dir


def maintenance(
    retention_days: Annotated[
        float | None,
        typer.Option(help="Expire warehouse snapshots older than this (default: the setting)."),
    ] = None,
    grace_s: Annotated[
        float | None,
        typer.Option(help="Leave temp and unreferenced files younger than this many seconds."),
    ] = None,
    failed_branch_retention_days: Annotated[
        float | None,
        typer.Option(
            help="Remove dataset run branches of failed audits idle longer than this "
            "(default: the setting)."
        ),
    ] = None,
) -> None:
    """Expire old warehouse snapshots (never a published dataset's), delete unreferenced
    files and stale temp files, remove merged and expired dataset run branches, collect the
    dataset store's garbage, and print what was reclaimed (docs/maintenance.md)."""
    from my_data_platform.runner import get_instance, load_definitions

    require_data_dir()
    config: dict[str, float] = {}
    if retention_days is not None:
        config["snapshot_retention_days"] = retention_days
    if grace_s is not None:
        config["grace_s"] = grace_s
    if failed_branch_retention_days is not None:
        config["failed_branch_retention_days"] = failed_branch_retention_days
    job = load_definitions().get_job_def("maintenance_job")
    result = job.execute_in_process(
        run_config={"ops": {"maintain": {"config": config}}},
        instance=get_instance(),
        raise_on_error=False,
        tags={"mdp/source": "mdp maintenance"},
    )
    if not result.success:
        fail(f"maintenance run {result.run_id} failed; see its logs in the Dagster UI")
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.step_output_data.metadata  # type: ignore[union-attr]
    summary = {k: getattr(v, "value", v) for k, v in metadata.items()}
    console.print_json(json.dumps(summary, default=str))
