"""Feature settings (label definition, prediction delay, engine) and the generator's hidden
truth as resources, registered by this domain."""

from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from my_data_platform.core.features import FeatureConfig
from my_data_platform.core.synthetic_truth import PHOTOS_PARQUET, read_truth_frame
from my_data_platform.defs.lake.resources import ObjectStoreResource


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
    oracle. Absent on real data.

    It is read from the object store (``synthetic/truth/photos.parquet``, written by ``mdp
    seed``), so a step finds it on any worker. ``legacy_dir`` is the embedded profile's old
    local folder (``$MDP_DATA_DIR/ground_truth``), read only when the store has no truth: a
    world seeded before the move keeps its oracle on the one host it lives on."""

    object_store: ObjectStoreResource
    legacy_dir: str | None = Field(
        default=None,
        description="Embedded profile only: the pre-object-store truth folder, a fallback.",
    )

    def photos(self, columns: list[str] | None = None) -> pl.DataFrame | None:
        """The generator's per-photo truth, or ``None`` when there is none (real data)."""
        found = read_truth_frame(self.object_store.get_store(), PHOTOS_PARQUET, columns)
        if found is None and self.legacy_dir:
            found = read_truth_frame(Path(self.legacy_dir), PHOTOS_PARQUET, columns)
        return found


def ground_truth_resource_from_settings(
    object_store: ObjectStoreResource | None = None,
) -> GroundTruthResource:
    """The truth in the configured object store; the old local folder as a fallback only on
    the embedded (local object store) profile, where the store and that folder share a host."""
    from my_data_platform.defs.lake.resources import object_store_resource_from_settings
    from my_data_platform.settings import get_settings

    s = get_settings()
    return GroundTruthResource(
        object_store=object_store or object_store_resource_from_settings(),
        legacy_dir=str(s.ground_truth_dir) if s.object_store == "local" else None,
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


@dg.definitions
def resources() -> dg.Definitions:
    """Settings are read when Dagster loads the code location, never at import time."""
    return dg.Definitions(
        resources={
            "feature_settings": feature_settings_from_settings(),
            "ground_truth": ground_truth_resource_from_settings(),
        }
    )
