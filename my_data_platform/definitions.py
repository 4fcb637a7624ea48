"""The code location: every definition under ``defs/``, plus project-wide policies.

Kept thin on purpose. ``dagster dev`` (via pyproject's ``[tool.dg]``/``[tool.dagster]``),
``workspace.yaml`` and ``mdp`` all load this module, so every entry point sees the same graph.

Policies applied here, in one place:

* **Declarative automation**: the warehouse and features groups are eager (refresh when a
  parent updates, once per change, never while a parent is still running, and not after a
  parent's blocking check failed). External sources are ignored by it. The lake is run by
  the landing sensors (``defs/automation/sensors.py``); ``datasets/`` and after by the
  nightly schedule.
"""

import warnings
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from my_data_platform.defs.automation.sensors import EAGER_GROUPS


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
    return apply_policies(loaded)


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
