"""A tiny code location for test_run_graphql.py: two partitioned assets and one that fails on
purpose, run in process by a real webserver and daemon."""

import dagster as dg

# named as the project's, so the runner's launch_remote_refresh registers days in it
days = dg.DynamicPartitionsDefinition(name="event_days")


@dg.asset(partitions_def=days)
def numbers(context: dg.AssetExecutionContext) -> int:
    """The day of the month of the partition key (``YYYY-MM-DD``)."""
    return int(context.partition_key[-2:])


@dg.asset(partitions_def=days)
def doubled(numbers: int) -> int:
    return numbers * 2


@dg.asset(partitions_def=days)
def fragile(context: dg.AssetExecutionContext) -> int:
    """Fails for odd days: a backfill with a failed run."""
    day = int(context.partition_key[-2:])
    if day % 2:
        raise ValueError(f"odd day {context.partition_key}")
    return day


defs = dg.Definitions(assets=[numbers, doubled, fragile], executor=dg.in_process_executor)
