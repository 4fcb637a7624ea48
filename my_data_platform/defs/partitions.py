"""Partitions shared across domains.

Event partitions are the landing days that actually exist: a dynamic partition per
``landing/events/date=YYYY-MM-DD/`` folder, added by ``mdp run`` and by the landing sensor.
So "all partitions" in the UI means "every landed day", never a calendar day with no data.
"""

import dagster as dg

event_days = dg.DynamicPartitionsDefinition(name="event_days")

event_days_backfill_policy = dg.BackfillPolicy.single_run()
"""Backfills of event-day assets run as one run over the whole partition range (the UI's
backfills, the automation sensor's multi-day requests and ``mdp run`` alike). The assets
process the range one day at a time, so memory stays that of one day whatever the range."""
