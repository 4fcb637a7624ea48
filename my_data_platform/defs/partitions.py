"""Partitions shared across domains.

Event partitions are the landing days that actually exist: a dynamic partition per
``landing/events/date=YYYY-MM-DD/`` folder, added by ``mdp run`` and by the landing sensor.
So "all partitions" in the UI means "every landed day", never a calendar day with no data.
"""

import dagster as dg

event_days = dg.DynamicPartitionsDefinition(name="event_days")
