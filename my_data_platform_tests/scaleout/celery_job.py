"""A two-op job for the celery feasibility test: where did each step run?

Why a job of its own: it proves the plumbing (PostgreSQL run storage, a Redis broker, step
outputs handed between workers through S3) without the asset graph's weight, and its ops say
which process ran them, so the test can check steps left the test process. ``sleep_s`` keeps
a step running long enough to kill its worker in the middle.

Workers import this module by name (``ReconstructableJob``), so it must stay importable from
the repository root with no side effects.
"""

# no `from __future__ import annotations`: Dagster reads the ops' annotations at import

import os
import socket
import time
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3PickleIOManager, S3Resource
from dagster_celery import celery_executor


class StepConfig(dg.Config):
    sleep_s: float = 0.0
    marker_dir: str = ""
    """If set, the op writes ``<step>.started`` here once running (a signal for the test)."""


def _where(context: dg.OpExecutionContext, config: StepConfig) -> dict[str, Any]:
    if config.marker_dir:
        with open(os.path.join(config.marker_dir, f"{context.op.name}.started"), "w") as f:
            f.write(f"{os.getpid()} {os.environ.get('MDP_SCALEOUT_WORKER', '')}\n")
    time.sleep(config.sleep_s)
    where = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "worker": os.environ.get("MDP_SCALEOUT_WORKER", ""),
        "home": os.environ.get("HOME", ""),
    }
    context.add_output_metadata(
        {"pid": where["pid"], "worker": where["worker"], "home": where["home"]}
    )
    return where


@dg.op
def first(context: dg.OpExecutionContext, config: StepConfig) -> dict[str, Any]:
    return _where(context, config)


@dg.op
def second(
    context: dg.OpExecutionContext, config: StepConfig, upstream: dict[str, Any]
) -> dict[str, Any]:
    # the upstream output came through S3: another worker may have produced it
    return {**_where(context, config), "upstream": upstream}


def _io_manager() -> S3PickleIOManager:
    # Values come from each process's environment (EnvVar), so a worker needs only the
    # servers' addresses, never a file from the test process.
    return S3PickleIOManager(
        s3_resource=S3Resource(
            endpoint_url=dg.EnvVar("MDP_SCALEOUT_S3_ENDPOINT"), region_name="us-east-1"
        ),
        s3_bucket=dg.EnvVar("MDP_SCALEOUT_S3_BUCKET"),
        s3_prefix="dagster-io",
    )


@dg.job(executor_def=celery_executor, resource_defs={"io_manager": _io_manager()})
def where_job() -> None:
    second(first())


@dg.job(resource_defs={"io_manager": _io_manager()})
def where_job_in_process() -> None:
    """The same ops with Dagster's default (multiprocess) executor, for the overhead figure."""
    second(first())


def _main(argv: list[str]) -> int:
    """``python -m my_data_platform_tests.scaleout.celery_job DAGSTER_HOME RUN_CONFIG_JSON``:
    run ``where_job`` as a separate coordinator process (a test can kill it if it hangs)."""
    import json
    import warnings

    # this process is not under pytest's warning filters; keep its output to the result
    warnings.simplefilter("ignore")
    from my_data_platform_tests.scaleout import celery_job as module  # importable name

    home, run_config = argv[0], json.loads(argv[1])
    with (
        dg.DagsterInstance.from_config(home) as instance,
        dg.execute_job(
            dg.reconstructable(module.where_job), instance, run_config=run_config
        ) as result,
    ):
        print(json.dumps({"run_id": result.run_id, "success": result.success}), flush=True)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(_main(sys.argv[1:]))
