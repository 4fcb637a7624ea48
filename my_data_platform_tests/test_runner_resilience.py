"""``mdp run`` runs everything that can run: a failed asset skips only what depends on it.

A small asset graph shaped like the platform's (per-day assets, then unpartitioned ones, then
per-day ones again) on the ``event_days`` partitions, over two landed days; one asset fails on
the second day. Independent assets and the first day still materialize, every dependent is
skipped with the failure it waits on, the summary names it and the exit status is 1.
"""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from typer.testing import CliRunner

from my_data_platform.cli import app
from my_data_platform.defs.lake.resources import object_store_from_settings
from my_data_platform.defs.partitions import event_days
from my_data_platform.runner import execute_plan, plan_refresh

DAYS = ["2026-03-01", "2026-03-02"]
BAD_DAY = DAYS[1]


def _defs() -> dg.Definitions:
    @dg.asset(partitions_def=event_days)
    def raw(context: dg.AssetExecutionContext) -> None:
        if context.partition_key == BAD_DAY:
            raise dg.Failure(f"raw: landing file for {BAD_DAY} is corrupt")

    @dg.asset(partitions_def=event_days)
    def side() -> None:
        return None

    @dg.asset(partitions_def=event_days, deps=[raw])
    def clean() -> None:
        return None

    @dg.asset
    def settings() -> None:
        return None

    @dg.asset(deps=[clean])
    def report() -> None:
        return None

    @dg.asset(deps=[side])
    def side_report() -> None:
        return None

    @dg.asset(partitions_def=event_days, deps=[report])
    def final() -> None:
        return None

    @dg.asset(partitions_def=event_days, deps=[side_report])
    def side_final() -> None:
        return None

    return dg.Definitions(
        assets=[raw, side, clean, settings, report, side_report, final, side_final]
    )


@pytest.fixture
def landed(data_env: Path) -> Path:
    """Two landed days (plan_refresh lists them and registers the partitions)."""
    store = object_store_from_settings()
    for day in DAYS:
        store.put_bytes(f"landing/events/date={day}/part-0.jsonl", b'{"event_id": "e1"}\n')
    return data_env


def _by_status(outcomes: list) -> dict[tuple[str, str | None], tuple[str, str]]:
    return {
        (asset, o.partition): (got.status, got.reason)
        for o in outcomes
        for asset, got in o.asset_outcomes.items()
    }


def test_failure_skips_only_its_dependents(landed: Path) -> None:
    defs = _defs()
    with dg.instance_for_test() as instance:
        plan = plan_refresh(defs, instance, None)
        outcomes = execute_plan(defs, instance, plan)
        got = _by_status(outcomes)
        mats = {
            (k.to_user_string(), p)
            for k in defs.resolve_asset_graph().get_all_asset_keys()
            for p in (
                instance.get_materialized_partitions(k)
                if defs.resolve_asset_graph().get(k).partitions_def
                else ([None] if instance.get_latest_materialization_event(k) else [])
            )
        }
    ok, bad = DAYS
    # the failure, with its own error
    status, reason = got[("raw", bad)]
    assert status == "failed" and "is corrupt" in reason
    # independent assets and the other day materialized: in the outcomes and in the instance
    expected = {
        ("raw", ok), ("clean", ok), ("side", ok), ("side", bad), ("settings", None),
        ("side_report", None), ("side_final", ok), ("side_final", bad),
    }  # fmt: skip
    assert {k for k, v in got.items() if v[0] == "materialized"} == expected
    assert mats == expected
    # every dependent skipped, naming the failure it waits on
    skipped = {k: why for k, (s, why) in got.items() if s == "skipped"}
    assert set(skipped) == {("clean", bad), ("report", None), ("final", ok), ("final", bad)}
    assert all("raw failed" in why for why in skipped.values()), skipped
    # the second day's run of the first phase failed; the later phases still ran
    assert [o.success for o in outcomes if o.launched].count(False) == 1
    assert len(outcomes) == plan.run_count


def test_mdp_run_summary_names_the_failure_and_exits_1(
    landed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("my_data_platform.runner.load_definitions", _defs)
    res = CliRunner().invoke(app, ["run"])
    assert res.exit_code == 1, res.output
    out = " ".join(res.output.split())  # rich wraps long lines
    assert f"failed asset raw [{BAD_DAY}]: raw: landing file for {BAD_DAY} is corrupt" in out
    assert f"skipped asset clean [{BAD_DAY}]: skipped because raw failed" in out
    assert "skipped asset report: skipped because raw failed" in out
    assert "runs succeeded" in out


def test_mdp_run_exits_0_when_everything_materializes(
    landed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    @dg.asset(partitions_def=event_days)
    def fine() -> None:
        return None

    monkeypatch.setattr(
        "my_data_platform.runner.load_definitions", lambda: dg.Definitions(assets=[fine])
    )
    res = CliRunner().invoke(app, ["run"])
    assert res.exit_code == 0, res.output
    assert "failed asset" not in res.output and "skipped asset" not in res.output


def test_left_out_follows_days_and_whole_multi_assets() -> None:
    """Which assets of a run wait on an earlier failure: per day for per-day edges, every day
    for an edge into or out of an unpartitioned asset, and a multi-asset that cannot be subset
    leaves with its member, taking that member's dependents in the same run along."""
    from my_data_platform.runner import _left_out

    @dg.asset(partitions_def=event_days)
    def up() -> None:
        return None

    @dg.multi_asset(
        specs=[dg.AssetSpec("pair_a", deps=[up]), dg.AssetSpec("pair_b")],
        partitions_def=event_days,
        can_subset=False,
    )
    def pair() -> Iterator[dg.MaterializeResult]:
        yield dg.MaterializeResult(asset_key="pair_a")
        yield dg.MaterializeResult(asset_key="pair_b")

    @dg.asset(partitions_def=event_days, deps=["pair_b"])
    def after_b() -> None:
        return None

    @dg.asset(partitions_def=event_days)
    def alone() -> None:
        return None

    @dg.asset(deps=[up])
    def summary() -> None:
        return None

    graph = dg.Definitions(assets=[up, pair, after_b, alone, summary]).resolve_asset_graph()
    keys = [dg.AssetKey(k) for k in ("after_b", "alone", "pair_a", "pair_b")]
    broken = {dg.AssetKey("up"): {BAD_DAY: "up failed"}}
    left = {k.to_user_string(): why for k, why in _left_out(graph, keys, [BAD_DAY], broken).items()}
    assert left == dict.fromkeys(["after_b", "pair_a", "pair_b"], "skipped because up failed")
    assert _left_out(graph, keys, [DAYS[0]], broken) == {}  # the other day waits on nothing
    # an unpartitioned child reads every day: one bad day is enough
    assert _left_out(graph, [dg.AssetKey("summary")], [], broken) == {
        dg.AssetKey("summary"): "skipped because up failed"
    }
