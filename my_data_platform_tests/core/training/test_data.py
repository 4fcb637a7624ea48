"""The feature matrix: standardised with train-split statistics only."""

from __future__ import annotations

import numpy as np
import polars as pl

from my_data_platform.core import features as F
from my_data_platform.core import training as T


def test_tabular_matrix_uses_train_stats(data: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    df = data[0]
    x, stats = T.tabular_matrix(df)
    tr = (df["split"] == "train").to_numpy()
    assert x.dtype == np.float32 and x.shape == (df.height, len(F.FEATURE_COLUMNS))
    np.testing.assert_allclose(x[tr].mean(axis=0), 0.0, atol=1e-4)
    assert stats["log1p"][stats["columns"].index("photo_views_24h")]
    assert not stats["log1p"][stats["columns"].index("upload_hour")]
    x2, _ = T.tabular_matrix(df.filter(pl.col("split") == "test"), stats=stats)
    np.testing.assert_array_equal(x2, x[(df["split"] == "test").to_numpy()])
