"""Checkpoints load without running code; a manifest retrains the same model."""

from __future__ import annotations

import io

import numpy as np
import polars as pl
import torch

from my_data_platform.core import training as T
from my_data_platform.core.versioning import LocalVersionStore
from my_data_platform_tests.core.training.conftest import FAST


def test_checkpoint_roundtrip(
    data: tuple[pl.DataFrame, pl.DataFrame], trained: tuple[T.PopularityMLP, dict]
) -> None:
    model, _ = trained
    blob = T.save_checkpoint(model, model.stats, FAST)
    torch.load(io.BytesIO(blob), weights_only=True)  # safe to load without trusting code
    loaded, stats, config = T.load_checkpoint(blob)
    assert config == FAST and stats == model.stats
    df = data[0]
    np.testing.assert_array_equal(T.predict(loaded, df, stats), T.predict(model, df, model.stats))
    # rows without an embedding still score
    p = T.predict(loaded, df.head(3).with_columns(caption_embedding=None), stats)
    assert p.shape == (3,) and np.all((p > 0) & (p < 1))


def test_reproduce_from_manifest(
    tmp_path, data: tuple[pl.DataFrame, pl.DataFrame], trained: tuple[T.PopularityMLP, dict]
) -> None:
    df, truth = data
    vs = LocalVersionStore(tmp_path / "vs", "datasets", durable=False)
    vs.create_repository()
    buf = io.BytesIO()
    df.write_parquet(buf)
    vs.put_object("main", T.EXAMPLES, buf.getvalue())
    commit = vs.commit("main", "dataset v1").id
    # a later commit on main must not leak into the reproduction
    vs.put_object("main", T.EXAMPLES, b"not parquet")
    vs.commit("main", "broken v2")

    loaded = T.load_dataset(vs, commit)
    assert loaded.equals(df)
    _, metrics = trained
    manifest = T.build_manifest(
        dataset_commit=commit,
        code_version="test",
        config=FAST,
        device="cpu",
        metrics=metrics,
        baselines=T.baselines(df),
        oracle=T.oracle(df, truth),
        checkpoint_uri="memory://model.pt",
    )
    assert manifest["seed"] == FAST.seed and manifest["dataset_commit"] == commit
    assert {"torch", "polars", "numpy", "sklearn", "python"} <= set(manifest["library_versions"])
    again = T.reproduce(vs, manifest)
    assert T.metrics_max_diff(metrics, again) <= 1e-6
