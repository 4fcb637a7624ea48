"""The code location: every definition under ``defs/``, plus the project-wide policies.

``dagster dev`` (pyproject's ``[tool.dg]``/``[tool.dagster]``), ``workspace.yaml`` and ``mdp``
all load this module, so every entry point sees the same graph. Policy, in one place:
declarative automation makes the ``EAGER_GROUPS`` refresh when a parent updates, and the
``eager_automation_sensor`` evaluates it (docs/configuration.md tells the whole schedule).
Upstream blocking checks hold that refresh back only when they fail with ERROR, the rule a run
applies; a WARN failure (a judged check on thin evidence) lets it through.
"""

import warnings
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from my_data_platform.defs.automation.conditions import all_deps_blocking_checks_not_failed

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
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    return dg.Definitions.merge(
        apply_policies(loaded), dg.Definitions(sensors=[eager_automation_sensor])
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
