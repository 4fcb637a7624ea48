"""The popularity model and its deterministic training loop (PyTorch)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from my_data_platform.core.training.data import (
    embedding_dim,
    labelled,
    model_inputs,
    split_mask,
    tabular_matrix,
)
from my_data_platform.core.training.metrics import log_loss, per_split, roc_auc


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters; everything that changes the trained weights is in here (plus data)."""

    seed: int = 0
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    hidden: tuple[int, ...] = (64, 32)
    use_embeddings: bool = True
    device: str = "cpu"
    patience: int = 8  # epochs without a better validation log loss before stopping; 0 = never

    def to_dict(self) -> dict[str, Any]:
        """JSON- and ``weights_only``-safe form (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are ignored so old manifests still load."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "hidden" in kw:
            kw["hidden"] = tuple(int(h) for h in kw["hidden"])
        return cls(**kw)


class PopularityMLP(nn.Module):
    """A small MLP emitting one logit: enough capacity for tabular + embedding inputs."""

    def __init__(self, n_inputs: int, hidden: Sequence[int] = (64, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = n_inputs
        for h in hidden:
            layers += [nn.Linear(prev, int(h)), nn.ReLU()]
            prev = int(h)
        layers.append(nn.Linear(prev, 1))
        self.net = nn.Sequential(*layers)
        self.n_inputs = n_inputs
        self.hidden = tuple(int(h) for h in hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


@contextlib.contextmanager
def _deterministic(seed: int, device: str) -> Iterator[None]:
    """Seed and pin torch for the duration of one training run, then restore global state
    (other code in the same process, e.g. the image model, must not inherit our settings)."""
    was_det = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    torch.manual_seed(seed)
    # CUDA has ops without deterministic kernels; warn there rather than fail the run.
    torch.use_deterministic_algorithms(True, warn_only=device != "cpu")
    torch.set_num_threads(2)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_det, warn_only=was_warn)
        torch.set_num_threads(threads)


def _probs(model: nn.Module, x: np.ndarray, device: str) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x).to(device))
    return torch.sigmoid(logits).double().cpu().numpy()


class TensorBatches:
    """The training loader: the split is one tensor on the device, and each epoch is a seeded
    permutation sliced into batches: no per-row Python, no collate, no worker processes.

    Rows were already turned into a matrix column-wise (:func:`model_inputs`), so a batch is
    one gather. The generator lives on the CPU, so batch order is the same on every device.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        generator: torch.Generator,
        device: str = "cpu",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x = torch.from_numpy(np.ascontiguousarray(x)).to(device)
        self.y = torch.from_numpy(np.ascontiguousarray(y)).to(device)
        self.n = len(self.y)
        self.batch_size = batch_size
        self.generator = generator
        self.device = device

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        perm = torch.randperm(self.n, generator=self.generator).to(self.device)
        for i in range(0, self.n, self.batch_size):
            b = perm[i : i + self.batch_size]
            yield self.x[b], self.y[b]


def train_popularity_model(
    df: pl.DataFrame, config: TrainConfig | None = None
) -> tuple[PopularityMLP, dict[str, Any]]:
    """Train on the train split, early-stop on validation log loss, report validation/test.

    Returns the model (with ``model.stats`` attached: the feature transform it needs) and
    ``metrics`` = ``{"validation", "test", "curve", "best_epoch", "seconds"}``.
    """
    config = config or TrainConfig()
    t0 = time.perf_counter()
    df = labelled(df)
    _, stats = tabular_matrix(df)
    dim = embedding_dim(df) if config.use_embeddings else 0
    stats["embedding_dim"] = dim
    x = model_inputs(df, stats)
    y = df["label"].to_numpy().astype(np.float32)
    tr, va = split_mask(df, "train"), split_mask(df, "validation")
    if not tr.any():
        raise ValueError("the dataset has no labelled train rows")
    device = config.device

    with _deterministic(config.seed, device):
        model = PopularityMLP(x.shape[1], config.hidden).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        loss_fn = nn.BCEWithLogitsLoss()
        loader = TensorBatches(
            x[tr], y[tr], config.batch_size, torch.Generator().manual_seed(config.seed), device
        )
        curve: list[dict[str, Any]] = []
        best = (math.inf, 0, {k: v.detach().clone() for k, v in model.state_dict().items()})
        for epoch in range(1, config.epochs + 1):
            model.train()
            total = 0.0
            for xb, yb in loader:
                opt.zero_grad()
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(yb)
            point: dict[str, Any] = {"epoch": epoch, "train_loss": total / loader.n}
            if va.any():
                pv = _probs(model, x[va], device)
                point["val_loss"] = log_loss(y[va], pv)
                point["val_auc"] = roc_auc(y[va], pv)
            else:
                point["val_loss"], point["val_auc"] = point["train_loss"], None
            curve.append(point)
            if point["val_loss"] < best[0]:
                state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                best = (point["val_loss"], epoch, state)
            elif config.patience and epoch - best[1] >= config.patience:
                break
        model.load_state_dict(best[2])
        p = _probs(model, x, device)

    model.stats = stats  # type: ignore[assignment]
    metrics: dict[str, Any] = {
        **per_split(df, p),
        "curve": curve,
        "best_epoch": best[1],
        "seconds": time.perf_counter() - t0,
    }
    return model, metrics


def predict(model: nn.Module, df: pl.DataFrame, stats: Mapping[str, Any]) -> np.ndarray:
    """P(popular) per row of ``df``, transformed with the stats saved at training time."""
    device = next(model.parameters()).device
    return _probs(model, model_inputs(df, stats), str(device))
