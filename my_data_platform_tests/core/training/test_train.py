"""Training: deterministic per seed, better than a constant, and a seeded batch loader."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from my_data_platform.core import features as F
from my_data_platform.core import training as T
from my_data_platform_tests.core.training.conftest import FAST, in_unit


def test_training_is_deterministic_and_beats_constant(
    data: tuple[pl.DataFrame, pl.DataFrame], trained: tuple[T.PopularityMLP, dict]
) -> None:
    model, m = trained
    model2, m2 = T.train_popularity_model(data[0], FAST)
    assert T.metrics_max_diff(m, m2) <= 1e-9
    assert m["curve"] == m2["curve"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, model2.state_dict()[k]), k
    in_unit(m)
    assert m["test"]["roc_auc"] > 0.75  # a constant scores 0.5
    assert {"epoch", "train_loss", "val_loss", "val_auc"} <= set(m["curve"][0])
    assert m["seconds"] > 0 and 1 <= m["best_epoch"] <= FAST.epochs
    # a different seed gives a different model (the seed really is used)
    other, _ = T.train_popularity_model(data[0], T.TrainConfig(**{**FAST.to_dict(), "seed": 4}))
    assert not torch.equal(other.net[0].weight, model.net[0].weight)


def test_no_embeddings_config(data: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    cfg = T.TrainConfig(seed=1, epochs=3, use_embeddings=False, hidden=(8,))
    model, m = T.train_popularity_model(data[0].drop("caption_embedding"), cfg)
    assert model.n_inputs == len(F.FEATURE_COLUMNS) and model.stats["embedding_dim"] == 0
    assert m["test"]["n"] > 0


def test_tensor_batches_cover_every_row_once_in_seeded_order() -> None:
    from my_data_platform.core.training import TensorBatches

    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10, dtype=np.float32)
    a = TensorBatches(x, y, 4, torch.Generator().manual_seed(3))
    b = TensorBatches(x, y, 4, torch.Generator().manual_seed(3))
    assert len(a) == 3
    first = [yb.tolist() for _, yb in a]
    assert [len(r) for r in first] == [4, 4, 2]
    assert sorted(v for r in first for v in r) == list(range(10))
    assert first == [yb.tolist() for _, yb in b]  # same seed, same order
    second = [yb.tolist() for _, yb in a]  # the next epoch is a new permutation
    assert second != first and sorted(v for r in second for v in r) == list(range(10))
    for xb, yb in a:  # features stay aligned with their labels
        assert torch.equal(xb[:, 0], yb * 2)
    with pytest.raises(ValueError, match="batch_size"):
        TensorBatches(x, y, 0, torch.Generator())
