"""Full refreshes through Dagster's own execution and instance (the runs appear in the UI).

``mdp run`` registers every landed day as an ``event_days`` partition, then materializes the
selection in phases: unpartitioned assets in one run, partitioned assets in one run per day
(or one run over all the days, when every asset of the phase has a single-run backfill
policy, as a backfill from the UI would), ordered so every asset runs after its parents. Each
run executes in process against the instance in ``$DAGSTER_HOME``, exactly as a run launched
from the UI would be recorded.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from dagster._core.utils import make_new_run_id

from my_data_platform.core.fsutil import atomic_write
from my_data_platform.defs.automation.run_health import run_heartbeat
from my_data_platform.defs.lake.objects import list_landed_days
from my_data_platform.defs.lake.resources import object_store_from_settings
from my_data_platform.defs.partitions import event_days

if TYPE_CHECKING:
    from my_data_platform.core.graphql_client import BackfillState, DagsterWebserverClient
    from my_data_platform.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def load_definitions() -> dg.Definitions:
    from my_data_platform.definitions import defs

    return defs() if callable(defs) else defs  # type: ignore[operator]


INSTANCE_STORAGE_KEYS = (
    "storage",
    "run_storage",
    "event_log_storage",
    "schedule_storage",
    "local_artifact_storage",
    "compute_logs",
)
"""Keys that say where an instance keeps its state: they belong to the instance, never the repo."""


STORAGE_BLOCK_KEYS = ("storage", "run_storage", "event_log_storage", "schedule_storage")
"""The keys that choose the run, event log and schedule storage (SQLite when none is set)."""


def write_instance_config(home: Path, postgres_url_env: str | None = None) -> Path:
    """Merge the project's dagster.yaml into ``home/dagster.yaml``.

    The repo's keys win, except storage keys, which the repo never sets: a SQLite instance then
    stores under ``home``, and storage an operator configured there (PostgreSQL) is kept, as is
    any other key the repo does not set.

    ``postgres_url_env`` (the production profile's ``MDP_DAGSTER_POSTGRES_URL``) adds a
    ``storage: postgres:`` block that reads the URL from that variable when Dagster starts
    (``postgres_url: {env: ...}``), so the password never lands on disk; only when the file has
    no storage of its own: an operator's block is never replaced or dropped.
    """
    import yaml

    home.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text()) or {}
    target = home / "dagster.yaml"
    existing = yaml.safe_load(target.read_text()) if target.exists() else None
    if existing is not None and not isinstance(existing, dict):
        raise ValueError(f"{target} must hold a YAML mapping, got {type(existing).__name__}")
    repo = {k: v for k, v in config.items() if k not in INSTANCE_STORAGE_KEYS}
    merged = {**(existing or {}), **repo}
    if postgres_url_env and not any(k in merged for k in STORAGE_BLOCK_KEYS):
        merged["storage"] = {"postgres": {"postgres_url": {"env": postgres_url_env}}}
    text = "# merged by my_data_platform from the repo's dagster.yaml\n" + yaml.safe_dump(merged)
    if not target.exists() or target.read_text() != text:
        with atomic_write(target, "w") as f:  # a crash never loses the operator's storage
            f.write(text)
    return target


def get_instance() -> dg.DagsterInstance:
    """The persistent instance under ``$DAGSTER_HOME`` (configured by our dagster.yaml)."""
    from my_data_platform.settings import configure_dagster_home, get_settings

    settings = get_settings()
    home = settings.dagster_home
    write_instance_config(home, instance_postgres_url_env(settings))
    configure_dagster_home(home)
    return dg.DagsterInstance.get()


def instance_postgres_url_env(settings: Settings) -> str | None:
    """The variable the instance's PostgreSQL URL is read from, when settings ask for one."""
    return "MDP_DAGSTER_POSTGRES_URL" if settings.dagster_postgres_url_is_set else None


AssetStatus = Literal["materialized", "failed", "skipped"]


@dataclass(frozen=True)
class AssetOutcome:
    """What became of one selected asset in one run: ``reason`` says why it failed (the error,
    or the blocking check that failed) or why it was skipped (the upstream asset that failed)."""

    status: AssetStatus
    reason: str = ""


@dataclass
class RunOutcome:
    """One run. ``partition`` is the day, ``first...last`` for a run over several days, or None.

    ``materializations`` maps each asset to its last materialization's metadata, with
    ``dagster/row_count`` summed over all the partitions the run materialized;
    ``partition_materializations`` has every partition's own metadata (asset -> day -> metadata).
    ``asset_outcomes`` has every asset the phase selected for this run (asset -> outcome),
    including those left out before the run because an upstream asset had failed; ``launched``
    is False when all of them were (no Dagster run then, and ``run_id`` is empty).
    """

    run_id: str
    partition: str | None
    assets: list[str]
    success: bool
    failed_steps: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    materializations: dict[str, dict[str, Any]] = field(default_factory=dict)
    partition_materializations: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    asset_outcomes: dict[str, AssetOutcome] = field(default_factory=dict)
    launched: bool = True

    def with_status(self, status: AssetStatus) -> dict[str, str]:
        """Asset -> reason, for the assets with ``status``."""
        return {k: o.reason for k, o in self.asset_outcomes.items() if o.status == status}


@dataclass
class RefreshPlan:
    phases: list[tuple[bool, list[dg.AssetKey]]]  # (partitioned?, keys)
    days: list[str]
    batches: list[list[list[str]]] = field(default_factory=list)  # per phase: the days of each run

    @property
    def run_count(self) -> int:
        return sum(len(b) for b in self.batches)


def selected_keys(defs: dg.Definitions, select: str | None) -> set[dg.AssetKey]:
    """The materializable assets ``select`` names (all when None), with the rest of any
    multi-asset that cannot be subset; ValueError when it names none."""
    graph = defs.resolve_asset_graph()
    selection = dg.AssetSelection.from_string(select) if select else dg.AssetSelection.all()
    try:
        keys = selection.resolve(graph)
    except dg.DagsterInvalidSubsetError as exc:
        raise ValueError(f"--select {select!r} matches no materializable asset: {exc}") from exc
    keys = {k for k in keys if graph.get(k).is_materializable}
    # a multi-asset that cannot be subset (lake/photos + its quarantine) runs whole
    keys |= {m for k in keys for m in graph.get(k).execution_set_asset_keys}
    if not keys:
        raise ValueError(f"--select {select!r} matches no materializable asset")
    return keys


def plan_refresh(
    defs: dg.Definitions, instance: dg.DagsterInstance, select: str | None
) -> RefreshPlan:
    graph = defs.resolve_asset_graph()
    keys = selected_keys(defs, select)
    store = object_store_from_settings()
    days = list_landed_days(store)
    needs_days = any(graph.get(k).partitions_def is not None for k in keys)
    if needs_days and not days:
        raise ValueError(f"no landed event files under 'landing/events/' in {store.describe()}")
    existing = set(instance.get_dynamic_partitions(event_days.name or ""))
    new = [d for d in days if d not in existing]
    if new:
        instance.add_dynamic_partitions(event_days.name or "", new)

    # Phase of an asset = its parents' phase, +1 when partitioning changes across the edge.
    # Groups with the same phase number but different partitioning never depend on each other.
    phase: dict[dg.AssetKey, int] = {}
    for key in graph.toposorted_asset_keys:
        if key not in keys:
            continue
        part = graph.get(key).partitions_def is not None
        p = 0
        for parent in graph.get(key).parent_keys:
            if parent in phase:
                parent_part = graph.get(parent).partitions_def is not None
                p = max(p, phase[parent] + (0 if parent_part == part else 1))
        phase[key] = p
    grouped: dict[tuple[int, bool], list[dg.AssetKey]] = {}
    for key, p in phase.items():
        part = graph.get(key).partitions_def is not None
        grouped.setdefault((p, part), []).append(key)
    phases = [(part, sorted(ks)) for (p, part), ks in sorted(grouped.items())]
    order = instance.get_dynamic_partitions(event_days.name or "")
    batches = [
        _day_batches(days, order, _max_days_per_run(graph, ks)) if part else [[]]
        for part, ks in phases
    ]
    return RefreshPlan(phases=phases, days=days, batches=batches)


def _max_days_per_run(graph: Any, keys: list[dg.AssetKey]) -> int | None:
    """The most days one run may cover: what every asset's backfill policy allows (no policy is
    one day per run; a single-run policy has no limit)."""
    limits = [
        (graph.get(k).backfill_policy or dg.BackfillPolicy.multi_run(1)).max_partitions_per_run
        for k in keys
    ]
    return min((n for n in limits if n is not None), default=None)


def _day_batches(days: list[str], order: list[str], limit: int | None) -> list[list[str]]:
    """Split ``days`` into runs. A run covers a partition *range*, and dynamic partitions are
    ordered by when they were added, so a run holds days that are adjacent in ``order``, at
    most ``limit`` of them."""
    position = {d: i for i, d in enumerate(order)}
    batches: list[list[str]] = []
    for day in sorted(days, key=position.__getitem__):
        last = batches[-1] if batches else None
        if last and position[last[-1]] + 1 == position[day] and len(last) < (limit or len(days)):
            last.append(day)
        else:
            batches.append([day])
    return batches


def execute_plan(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    plan: RefreshPlan,
    on_run_done: Callable[[RunOutcome], None] | None = None,
    log_level: str = "WARNING",
) -> list[RunOutcome]:
    """Run the plan: everything that can run, runs.

    A failed asset (a failed step, or a blocking check that failed with ERROR severity) stops
    only what depends on it: later runs still happen, without the assets downstream of a
    failure (for a partitioned asset, of a failure on the same day), which are reported as
    skipped with the failure they wait on. Independent assets and other days still run.

    Every event still goes to the instance's event log (and the UI); ``log_level`` only sets
    what is echoed to the console.
    """
    job = defs.resolve_implicit_global_asset_job_def()
    graph = defs.resolve_asset_graph()
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    outcomes: list[RunOutcome] = []
    broken: dict[dg.AssetKey, dict[str | None, str]] = {}  # asset -> day (None: all) -> why
    for (_, keys), batches in zip(plan.phases, plan.batches, strict=True):
        for days in batches:
            label = None if not days else days[0] if len(days) == 1 else f"{days[0]}...{days[-1]}"
            left_out = _left_out(graph, keys, days, broken)
            selected = [k for k in keys if k not in left_out]
            if not selected:
                outcome = RunOutcome(
                    run_id="",
                    partition=label,
                    assets=[k.to_user_string() for k in keys],
                    success=False,
                    launched=False,
                )
            else:
                tags = {"mdp/source": "mdp run"}
                if len(days) > 1:  # the tags a single-run backfill's run carries
                    tags[ASSET_PARTITION_RANGE_START_TAG] = days[0]
                    tags[ASSET_PARTITION_RANGE_END_TAG] = days[-1]
                run_id = make_new_run_id()
                with run_heartbeat(instance, run_id):  # run_health_sensor sees this run is alive
                    result = job.execute_in_process(
                        run_config=run_config,
                        instance=instance,
                        partition_key=days[0] if len(days) == 1 else None,
                        asset_selection=selected,
                        raise_on_error=False,
                        tags=tags,
                        run_id=run_id,
                    )
                outcome = _outcome(result, label, selected, graph)
                outcome.assets = [k.to_user_string() for k in keys]
            for key, why in left_out.items():
                outcome.asset_outcomes[key.to_user_string()] = AssetOutcome("skipped", why)
            outcome.asset_outcomes = {
                k.to_user_string(): outcome.asset_outcomes[k.to_user_string()] for k in keys
            }
            for key in keys:
                got = outcome.asset_outcomes[key.to_user_string()]
                if got.status != "materialized":
                    why = (
                        got.reason if got.status == "skipped" else f"{key.to_user_string()} failed"
                    )
                    for day in days or [None]:
                        broken.setdefault(key, {})[day] = why
            outcomes.append(outcome)
            if on_run_done:
                on_run_done(outcome)
    return outcomes


def _left_out(
    graph: Any,
    keys: list[dg.AssetKey],
    days: list[str],
    broken: dict[dg.AssetKey, dict[str | None, str]],
) -> dict[dg.AssetKey, str]:
    """The assets of a run that wait on a failed or skipped upstream asset, and why.

    A partitioned asset waits on a partitioned parent's same days; any other edge (an
    unpartitioned asset reads every day, or a partitioned one reads an unpartitioned parent)
    waits on every failure of the parent. A multi-asset that cannot be subset is left out
    whole when one of its assets is."""
    out: dict[dg.AssetKey, str] = {}
    partitioned = {k: graph.get(k).partitions_def is not None for k in keys}
    changed = True
    while changed:  # a sibling left out with its multi-asset takes its own dependents along
        changed = False
        for key in keys:
            if key in out:
                continue
            why = _waits_on(graph, key, partitioned[key], days, broken, out)
            if why is None:
                continue
            for member in [key, *graph.get(key).execution_set_asset_keys]:
                if member in partitioned and member not in out:
                    out[member] = why
            changed = True
    return out


def _waits_on(
    graph: Any,
    key: dg.AssetKey,
    partitioned: bool,
    days: list[str],
    broken: dict[dg.AssetKey, dict[str | None, str]],
    left_out: dict[dg.AssetKey, str],
) -> str | None:
    """Why ``key`` cannot run in this run (a failure upstream of it), or None."""
    for up in sorted(graph.get_ancestor_asset_keys(key)):
        if up in left_out:
            return left_out[up]
        failures = broken.get(up)
        if not failures:
            continue
        if partitioned and graph.get(up).partitions_def is not None:
            hit = [failures[d] for d in days if d in failures]
        else:
            hit = list(failures.values())
        if hit:
            return _skip_reason(hit[0])
    return None


def _skip_reason(why: str) -> str:
    """``skipped because X failed``: the failure at the root, not the chain of skips."""
    return why if why.startswith("skipped because ") else f"skipped because {why}"


_ERROR_CLASS = re.compile(r"^(?:[A-Za-z_]\w*\.)*\w*(?:Error|Failure|Exception): ")
"""The ``module.Class: `` a serialized error starts with: the summary shows the message."""


def _outcome(
    result: dg.ExecuteInProcessResult,
    day: str | None,
    keys: list[dg.AssetKey],
    graph: Any = None,
) -> RunOutcome:
    out = RunOutcome(
        run_id=result.run_id,
        partition=day,
        assets=[k.to_user_string() for k in keys],
        success=result.success,
    )
    failed: dict[str, str] = {}  # asset -> why
    failed_step_keys: dict[str, str] = {}  # step -> error
    for ev in result.all_events:
        if ev.event_type == dg.DagsterEventType.STEP_FAILURE and ev.step_key:
            err = ev.step_failure_data.error if ev.step_failure_data else None
            while err is not None and err.cause is not None:
                err = err.cause  # the user-facing reason is at the bottom of the chain
            msg = err.message.strip().splitlines()[0] if err and err.message else "failed"
            out.failed_steps.append(f"{ev.step_key}: {msg}")
            failed_step_keys[ev.step_key] = _ERROR_CLASS.sub("", msg)
        elif ev.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            mat = ev.step_materialization_data.materialization
            key = mat.asset_key.to_user_string()
            md = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
            if mat.partition is not None:
                out.partition_materializations.setdefault(key, {})[mat.partition] = md
                if (rows := _summed_rows(out, key)) is not None:
                    md = {**md, "dagster/row_count": rows}
            out.materializations[key] = md
        elif ev.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            data = ev.asset_check_evaluation_data
            if not data.passed:
                warn = data.severity == dg.AssetCheckSeverity.WARN
                out.failed_checks.append(
                    f"{data.asset_key.to_user_string()}:{data.check_name}"
                    + (" (blocking)" if data.blocking else "")
                    + (" (warn)" if warn else "")
                )
                if data.blocking and not warn:  # it blocks what depends on the asset
                    failed.setdefault(
                        data.asset_key.to_user_string(),
                        f"blocking check {data.check_name} failed",
                    )
    if graph is not None:
        for key in keys:
            step = graph.get(key).assets_def.node_def.name
            if step in failed_step_keys:
                failed.setdefault(key.to_user_string(), failed_step_keys[step])
    for key in keys:
        name = key.to_user_string()
        if name in failed:
            out.asset_outcomes[name] = AssetOutcome("failed", failed[name])
        elif name in out.materializations:
            out.asset_outcomes[name] = AssetOutcome("materialized")
        else:
            why = _why_skipped(graph, key, failed, failed_step_keys)
            out.asset_outcomes[name] = AssetOutcome("skipped", why)
    return out


def _why_skipped(
    graph: Any, key: dg.AssetKey, failed: dict[str, str], failed_steps: dict[str, str]
) -> str:
    """An asset the run selected but never materialized: Dagster skipped it because a step it
    depends on failed; name the failed upstream asset of this run when there is one."""
    if graph is not None:
        for up in sorted(graph.get_ancestor_asset_keys(key)):
            if up.to_user_string() in failed:
                return f"skipped because {up.to_user_string()} failed"
    if failed_steps:  # e.g. a blocking check's own step
        return f"skipped because step {sorted(failed_steps)[0]} failed"
    return "not materialized"


def _summed_rows(out: RunOutcome, key: str) -> int | None:
    counts = [md.get("dagster/row_count") for md in out.partition_materializations[key].values()]
    ints = [n for n in counts if isinstance(n, int)]
    return sum(ints) if len(ints) == len(counts) else None


# --- the production profile: a backfill through the running webserver ---------------------------

CODE_LOCATION = "my_data_platform"
"""The code location's name in workspace.yaml (and pyproject's ``[tool.dg]``)."""


@dataclass(frozen=True)
class RemoteRefresh:
    """What ``mdp run`` asks the webserver to backfill: ``days`` are the event_days partitions
    (empty when no selected asset is partitioned: one run of every asset)."""

    asset_keys: list[dg.AssetKey]
    days: list[str]


def plan_remote_refresh(defs: dg.Definitions, select: str | None) -> RemoteRefresh:
    """The selection and the landed days, read from the definitions and the object store; the
    instance is left to the webserver (nothing runs here)."""
    graph = defs.resolve_asset_graph()
    keys = sorted(selected_keys(defs, select))
    days: list[str] = []
    if any(graph.get(k).partitions_def is not None for k in keys):
        store = object_store_from_settings()
        days = list_landed_days(store)
        if not days:
            raise ValueError(f"no landed event files under 'landing/events/' in {store.describe()}")
    return RemoteRefresh(asset_keys=keys, days=days)


def launch_remote_refresh(client: DagsterWebserverClient, plan: RemoteRefresh) -> str:
    """Register the landed days as event_days partitions through the webserver, then launch one
    asset backfill of the selection over them (the daemon splits it into runs by each asset's
    backfill policy and orders them by dependency). Returns the backfill id."""
    repos = client.repositories()
    ours = [r for r in repos if r.location == CODE_LOCATION] or repos
    if len(ours) != 1:
        names = sorted(f"{r.location}/{r.name}" for r in repos) or ["none"]
        raise ValueError(
            f"the webserver at {client.url} must serve code location {CODE_LOCATION!r}; "
            f"it serves {names}"
        )
    if plan.days:
        client.add_dynamic_partitions(ours[0], event_days.name or "", plan.days)
    return client.launch_backfill(
        [k.path for k in plan.asset_keys],
        plan.days or None,
        tags={"mdp/source": "mdp run"},
        title="mdp run",
    )


def follow_remote_refresh(
    client: DagsterWebserverClient,
    backfill_id: str,
    on_change: Callable[[BackfillState], None] | None = None,
    poll_s: float = 2.0,
) -> BackfillState:
    """Follow the backfill until it and every run it launched are over."""
    return client.follow_backfill(backfill_id, on_change, poll_s=poll_s)


def webserver_client(settings: Settings) -> DagsterWebserverClient:
    """A client of ``MDP_WEBSERVER_URL`` that has answered once (so a wrong URL fails before
    anything is planned): SettingsError naming the variable when it is unset or unreachable."""
    from my_data_platform.core.graphql_client import DagsterWebserverClient, GraphQLError
    from my_data_platform.settings import SettingsError

    if settings.webserver_url is None:
        raise SettingsError(
            "MDP_PROFILE=production runs through the Dagster webserver: set MDP_WEBSERVER_URL "
            "(e.g. http://dagster.internal:3000)"
        )
    client = DagsterWebserverClient(settings.webserver_url)
    try:
        client.version()
    except GraphQLError as exc:
        raise SettingsError(f"MDP_WEBSERVER_URL: {exc}") from None
    return client


if __name__ == "__main__":  # `python -m my_data_platform.runner`: prepare $DAGSTER_HOME
    from my_data_platform.settings import get_settings

    _settings = get_settings()
    print(write_instance_config(_settings.dagster_home, instance_postgres_url_env(_settings)))  # noqa: T201
