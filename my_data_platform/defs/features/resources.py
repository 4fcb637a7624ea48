"""Feature settings as a resource: label definition, prediction delay and the engine."""

import dagster as dg

from my_data_platform.core.features import FeatureConfig


class FeatureSettings(dg.ConfigurableResource):
    """``MDP_LABEL_WINDOW_HOURS``, ``MDP_LABEL_MIN_ENGAGEMENT``, ``MDP_PREDICTION_DELAY_HOURS``
    and ``MDP_FEATURE_ENGINE`` (auto, cpu, gpu), read once by the settings module."""

    engine: str = "auto"
    label_window_hours: int = 24
    label_min_engagement: int = FeatureConfig.label_min_engagement
    prediction_delay_hours: float = 1.0

    def config(self) -> FeatureConfig:
        return FeatureConfig(
            label_window_hours=self.label_window_hours,
            label_min_engagement=self.label_min_engagement,
            prediction_delay_hours=self.prediction_delay_hours,
        )


def feature_settings_from_settings() -> FeatureSettings:
    from my_data_platform.settings import get_settings

    s = get_settings()
    return FeatureSettings(
        engine=s.feature_engine,
        label_window_hours=s.label_window_hours,
        label_min_engagement=(
            s.label_min_engagement
            if s.label_min_engagement is not None
            else FeatureConfig.label_min_engagement
        ),
        prediction_delay_hours=s.prediction_delay_hours,
    )
