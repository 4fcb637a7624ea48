"""Training: determinism, yardsticks, checkpoints and reproduction from a dataset commit."""

from __future__ import annotations

import io
import math

import numpy as np
import polars as pl
import pytest
import torch

from my_data_platform.core import features as F
from my_data_platform.core import training as T
from my_data_platform.core.versioning import LocalVersionStore

FAST = T.TrainConfig(seed=3, epochs=12, batch_size=128, hidden=(32, 16))


def _synthetic(n: int = 1500, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Examples whose label depends on a hidden score built from a few features + noise, and
    the matching ground truth (``latent_score``) for the oracle."""
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    for c in F.FEATURE_COLUMNS:
        cols[c] = rng.poisson(rng.gamma(2.0, 5.0, n)).astype(np.int64)
    follower = rng.lognormal(4.0, 1.0, n)
    cols["author_follower_count"] = follower.astype(np.int64)
    cols["photo_likes_24h"] = rng.poisson(1 + follower / 40).astype(np.int64)
    quality = rng.normal(size=n)
    latent = 0.8 * np.log1p(follower) + 1.2 * quality + 0.3 * np.log1p(cols["photo_likes_24h"])
    latent = latent - latent.mean()
    label = (latent + rng.normal(scale=0.8, size=n) > 0.3).astype(np.int8)
    emb = rng.normal(scale=0.05, size=(n, 384)).astype(np.float32)
    emb[:, 0] += 0.5 * quality.astype(np.float32)  # the caption carries part of the quality
    author = rng.integers(0, 300, n)
    split = np.array(T.SPLITS)[np.searchsorted([0.7, 0.85], (author * 7919 % 300) / 300.0)]
    df = pl.DataFrame(
        {
            "photo_id": np.arange(n, dtype=np.int64),
            "author_id": author,
            "label": label,
            "split": split,
            **cols,
            "caption_embedding": pl.Series(emb.tolist(), dtype=pl.List(pl.Float32)),
        }
    )
    truth = pl.DataFrame({"photo_id": np.arange(n, dtype=np.int64), "latent_score": latent})
    return df, truth.with_columns(expected_rate=pl.col("latent_score").exp())


@pytest.fixture(scope="module")
def data() -> tuple[pl.DataFrame, pl.DataFrame]:
    return _synthetic()


@pytest.fixture(scope="module")
def trained(data: tuple[pl.DataFrame, pl.DataFrame]) -> tuple[T.PopularityMLP, dict]:
    return T.train_popularity_model(data[0], FAST)


def _in_unit(m: dict) -> None:
    for split in ("validation", "test"):
        for k in ("roc_auc", "log_loss", "brier", "ece", "positive_rate"):
            v = m[split][k]
            assert v is not None and math.isfinite(v), (split, k, v)
            if k != "log_loss":
                assert 0.0 <= v <= 1.0, (split, k, v)
        assert m[split]["n"] > 0


def test_metrics_by_hand() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.6, 0.6])
    want = -(math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.4)) / 4
    assert T.log_loss(y, p) == pytest.approx(want, abs=1e-12)
    # bins: 0.2 -> bin 2 (|0 - 0.2| * 1/4); 0.6, 0.6 -> bin 6 (rate 0.5, mean 0.6: 0.1 * 2/4);
    # 0.9 -> bin 9 (|1 - 0.9| * 1/4)
    assert T.expected_calibration_error(y, p) == pytest.approx(0.05 + 0.05 + 0.025, abs=1e-12)
    m = T.binary_metrics(y, p)
    assert m["brier"] == pytest.approx((0.01 + 0.04 + 0.16 + 0.36) / 4)
    assert m["roc_auc"] == pytest.approx(0.875)  # 3.5 of 4 positive/negative pairs ordered
    curve = T.calibration_curve(y, p)
    assert [c["bin"] for c in curve] == [2, 6, 9] and sum(c["n"] for c in curve) == 4
    assert T.log_loss(np.array([1]), np.array([0.0])) == pytest.approx(-math.log(1e-7))
    assert T.roc_auc(np.array([1, 1]), np.array([0.1, 0.2])) is None


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


def test_training_is_deterministic_and_beats_constant(
    data: tuple[pl.DataFrame, pl.DataFrame], trained: tuple[T.PopularityMLP, dict]
) -> None:
    model, m = trained
    model2, m2 = T.train_popularity_model(data[0], FAST)
    assert T.metrics_max_diff(m, m2) <= 1e-9
    assert m["curve"] == m2["curve"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, model2.state_dict()[k]), k
    _in_unit(m)
    assert m["test"]["roc_auc"] > 0.75  # a constant scores 0.5
    assert {"epoch", "train_loss", "val_loss", "val_auc"} <= set(m["curve"][0])
    assert m["seconds"] > 0 and 1 <= m["best_epoch"] <= FAST.epochs
    # a different seed gives a different model (the seed really is used)
    other, _ = T.train_popularity_model(data[0], T.TrainConfig(**{**FAST.to_dict(), "seed": 4}))
    assert not torch.equal(other.net[0].weight, model.net[0].weight)


def test_baselines_and_oracle(data: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    df, truth = data
    b = T.baselines(df)
    _in_unit(b["author_prior"])
    _in_unit(b["logistic_regression"])
    o = T.oracle(df, truth)
    _in_unit(o)
    assert o["coverage"] == 1.0
    assert o["test"]["roc_auc"] > b["logistic_regression"]["test"]["roc_auc"]
    # expected_rate alone ranks the same as latent_score
    o2 = T.oracle(df, truth.drop("latent_score"))
    assert o2["test"]["roc_auc"] == pytest.approx(o["test"]["roc_auc"])


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


def test_plots(trained: tuple[T.PopularityMLP, dict], data: tuple[pl.DataFrame, pl.DataFrame]):
    model, m = trained
    df = data[0]
    cal = T.calibration_curve(df["label"].to_numpy(), T.predict(model, df, model.stats))
    for rows in (m["curve"], cal):
        png = T.plot_png(rows, title="t")
        if png is not None:
            assert png.startswith(b"\x89PNG")


def test_no_embeddings_config(data: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    cfg = T.TrainConfig(seed=1, epochs=3, use_embeddings=False, hidden=(8,))
    model, m = T.train_popularity_model(data[0].drop("caption_embedding"), cfg)
    assert model.n_inputs == len(F.FEATURE_COLUMNS) and model.stats["embedding_dim"] == 0
    assert m["test"]["n"] > 0


def test_tensor_batches_cover_every_row_once_in_seeded_order() -> None:
    import torch

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
