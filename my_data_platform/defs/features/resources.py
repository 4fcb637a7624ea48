"""Feature settings (label definition, prediction delay, engine) and the generator's hidden
truth as resources, registered by this domain."""

from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

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


class GroundTruthResource(dg.ConfigurableResource):
    """What the generator of a synthetic world knows and the pipeline cannot observe: the image
    classifier trains on its image classes, and the popularity model is scored against its
    oracle. Absent on real data."""

    ground_truth_dir: str = Field(
        description="The generator's hidden truth (default $MDP_DATA_DIR/ground_truth)."
    )

    def photos_path(self) -> Path:
        return Path(self.ground_truth_dir) / "photos.parquet"

    def photos(self, columns: list[str] | None = None) -> pl.DataFrame | None:
        """The generator's per-photo truth, or ``None`` when there is none (real data)."""
        path = self.photos_path()
        return pl.read_parquet(path, columns=columns) if path.exists() else None


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


@dg.definitions
def resources() -> dg.Definitions:
    """Settings are read when Dagster loads the code location, never at import time."""
    from my_data_platform.settings import get_settings

    return dg.Definitions(
        resources={
            "feature_settings": feature_settings_from_settings(),
            "ground_truth": GroundTruthResource(
                ground_truth_dir=str(get_settings().ground_truth_dir)
            ),
        }
    )
