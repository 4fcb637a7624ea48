"""Log-derived activity features, engagement labels and point-in-time-correct training examples.

Every function builds a Polars ``LazyFrame``; ``collect(lf, engine)`` runs it on the CPU or the
GPU. A feature "as of ``t``" sees exactly the events with ``ts <= t``. The design notes are in
``docs/features.md``.
"""

from my_data_platform.core.features.activity import activity_features
from my_data_platform.core.features.config import (
    ENGAGEMENT_KINDS,
    EVENT_KINDS,
    FEATURE_COLUMNS,
    LABEL_STATUSES,
    STATIC_COLUMNS,
    FeatureConfig,
    activity_feature_columns,
    feature_columns,
)
from my_data_platform.core.features.engine import ENGINES, collect, gpu_available, resolve_engine
from my_data_platform.core.features.examples import online_features, training_examples
from my_data_platform.core.features.labels import labels

__all__ = [
    "ENGAGEMENT_KINDS",
    "ENGINES",
    "EVENT_KINDS",
    "FEATURE_COLUMNS",
    "LABEL_STATUSES",
    "STATIC_COLUMNS",
    "FeatureConfig",
    "activity_feature_columns",
    "activity_features",
    "collect",
    "feature_columns",
    "gpu_available",
    "labels",
    "online_features",
    "resolve_engine",
    "training_examples",
]
