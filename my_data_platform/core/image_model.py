"""A small CNN that tells what a photo shows; its outputs become features of the popularity model.

Training is deterministic on the CPU for a given seed. Notes: ``docs/features.md``.
"""

from __future__ import annotations

import io
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.utils.deterministic
from PIL import Image
from torch import nn

from my_data_platform.core.image_classes import IMAGE_CLASSES

log = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = IMAGE_CLASSES
IMAGE_SIZE = 64
FORMAT_VERSION = 1
DEFAULT_EPOCHS = 5
DEFAULT_WIDTHS: tuple[int, ...] = (16, 32, 64)


# ---------------------------------------------------------------------------------------------
# decoding


def _decode_one(data: bytes, size: int) -> np.ndarray | None:
    """RGB pixels resized to ``size`` x ``size``, or None when the bytes are not a whole image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                # JPEG can decode straight at a reduced scale: big real photos stay cheap.
                img.draft("RGB", (size, size))
                rgb = img.convert("RGB")
                if rgb.size != (size, size):
                    rgb = rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
                return np.asarray(rgb, dtype=np.uint8)
    except Exception:  # any bad upload must become ok=False, never stop the batch
        return None


def decode_batch(
    datas: Sequence[bytes | None], size: int = IMAGE_SIZE, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Decode image files to uint8 ``(n, size, size, 3)`` pixels plus an ``ok`` mask.

    Undecodable inputs (truncated JPEGs, text, None) give zero pixels and ``ok = False``; this
    never raises, so one bad upload does not fail the whole photo table. Pillow releases the
    GIL while decoding, so a thread pool uses every core.
    """
    n = len(datas)
    pixels = np.zeros((n, size, size, 3), np.uint8)
    ok = np.zeros(n, dtype=bool)
    if n == 0:
        return pixels, ok
    workers = threads or min(8, os.cpu_count() or 1)

    def work(item: bytes | None) -> np.ndarray | None:
        return _decode_one(item, size) if isinstance(item, bytes | bytearray) else None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, arr in enumerate(pool.map(work, datas)):
            if arr is not None:
                pixels[i] = arr
                ok[i] = True
    return pixels, ok


# ---------------------------------------------------------------------------------------------
# the network


def conv_stack(widths: Sequence[int]) -> nn.Sequential:
    """Conv-BN-ReLU-pool blocks from 3 input channels to ``widths[-1]``; the first has
    stride 2 (a stride-2 stem quarters the cost; 64 px layouts survive at 32 px)."""
    layers: list[nn.Module] = []
    c_in = 3
    for i, w in enumerate(widths):
        layers += [
            nn.Conv2d(c_in, w, 3, stride=2 if i == 0 else 1, padding=1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        c_in = w
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """Conv blocks (conv-BN-ReLU-pool, the first with stride 2), global pooling, a linear head.

    About 25k parameters: enough for the six synthetic layouts, small enough to train in
    seconds on two CPU cores. The input is uint8-range NHWC; normalization is part of the
    model so that stored weights are self-contained.
    """

    def __init__(
        self,
        n_classes: int = len(CLASSES),
        widths: Sequence[int] = DEFAULT_WIDTHS,
        classes: Sequence[str] = CLASSES,
        image_size: int = IMAGE_SIZE,
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            "n_classes": int(n_classes),
            "widths": [int(w) for w in widths],
            "classes": [str(c) for c in classes],
            "image_size": int(image_size),
        }
        self.features = conv_stack(widths)
        self.head = nn.Linear(widths[-1], n_classes)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.config["classes"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for uint8 (or 0-255 float) NHWC images."""
        x = x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        x = self.features(x)
        return self.head(x.mean(dim=(2, 3)))


# ---------------------------------------------------------------------------------------------
# training


def pick_device(preferred: str = "auto") -> str:
    """``"cuda"`` when asked for (or "auto") and present, otherwise ``"cpu"``."""
    if preferred == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda" if preferred == "auto" else preferred
    if preferred != "auto":
        log.warning("device %r requested but CUDA is not available; using the CPU", preferred)
    return "cpu"


@contextmanager
def _reproducible(seed: int, num_threads: int | None) -> Iterator[None]:
    """Seed and pin torch for one training, then put the process-wide settings back."""
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    old_threads = torch.get_num_threads()
    old_cudnn = torch.backends.cudnn.benchmark
    old_fill = torch.utils.deterministic.fill_uninitialized_memory
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # warn_only: CUDA kernels without a deterministic variant warn instead of failing
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
            # NaN-filling fresh tensors is a debugging aid, not needed for determinism; it
            # made CPU training ~3x slower.
            torch.utils.deterministic.fill_uninitialized_memory = False
            if num_threads:
                torch.set_num_threads(num_threads)
            yield
    finally:
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.set_num_threads(old_threads)
        torch.backends.cudnn.benchmark = old_cudnn
        torch.utils.deterministic.fill_uninitialized_memory = old_fill


def _as_label_indices(labels: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype.kind in "OUS":
        mapping = {c: i for i, c in enumerate(classes)}
        idx = pl.Series(labels.astype(str)).replace_strict(mapping, return_dtype=pl.Int64)
        return idx.to_numpy()
    idx = labels.astype(np.int64)
    if len(idx) and (idx.min() < 0 or idx.max() >= len(classes)):
        raise ValueError(f"labels must be class indices in [0, {len(classes)})")
    return idx


def _split(
    n: int, val_fraction: float, test_fraction: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=gen)
    n_test = math.floor(n * test_fraction)
    n_val = math.floor(n * val_fraction)
    if n - n_test - n_val < 1:
        raise ValueError(f"{n} images leave nothing to train on")
    return perm[n_test + n_val :], perm[n_test : n_test + n_val], perm[:n_test]


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, batch_size: int, device: str) -> torch.Tensor:
    model.eval()
    parts = [
        model(x[i : i + batch_size].to(device, non_blocking=True)).float().cpu()
        for i in range(0, len(x), batch_size)
    ]
    if not parts:
        return torch.zeros((0, model.head.out_features))
    return torch.cat(parts)


def _accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: str
) -> float | None:
    if len(x) == 0:
        return None
    pred = _logits(model, x, batch_size, device).argmax(dim=1)
    return float((pred == y).float().mean())


def _warmup_cosine(total_steps: int) -> Callable[[int], float]:
    """LR factor: a short linear warm-up, then cosine decay (robust to tiny step counts)."""
    warmup = max(1, total_steps // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    return factor


def train_image_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int = 0,
    epochs: int = DEFAULT_EPOCHS,
    device: str = "cpu",
    val_fraction: float = 0.2,
    test_fraction: float = 0.1,
    batch_size: int = 128,
    lr: float = 5e-3,
    weight_decay: float = 1e-4,
    widths: Sequence[int] = DEFAULT_WIDTHS,
    num_threads: int | None = 2,
    classes: Sequence[str] = CLASSES,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train :class:`SmallCNN` on uint8 NHWC ``images`` and class ``labels`` (indices or names).

    The split (train/val/test), the weights and the batch order all come from ``seed``, and the
    kernels are deterministic, so two runs with the same inputs and seed on the CPU give
    identical weights and metrics. Horizontal flips are the only augmentation: every class's
    layout is left-right symmetric in meaning. Returns the model (in eval mode, on ``device``)
    and metrics for the asset's metadata: accuracies, split sizes, the per-epoch loss curve.
    """
    images = np.ascontiguousarray(images, dtype=np.uint8)
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"images must be (n, H, W, 3) uint8, got {images.shape}")
    y_all = torch.from_numpy(np.array(_as_label_indices(labels, classes), dtype=np.int64))
    if len(y_all) != len(images):
        raise ValueError("images and labels differ in length")
    x_all = torch.from_numpy(images)
    started = time.perf_counter()

    with _reproducible(seed, num_threads):
        gen = torch.Generator().manual_seed(seed)
        train_idx, val_idx, test_idx = _split(len(images), val_fraction, test_fraction, gen)
        x_tr, y_tr = x_all[train_idx], y_all[train_idx]
        model = SmallCNN(len(classes), widths, classes, images.shape[1]).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        steps_per_epoch = math.ceil(len(x_tr) / batch_size)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, _warmup_cosine(max(1, epochs * steps_per_epoch))
        )
        loss_fn = nn.CrossEntropyLoss()
        loss_curve: list[float] = []
        val_curve: list[float | None] = []
        for _epoch in range(epochs):
            model.train()
            order = torch.randperm(len(x_tr), generator=gen)
            flips = torch.rand(len(x_tr), generator=gen) < 0.5
            total, seen = 0.0, 0
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                xb = x_tr[idx]
                xb = torch.where(flips[idx, None, None, None], xb.flip(2), xb)
                xb, yb = xb.to(device), y_tr[idx].to(device)
                loss = loss_fn(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
            loss_curve.append(total / max(seen, 1))
            val_curve.append(_accuracy(model, x_all[val_idx], y_all[val_idx], 512, device))
            log.info("epoch %d: loss %.4f val_acc %s", _epoch + 1, loss_curve[-1], val_curve[-1])

        metrics: dict[str, Any] = {
            "train_accuracy": _accuracy(model, x_tr, y_tr, 512, device),
            "val_accuracy": val_curve[-1] if val_curve else None,
            "test_accuracy": _accuracy(model, x_all[test_idx], y_all[test_idx], 512, device),
            "n_train": len(train_idx),
            "n_val": len(val_idx),
            "n_test": len(test_idx),
            "epochs": epochs,
            "loss_curve": loss_curve,
            "val_accuracy_curve": val_curve,
            "seed": seed,
            "device": device,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "classes": list(classes),
            "n_parameters": sum(p.numel() for p in model.parameters()),
        }
    model.eval()
    metrics["seconds"] = time.perf_counter() - started
    log.info(
        "trained image classifier: test_acc %s, %.1fs", metrics["test_accuracy"], metrics["seconds"]
    )
    return model, metrics


# ---------------------------------------------------------------------------------------------
# inference and storage


def predict(
    model: nn.Module, images: np.ndarray, batch_size: int = 512, device: str = "cpu"
) -> np.ndarray:
    """Softmax class probabilities, float32 ``(n, n_classes)``, for uint8 NHWC images."""
    model = model.to(device)
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))
    return torch.softmax(_logits(model, x, batch_size, device), dim=1).numpy().astype(np.float32)


def predictions_frame(
    photo_ids: Sequence[int] | np.ndarray | pl.Series,
    probs: np.ndarray,
    ok_mask: np.ndarray,
    classes: Sequence[str] = CLASSES,
) -> pl.DataFrame:
    """One row per photo: predicted class, confidence and ``prob_<class>`` columns.

    Undecodable photos keep their row with nulls, so downstream joins see "no prediction"
    rather than a confident guess made from blank pixels.
    """
    probs = np.asarray(probs, dtype=np.float32).reshape(len(ok_mask), len(classes))
    ok = pl.Series("ok", np.asarray(ok_mask, dtype=bool))
    best = probs.argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
    frame = pl.DataFrame(
        {
            "photo_id": pl.Series(photo_ids, dtype=pl.Int64),
            "predicted_class": pl.Series(list(classes), dtype=pl.String).gather(best),
            "confidence": probs.max(axis=1) if len(probs) else np.zeros(0, np.float32),
            **{f"prob_{c}": probs[:, i] for i, c in enumerate(classes)},
        }
    )
    return (
        frame.with_columns(ok)
        .with_columns(
            pl.when(pl.col("ok")).then(pl.col(c)).otherwise(None).alias(c)
            for c in frame.columns
            if c != "photo_id"
        )
        .drop("ok")
    )


def save_model(model: nn.Module) -> bytes:
    """Weights plus the architecture config, as bytes for the object store."""
    if not isinstance(model, SmallCNN):
        raise TypeError(f"expected a SmallCNN, got {type(model).__name__}")
    buf = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"format_version": FORMAT_VERSION, "config": model.config, "state_dict": state}, buf)
    return buf.getvalue()


def load_model(data: bytes, device: str = "cpu") -> SmallCNN:
    """Rebuild a model saved by :func:`save_model` (``weights_only``: no pickled code runs)."""
    blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if blob.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"unsupported image model format {blob.get('format_version')!r}")
    cfg = blob["config"]
    model = SmallCNN(cfg["n_classes"], cfg["widths"], cfg["classes"], cfg["image_size"])
    model.load_state_dict(blob["state_dict"])
    return model.to(device).eval()
