"""Where run-failure alerts go, as a resource the alert sensor takes."""

from pathlib import Path

import dagster as dg
from pydantic import Field

ALERTS_FILE = "alerts.jsonl"


class AlertsResource(dg.ConfigurableResource):
    """A JSONL file of alerts, and a webhook when one is configured."""

    alerts_dir: str = Field(description="Folder of alerts.jsonl ($MDP_DATA_DIR/alerts).")
    webhook_url: str | None = Field(
        default=None,
        description="MDP_ALERT_WEBHOOK_URL (e.g. a Slack incoming webhook); it usually embeds "
        "a token, so it is an EnvVar and never logged.",
    )

    def path(self) -> Path:
        return Path(self.alerts_dir) / ALERTS_FILE


def alerts_resource_from_settings() -> AlertsResource:
    from my_data_platform.settings import get_settings

    s = get_settings()
    return AlertsResource(
        alerts_dir=str(s.alerts_dir), webhook_url=s.secret("MDP_ALERT_WEBHOOK_URL")
    )


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"alerts": alerts_resource_from_settings()})
