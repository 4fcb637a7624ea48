"""The code location: every definition under ``defs/``, plus the project-wide policies.

``dagster dev`` (pyproject's ``[tool.dg]``/``[tool.dagster]``), ``workspace.yaml`` and ``mdp``
all load this module, so every entry point sees the same graph. Policy, in one place:
declarative automation makes the ``EAGER_GROUPS`` refresh when a parent updates, and the
``eager_automation_sensor`` evaluates it (docs/configuration.md tells the whole schedule).
Upstream blocking checks hold that refresh back only when they fail with ERROR, the rule a run
applies; a WARN failure (a judged check on thin evidence) lets it through.

The scale-out profile (docs/scale-out.md) is checked here, when the code location loads, and
picks the executor: ``MDP_EXECUTOR`` (celery on the production profile), else the code
location's default, the heartbeat executor of ``defs/automation/run_health.py``.
"""

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._record import copy

from my_data_platform.defs.automation.conditions import all_deps_blocking_checks_not_failed
from my_data_platform.defs.automation.run_health import heartbeat_executor, run_heartbeat
from my_data_platform.profile import check_profile
from my_data_platform.settings import Settings, SettingsError, get_settings

EAGER_GROUPS = ("warehouse", "labels", "features")
"""Asset groups refreshed by declarative automation. The lake is run by the landing sensors;
``datasets`` and everything after it by the nightly schedule."""

with warnings.catch_warnings():  # use_user_code_server is a "beta" parameter in 1.13
    warnings.simplefilter("ignore", dg.BetaWarning)
    eager_automation_sensor = dg.AutomationConditionSensorDefinition(
        "eager_automation_sensor",
        target=dg.AssetSelection.groups(*EAGER_GROUPS),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description=(
            "Evaluates the warehouse and features assets' automation conditions, so they "
            "refresh after the lake changes."
        ),
        # the eager condition reads check severities in Python (defs/automation/conditions.py),
        # which only the code server can run; the daemon cannot load custom conditions
        use_user_code_server=True,
    )


def eager_condition(external: Sequence[dg.AssetKey]) -> dg.AutomationCondition:
    """``eager()`` that also waits until no upstream blocking check has failed with ERROR (a
    WARN failure does not block, as within a run), and ignores ``external`` assets (landing
    data, OLTP tables): Dagster never materializes them, so they would count as missing forever
    and block every ELT asset."""
    return (
        (dg.AutomationCondition.eager() & all_deps_blocking_checks_not_failed())
        .ignore(dg.AssetSelection.assets(*external))
        .with_label("eager, unless an upstream audit fails")
    )


@dg.definitions
def defs() -> dg.Definitions:
    settings = get_settings()
    check_profile(settings)  # a store other hosts cannot reach fails here, not mid-run
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    merged = dg.Definitions.merge(
        apply_policies(loaded), dg.Definitions(sensors=[eager_automation_sensor])
    )
    executor = executor_from_settings(settings)
    return merged if executor is None else copy(merged, executor=executor)


def executor_from_settings(s: Settings) -> dg.ExecutorDefinition | None:
    """The executor ``MDP_EXECUTOR`` (or the profile) asks for; None keeps the code location's
    default (the heartbeat executor, multiprocess unless run config says otherwise).

    Every choice keeps the run heartbeat (``mdp/heartbeat``), so run_health_sensor can tell a
    live run from a dead one whatever executes its steps. Celery gets its broker and result
    backend as environment references (``{"env": ...}``): the URLs may hold a password and are
    resolved in the run worker, never shown in the UI. The result backend defaults to the broker
    (Redis serves both).
    """
    if s.executor is None and s.profile == "embedded":
        return None
    kind = s.executor_kind
    if kind in ("in_process", "multiprocess"):
        return heartbeat_executor.configured({kind: {}}, name=f"{kind}_heartbeat_executor")
    if "MDP_CELERY_BROKER_URL" not in s.secrets_set:
        raise SettingsError(
            "MDP_EXECUTOR=celery needs MDP_CELERY_BROKER_URL (e.g. redis://redis.internal:6379/0)"
        )
    backend = (
        "MDP_CELERY_BACKEND_URL"
        if "MDP_CELERY_BACKEND_URL" in s.secrets_set
        else "MDP_CELERY_BROKER_URL"
    )
    return celery_heartbeat_executor().configured(
        {
            "broker": {"env": "MDP_CELERY_BROKER_URL"},
            "backend": {"env": backend},
            "config_source": celery_config_source(s.celery_visibility_timeout_s),
        },
        name="celery_heartbeat_executor",
    )


def celery_config_source(visibility_timeout_s: float) -> dict[str, Any]:
    """Celery settings that keep a step whose worker died (kill -9, a lost machine).

    By default a worker acknowledges a task when it receives it, so a worker killed whole takes
    its step with it and the run waits forever. Acknowledged late, with a rejected-on-loss task
    and Redis restoring unacknowledged tasks, the step goes to another worker after
    ``visibility_timeout_s`` (which must exceed the longest step plus its wait in the worker, or a
    running step is delivered again). One prefetched task per process: a task waiting behind a
    long step would otherwise count against the timeout. Celery workers need the same settings
    in their ``-y`` yaml (docs/scale-out.md)."""
    return {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": {
            "visibility_timeout": visibility_timeout_s,
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        },
    }


def celery_heartbeat_executor() -> dg.ExecutorDefinition:
    """dagster-celery's executor (steps go to Celery workers through the broker), with the run
    heartbeat around the run worker's polling loop. A subclass, not a wrapper: the Celery
    execution loop asks the run's executor for its app arguments."""
    from dagster._core.execution.retries import RetryMode
    from dagster_celery.executor import CELERY_CONFIG, CeleryExecutor
    from dagster_celery.executor import celery_executor as base

    class HeartbeatCeleryExecutor(CeleryExecutor):
        def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[dg.DagsterEvent]:
            with run_heartbeat(plan_context.instance, plan_context.run_id):
                yield from super().execute(plan_context, execution_plan)

    def create(init: dg.InitExecutorContext) -> CeleryExecutor:
        config = init.executor_config
        return HeartbeatCeleryExecutor(
            retries=RetryMode.from_config(config["retries"]),  # type: ignore[arg-type]
            broker=config.get("broker"),
            backend=config.get("backend"),
            config_source=config.get("config_source"),
            include=config.get("include"),
        )

    return dg.ExecutorDefinition(
        name="celery",
        config_schema=CELERY_CONFIG,
        requirements=base.get_requirements,
        executor_creation_fn=create,
        description="dagster-celery's executor, plus the mdp/heartbeat run tag.",
    )


def apply_policies(defs: dg.Definitions) -> dg.Definitions:
    external = [a.key for a in defs.assets or [] if isinstance(a, dg.AssetSpec)]
    eager = eager_condition(external)

    def policy(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.group_name in EAGER_GROUPS:
            return spec.replace_attributes(automation_condition=eager)
        return spec

    with warnings.catch_warnings():  # map_asset_specs is a "preview" API in 1.13
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return defs.map_asset_specs(func=policy)
