"""Where run-failure alerts go, as a resource the alert sensor takes."""

import dagster as dg
from pydantic import Field

ALERTS_PREFIX = "alerts/run_failure/"
"""One JSON object per alert under this prefix of the object store (keys in
``defs/automation/alerts.py``): the sensor may run on any host, and readers list them."""


class AlertsResource(dg.ConfigurableResource):
    """The webhook alerts are posted to, when one is configured. The durable record of each
    alert is an object in the ``object_store`` resource, under :data:`ALERTS_PREFIX`."""

    webhook_url: str | None = Field(
        default=None,
        description="MDP_ALERT_WEBHOOK_URL (e.g. a Slack incoming webhook); it usually embeds "
        "a token, so it is an EnvVar and never logged.",
    )


def alerts_resource_from_settings() -> AlertsResource:
    from my_data_platform.settings import get_settings

    return AlertsResource(webhook_url=get_settings().secret("MDP_ALERT_WEBHOOK_URL"))


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"alerts": alerts_resource_from_settings()})
