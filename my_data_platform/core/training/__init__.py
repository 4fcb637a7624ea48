"""Training the popularity model from one exact dataset version (see docs/training.md).

Submodules: ``data`` (examples and the feature matrix), ``metrics``, ``train`` (model and
loop), ``baselines`` (yardsticks and oracle), ``checkpoints`` (manifests, reproduction) and
``plots``. The names below are the package's public interface.
"""

from my_data_platform.core.training.baselines import AUTHOR_ENGAGEMENT, baselines, oracle
from my_data_platform.core.training.checkpoints import (
    CHECKPOINT_FORMAT,
    build_manifest,
    library_versions,
    load_checkpoint,
    reproduce,
    save_checkpoint,
)
from my_data_platform.core.training.data import (
    EMBEDDING_COLUMN,
    EVAL_SPLITS,
    EXAMPLES,
    SPLITS,
    default_feature_columns,
    load_dataset,
    model_inputs,
    tabular_matrix,
)
from my_data_platform.core.training.metrics import (
    binary_metrics,
    calibration_curve,
    expected_calibration_error,
    log_loss,
    metrics_max_diff,
    roc_auc,
)
from my_data_platform.core.training.plots import plot_png
from my_data_platform.core.training.train import (
    PopularityMLP,
    TensorBatches,
    TrainConfig,
    predict,
    train_popularity_model,
)

__all__ = [
    "AUTHOR_ENGAGEMENT",
    "CHECKPOINT_FORMAT",
    "EMBEDDING_COLUMN",
    "EVAL_SPLITS",
    "EXAMPLES",
    "SPLITS",
    "PopularityMLP",
    "TensorBatches",
    "TrainConfig",
    "baselines",
    "binary_metrics",
    "build_manifest",
    "calibration_curve",
    "default_feature_columns",
    "expected_calibration_error",
    "library_versions",
    "load_checkpoint",
    "load_dataset",
    "log_loss",
    "metrics_max_diff",
    "model_inputs",
    "oracle",
    "plot_png",
    "predict",
    "reproduce",
    "roc_auc",
    "save_checkpoint",
    "tabular_matrix",
    "train_popularity_model",
]
