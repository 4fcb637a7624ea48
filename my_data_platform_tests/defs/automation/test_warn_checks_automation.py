"""The project's eager policy blocks on a blocking check's ERROR failure, not on a WARN one.

A toy graph, ``source -> audited -> child``, where ``audited`` has a blocking check whose
outcome the test picks through run config, and ``audited``/``child`` carry the project's real
``eager_condition()``. Each case plays the daemon: materialize everything, evaluate once, rebuild
``audited`` with the check passing, warning or erroring, evaluate again, and see whether
automation requests ``child`` (as a run would: only an ERROR failure stops it).
"""

import warnings
from typing import Literal

import dagster as dg
import pytest

from my_data_platform.definitions import eager_condition

Outcome = Literal["pass", "warn", "error"]

SOURCE, AUDITED, CHILD = dg.AssetKey("source"), dg.AssetKey("audited"), dg.AssetKey("child")
CHECK = dg.AssetCheckKey(AUDITED, "floor")


class CheckOutcome(dg.Config):
    outcome: str = "pass"


def toy_definitions() -> dg.Definitions:
    """``source`` is a plain asset (updated by hand); ``audited`` and ``child`` use the policy."""

    @dg.asset(key=SOURCE)
    def source() -> None:
        return None

    @dg.asset(
        key=AUDITED,
        deps=[SOURCE],
        automation_condition=eager_condition([]),
        check_specs=[dg.AssetCheckSpec(CHECK.name, asset=AUDITED, blocking=True)],
    )
    def audited(config: CheckOutcome):
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(
            check_name=CHECK.name,
            passed=config.outcome == "pass",
            severity=(
                dg.AssetCheckSeverity.ERROR
                if config.outcome == "error"
                else dg.AssetCheckSeverity.WARN
            ),
        )

    @dg.asset(key=CHILD, deps=[AUDITED], automation_condition=eager_condition([]))
    def child() -> None:
        return None

    return dg.Definitions(assets=[source, audited, child])


def _materialize(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    keys: list[dg.AssetKey],
    outcome: Outcome = "pass",
) -> None:
    config = {"ops": {"audited": {"config": {"outcome": outcome}}}} if AUDITED in keys else {}
    result = dg.materialize(
        defs.assets or [],
        selection=keys,
        instance=instance,
        run_config=config,
        raise_on_error=False,
    )
    # an ERROR failure of a blocking check fails its step (that is how a run blocks)
    assert result.success == (outcome != "error")


def _child_requested_after_audited_update(
    outcome: Outcome,
) -> dg.EvaluateAutomationConditionsResult:
    defs = toy_definitions()
    with dg.instance_for_test() as instance:
        _materialize(defs, instance, [SOURCE, AUDITED, CHILD])
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0  # everything is up to date
        # audited is rebuilt (its parent updated) and its blocking check lands with `outcome`
        _materialize(defs, instance, [AUDITED], outcome)
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key([CHECK])
        evaluation = latest[CHECK].evaluation
        assert evaluation is not None and evaluation.passed == (outcome == "pass")
        return dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)


@pytest.mark.parametrize(
    ("outcome", "requested"), [("pass", True), ("warn", True), ("error", False)]
)
def test_only_an_error_failure_holds_back_downstream(outcome: Outcome, requested: bool) -> None:
    result = _child_requested_after_audited_update(outcome)
    assert result.get_num_requested(CHILD) == int(requested)
    assert result.get_num_requested(AUDITED) == 0  # its own parent did not change


def test_the_code_location_ships_a_snapshot_of_the_python_condition() -> None:
    """The code server serializes every asset's condition unless the tree says it cannot; a
    Python operand hidden from that walk made the whole code location fail to load."""
    from dagster._core.definitions.sensor_definition import SensorType
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster_shared.serdes import deserialize_value, serialize_value

    from my_data_platform.definitions import eager_automation_sensor
    from my_data_platform.runner import load_definitions

    repo = load_definitions().get_repository_def()
    with warnings.catch_warnings():  # Dagster's snapshot reads its own deprecated properties
        warnings.simplefilter("ignore", DeprecationWarning)
        snap = RepositorySnap.from_def(repo)
    nodes = deserialize_value(serialize_value(snap), RepositorySnap).asset_nodes
    eager = [n for n in nodes if n.group_name == "warehouse" and n.is_materializable]
    assert eager
    for node in eager:
        assert node.automation_condition is None  # only the daemon-side copy is left out
        assert node.automation_condition_snapshot is not None
        assert "check_failed_with_warn" in str(node.automation_condition_snapshot)
    # AUTOMATION (not AUTO_MATERIALIZE): evaluated on the code server, which can run Python
    assert eager_automation_sensor.sensor_type == SensorType.AUTOMATION
