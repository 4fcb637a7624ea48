"""The nightly build: the training dataset and the model trained from it.

The dataset is deliberately not eager: a dataset version is an audited commit that models are
trained from, so we cut one a night, not one per landed file. The schedule skips (with a
reason shown in the UI) when nothing the dataset reads has changed since its last build.
"""

import dagster as dg

from my_data_platform.defs.datasets.lineage import KEY as DATASET_KEY
from my_data_platform.defs.datasets.lineage import UPSTREAM as DATASET_UPSTREAM

NIGHTLY_SELECTION = dg.AssetSelection.assets(DATASET_KEY).downstream()
"""The dataset and everything built from it (exploration, training) as they are added."""


def upstream_changes(instance: dg.DagsterInstance) -> list[str]:
    """Upstream assets materialized after the dataset's latest build (storage ids are
    monotonic, so no clock comparisons). Everything counts as changed before the first build."""
    latest = instance.fetch_materializations(DATASET_KEY, limit=1).records
    built = latest[0].storage_id if latest else -1
    changed = []
    for key in DATASET_UPSTREAM:
        records = instance.fetch_materializations(key, limit=1).records
        if records and records[0].storage_id > built:
            changed.append(f"{key.to_user_string()}@{records[0].storage_id}")
    return changed


def nightly_decision(instance: dg.DagsterInstance, job_name: str) -> dg.RunRequest | dg.SkipReason:
    features = dg.AssetKey(["features", "training_examples"])
    if not instance.fetch_materializations(features, limit=1).records:
        return dg.SkipReason(
            f"{features.to_user_string()} was never materialized: no training data yet"
        )
    changed = upstream_changes(instance)
    if not changed:
        return dg.SkipReason(
            f"nothing upstream of {DATASET_KEY.to_user_string()} changed since its last build"
        )
    return dg.RunRequest(
        run_key=f"{job_name}:{','.join(changed)}",
        tags={"mdp/source": "nightly schedule", "mdp/upstream_changed": ", ".join(changed)[:500]},
    )


nightly_dataset_job = dg.define_asset_job(
    "nightly_dataset_job",
    selection=NIGHTLY_SELECTION,
    description="Builds the popularity dataset (an audited commit) and what is trained from it.",
)


@dg.definitions
def nightly() -> dg.Definitions:
    """``MDP_NIGHTLY_CRON`` in ``MDP_SCHEDULE_TIMEZONE``, read when the code location loads."""
    from my_data_platform.settings import get_settings

    s = get_settings()

    @dg.schedule(
        name="nightly_dataset_schedule",
        job=nightly_dataset_job,
        cron_schedule=s.nightly_cron,
        execution_timezone=s.schedule_timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Nightly dataset build; skips when nothing upstream changed.",
    )
    def nightly_dataset_schedule(context: dg.ScheduleEvaluationContext):
        return nightly_decision(context.instance, nightly_dataset_job.name)

    return dg.Definitions(jobs=[nightly_dataset_job], schedules=[nightly_dataset_schedule])
