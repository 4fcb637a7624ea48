"""Code versions: every computed asset declares one, so Dagster tells stale from fresh
(docs/lineage.md says when to bump them)."""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import (
    CachingStaleStatusResolver,
    StaleCauseCategory,
    StaleStatus,
)
from dagster._time import get_current_datetime

from my_data_platform.runner import load_definitions

A, B = dg.AssetKey("a"), dg.AssetKey("b")


def test_every_computed_asset_declares_a_code_version(data_env: Path) -> None:
    graph = load_definitions().resolve_asset_graph()
    computed = [k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable]
    assert len(computed) >= 20  # the whole graph, not a corner of it
    missing = [k.to_user_string() for k in computed if not graph.get(k).code_version]
    assert not missing, f"assets without code_version: {missing}"
    # the rest are external (landing files, OLTP tables): Dagster observes them, never runs
    # code for them, so a code version would mean nothing there
    for key in set(graph.get_all_asset_keys()) - set(computed):
        assert graph.get(key).is_external, key


def _defs(a_version: str) -> dg.Definitions:
    """Two assets, a -> b; ``a``'s code version is bumped the way a release would, on the
    definitions (as definitions.apply_policies maps specs)."""

    @dg.asset(code_version="1")
    def a() -> int:
        return 1

    @dg.asset(code_version="1")
    def b(a: int) -> int:
        return a + 1

    def bump(spec: dg.AssetSpec) -> dg.AssetSpec:
        return spec.replace_attributes(code_version=a_version) if spec.key == A else spec

    with warnings.catch_warnings():  # map_asset_specs is a "preview" API in 1.13
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.Definitions(assets=[a, b]).map_asset_specs(func=bump)


def _status(instance: dg.DagsterInstance, defs: dg.Definitions) -> CachingStaleStatusResolver:
    """Dagster's own staleness resolver (what the UI's "stale" badge shows)."""
    graph = defs.resolve_asset_graph()
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    return CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)


def _materialize(instance: dg.DagsterInstance, defs: dg.Definitions, *keys: dg.AssetKey) -> None:
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(instance=instance, asset_selection=list(keys)).success


def test_unchanged_code_is_fresh_and_a_bumped_code_version_is_stale() -> None:
    v1, v2 = _defs("1"), _defs("2")
    with dg.instance_for_test() as instance:
        assert _status(instance, v1).get_status(A) == StaleStatus.MISSING
        _materialize(instance, v1, A, B)
        assert {_status(instance, v1).get_status(k) for k in (A, B)} == {StaleStatus.FRESH}
        # re-running unchanged code on unchanged inputs yields the same data version:
        # nothing downstream turns stale
        _materialize(instance, v1, A)
        assert _status(instance, v1).get_status(B) == StaleStatus.FRESH

        # a new code version of `a`: `a` is stale for its code; `b` still matches what `a`
        # holds (Dagster's rule: data, not intent, makes a dependent stale)
        st = _status(instance, v2)
        assert st.get_status(A) == StaleStatus.STALE
        assert [c.category for c in st.get_stale_causes(A)] == [StaleCauseCategory.CODE]
        assert st.get_status(B) == StaleStatus.FRESH

        # materializing `a` with the new code gives it a new data version: `a` is fresh, and
        # `b`, built from the old one, is stale until it is rebuilt
        _materialize(instance, v2, A)
        st = _status(instance, v2)
        assert st.get_status(A) == StaleStatus.FRESH
        assert st.get_status(B) == StaleStatus.STALE
        roots = st.get_stale_root_causes(B)
        assert [(c.key.asset_key, c.category) for c in roots] == [(A, StaleCauseCategory.DATA)]
        assert "new data version" in roots[0].reason
        _materialize(instance, v2, B)
        assert _status(instance, v2).get_status(B) == StaleStatus.FRESH
