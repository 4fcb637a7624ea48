"""Declarative automation on the real graph's shape and policy, with real (stub) runs.

Each asset is replaced by a stub with the same key, deps, partitions, group, blocking checks
and automation condition, so the test runs in seconds yet exercises the project's policy as
the daemon would: evaluate, launch the requested runs, evaluate again until quiet.
"""

from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from my_data_platform.runner import load_definitions

pytestmark = pytest.mark.slow  # materializes a generated world and evaluates automation


DAY1, DAY2 = "2024-03-01", "2024-03-02"
LAKE_EVENTS = ["lake/events", "lake/events_quarantine"]


def _stub(spec: dg.AssetSpec, checks: list[dg.AssetCheckKey]) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name="stub_" + "_".join(spec.key.path),
        specs=[spec],
        check_specs=[dg.AssetCheckSpec(c.name, asset=c.asset_key, blocking=True) for c in checks],
    )
    def stub():
        yield dg.MaterializeResult(asset_key=spec.key)
        for c in checks:
            yield dg.AssetCheckResult(asset_key=c.asset_key, check_name=c.name, passed=True)

    return stub


def stub_definitions() -> dg.Definitions:
    graph = load_definitions().resolve_asset_graph()
    assets: list[dg.AssetsDefinition | dg.AssetSpec] = []
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        spec = dg.AssetSpec(
            key,
            deps=node.parent_keys,
            partitions_def=node.partitions_def,
            group_name=node.group_name,
            automation_condition=node.automation_condition,
        )
        if node.is_materializable:
            checks = [c for c in graph.asset_check_keys if c.asset_key == key]
            assets.append(_stub(spec, checks))
        else:
            assets.append(spec)
    return dg.Definitions(assets=assets)


class Daemon:
    """Plays the automation sensor: evaluate, run what was requested, repeat until quiet."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
        self.defs, self.instance, self.cursor = defs, instance, None
        self.graph = defs.resolve_asset_graph()

    def run(self, keys: list[str], partition: str | None = None) -> None:
        result = dg.materialize(
            self.defs.assets or [],
            selection=[dg.AssetKey.from_user_string(k) for k in keys],
            partition_key=partition,
            instance=self.instance,
        )
        assert result.success

    def settle(self, max_ticks: int = 8) -> Counter[str]:
        requested: Counter[str] = Counter()
        for _ in range(max_ticks):
            result = dg.evaluate_automation_conditions(
                defs=self.defs, instance=self.instance, cursor=self.cursor
            )
            self.cursor = result.cursor
            if result.total_requested == 0:
                return requested
            runs: dict[str | None, list[str]] = {}
            for key in self.graph.get_all_asset_keys():
                if not result.get_num_requested(key):
                    continue
                name = key.to_user_string()
                if self.graph.get(key).partitions_def is None:
                    runs.setdefault(None, []).append(name)
                    requested[name] += 1
                for pk in result.get_requested_partitions(key) or []:
                    if pk is not None:
                        runs.setdefault(pk, []).append(name)
                        requested[f"{name}[{pk}]"] += 1
            for pk, keys in runs.items():
                self.run(keys, pk)
        raise AssertionError(f"automation did not settle: {requested}")


def test_a_lake_change_refreshes_each_downstream_asset_exactly_once(data_env: Path) -> None:
    defs = stub_definitions()
    graph = defs.resolve_asset_graph()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("event_days", [DAY1])
        daemon = Daemon(defs, instance)
        daemon.settle()  # the condition's first evaluation: nothing is materialized yet
        # bootstrap like `mdp run`: everything once
        partitioned = [
            k.to_user_string()
            for k in graph.materializable_asset_keys
            if graph.get(k).partitions_def is not None
        ]
        daemon.run(partitioned, DAY1)
        daemon.run(
            [
                k.to_user_string()
                for k in graph.materializable_asset_keys
                if graph.get(k).partitions_def is None
            ]
        )
        bootstrap = daemon.settle()
        assert "datasets/popularity" not in bootstrap

        # a day's events change (the landing sensor's run): the downstream follows, once each
        daemon.run(LAKE_EVENTS, DAY1)
        refreshed = daemon.settle()
        assert refreshed == Counter(
            {
                f"warehouse/events[{DAY1}]": 1,
                f"warehouse/events_quarantine[{DAY1}]": 1,
                "warehouse/photo_engagement_daily": 1,
                "features/photo_activity": 1,
                "features/labels": 1,
                "features/training_examples": 1,
            }
        )
        assert daemon.settle() == Counter()  # and nothing more

        # a new day lands: only that day's partitions, and the unpartitioned aggregates
        instance.add_dynamic_partitions("event_days", [DAY2])
        daemon.run(LAKE_EVENTS, DAY2)
        new_day = daemon.settle()
        assert new_day[f"warehouse/events[{DAY2}]"] == 1
        assert new_day[f"warehouse/events_quarantine[{DAY2}]"] == 1
        assert not any(DAY1 in k for k in new_day)
        assert new_day["features/training_examples"] == 1
        assert "datasets/popularity" not in new_day  # built by the nightly job only

        # new images: the photo table and everything reading it
        daemon.run(["lake/photos", "lake/photos_quarantine"])
        photos = daemon.settle()
        assert photos["warehouse/photos"] == 1
        assert photos["features/caption_embeddings"] == 1
        assert photos["features/image_predictions"] == 1
        assert set(photos.values()) == {1}
        assert "datasets/popularity" not in photos
