"""Automation conditions that read a check's severity, so the daemon blocks like a run does.

Within a run, Dagster holds back the assets downstream of a blocking check only when the check
fails with ERROR severity; a judged check (``defs.judged``) fails with WARN when its evidence is
thin, and the run carries on. Dagster's ``all_deps_blocking_checks_passed()`` counts any failed
evaluation, WARN included, so under the daemon one thin-evidence warning would hold back every
automatic refresh downstream. ``all_deps_blocking_checks_not_failed()`` applies the in-run rule.

These are arbitrary Python conditions: the automation sensor that evaluates them must run on the
user code server (``use_user_code_server=True``), since the daemon cannot load this class.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.definitions.declarative_automation.operators.check_operators import (
    AllChecksCondition,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecord


class CheckFailedWithWarnCondition(dg.AutomationCondition[dg.AssetCheckKey]):
    """True for a check whose latest evaluation failed with WARN severity.

    Meant to be AND-ed with ``check_failed()``, which already requires that evaluation to be the
    latest and to target the asset's latest materialization: this operand only adds the severity,
    from the same (cached) latest execution record that ``check_failed()`` reads. Partitioned
    checks are never true here (their per-partition severities are not cached by Dagster), so
    they keep the strict rule: any failure blocks.
    """

    @property
    def name(self) -> str:
        return "check_failed_with_warn"

    @property
    def description(self) -> str:
        return "Latest check evaluation failed with WARN severity"

    @property
    def requires_cursor(self) -> bool:
        return False  # stateless: reads the latest record each tick

    async def evaluate(  # type: ignore[override]  # Dagster awaits coroutine evaluate()s
        self, context: dg.AutomationContext[dg.AssetCheckKey]
    ) -> dg.AutomationResult[dg.AssetCheckKey]:
        if context.candidate_subset.is_empty or context.partitions_def is not None:
            return dg.AutomationResult(context, context.get_empty_subset())
        record = await AssetCheckExecutionRecord.gen(context.asset_graph_view, context.key)
        evaluation = record.evaluation if record else None
        warned = (
            isinstance(evaluation, dg.AssetCheckEvaluation)
            and not evaluation.passed
            and evaluation.severity == dg.AssetCheckSeverity.WARN
        )
        true_subset = context.candidate_subset if warned else context.get_empty_subset()
        return dg.AutomationResult(context, true_subset)


class AllChecksMatchWithChildren(AllChecksCondition):
    """``all_checks_match()`` that lists its operand as a child, as ``all_deps_match()`` does.

    Dagster 1.13's checks operator lists no children, so a tree with a Python operand under it
    still claims to be serializable: the code location then fails to load (the snapshot tries
    to serialize ``CheckFailedWithWarnCondition``). Listing the operand makes Dagster ship only
    the tree's snapshot, and shows the operand in the UI. The class name must differ from
    Dagster's (serdes whitelists by name).
    """

    @property
    def children(self) -> list[dg.AutomationCondition]:
        return [self.operand]


def check_not_failed() -> dg.AutomationCondition[dg.AssetCheckKey]:
    """A check that passed, failed only with WARN, or runs in this tick: it does not block.

    An ERROR failure, a check never run against the latest materialization, or one in progress
    still blocks, as in ``check_passed() | will_be_requested()``.
    """
    return (
        dg.AutomationCondition.check_passed()
        | (dg.AutomationCondition.check_failed() & CheckFailedWithWarnCondition())
        | dg.AutomationCondition.will_be_requested()
    ).with_label("check_not_failed")


def all_deps_blocking_checks_not_failed() -> dg.AutomationCondition:
    """``all_deps_blocking_checks_passed()`` with the in-run rule: only ERROR failures block."""
    return dg.AutomationCondition.all_deps_match(
        AllChecksMatchWithChildren(operand=check_not_failed(), blocking_only=True).with_label(
            "all_blocking_checks_not_failed"
        )
    ).with_label("all_deps_blocking_checks_not_failed")
