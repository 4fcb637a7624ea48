"""The code location: every definition under ``defs/``, plus the project-wide policies.

``dagster dev`` (pyproject's ``[tool.dg]``/``[tool.dagster]``), ``workspace.yaml`` and ``mdp``
all load this module, so every entry point sees the same graph. Policy, in one place:
declarative automation makes the ``EAGER_GROUPS`` refresh when a parent updates, and the
``eager_automation_sensor`` evaluates it (docs/configuration.md tells the whole schedule).
"""

import warnings
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

EAGER_GROUPS = ("warehouse", "labels", "features")
"""Asset groups refreshed by declarative automation. The lake is run by the landing sensors;
``datasets`` and everything after it by the nightly schedule."""

eager_automation_sensor = dg.AutomationConditionSensorDefinition(
    "eager_automation_sensor",
    target=dg.AssetSelection.groups(*EAGER_GROUPS),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description=(
        "Evaluates the warehouse and features assets' automation conditions, so they refresh "
        "after the lake changes."
    ),
)


def eager_condition(external: Sequence[dg.AssetKey]) -> dg.AutomationCondition:
    """``eager()`` that also waits for upstream blocking checks, and ignores ``external`` assets
    (landing data, OLTP tables): Dagster never materializes them, so they would count as
    missing forever and block every ELT asset."""
    return (
        (dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed())
        .ignore(dg.AssetSelection.assets(*external))
        .with_label("eager, after upstream audits pass")
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
