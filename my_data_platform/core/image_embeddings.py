"""Self-supervised photo embeddings, and a small probe that turns them into content classes.

Why: the content classifier used to be trained from scratch on labels the generator hands out
for free. Real photos come without labels; annotators will label only a few hundred. So the
representation is learnt from *every* landed photo without labels, and only a linear probe on
top of it needs labels. Changing the label set (it comes from a rulebook) then means
re-training a probe in seconds, not the encoder.

Encoder (:func:`train_encoder`): SimCLR-style contrastive learning (NT-Xent). Why contrastive
and not, say, an autoencoder: reconstruction spends its capacity on pixel detail (noise, exact
colours), while a contrastive loss keeps exactly what survives the augmentations (layout,
shapes, textures) and discards what they change; that is what a content class is made of.
It needs no decoder, and on 64 px images a small CNN with a batch of a few hundred views
is enough. Why these augmentations (all in torch, from one seeded ``torch.Generator``):

* random resized crop (area 0.6-1, aspect 3/4-4/3) + horizontal flip: one affine
  ``grid_sample`` per batch. The crop is the main "content" signal: two crops of a skyline
  must map together, so the net has to recognise the parts of a layout, not one position.
  Not smaller than 0.6: a 64 px layout cropped to a third (SimCLR's 0.08-0.35) loses the
  object that makes the class (the sun, the plate); measured, 0.35 -> 0.6 raised 50-label
  probe accuracy 0.993 -> 0.996. Flip because every class means the same mirrored.
* brightness, contrast and saturation jitter (+-40%), and random grayscale (p=0.2):
  without them, instance discrimination is solved by the colour histogram alone (halving
  the jitter lowered 50-label accuracy 0.986 -> 0.980). No hue shift: colour *is* part of
  the meaning of several classes here (an orange horizon, blue sea, green grass).
* Gaussian pixel noise: real uploads differ in sensor noise and JPEG artefacts; the
  representation should not depend on them.

Temperature 0.5 (SimCLR's choice for small batches; here batches are 256 photos): 0.2
gave 0.986 against 0.993 at 50 labels with the same epochs.

The backbone is a conv-BN-ReLU-pool stack like :class:`~my_data_platform.core.image_model
.SmallCNN` (stride-2 stem, so 64 px costs like 32 px) but wider (32-64-``dim``), plus a
2-layer projection head used only by the loss (SimCLR: the layer before the head transfers
better). :func:`embed` returns L2-normalised, globally pooled backbone features.

Training is deterministic on the CPU for a given seed (``image_model._reproducible``: same
seed and inputs, bit-identical weights). Cost is ``epochs * n_images * 2`` forward+backward
passes; on two CPU cores the default epoch count keeps a demo world (3000 photos) around a
minute or two. ``benchmarks/labels.py`` measures the whole trade-off against the
from-scratch CNN at 50/100/200/all labels.

Probe (:func:`train_probe`): multinomial logistic regression on the frozen embeddings,
fitted full-batch with L-BFGS (convex, deterministic, no learning rate to tune), weighted
by ``sample_weight`` (the annotators' consensus confidence). The embeddings are first
standardised with the training rows' per-feature mean and spread (stored in the probe):
L2-normalised ReLU features sit in a narrow cone, and without this one L2 penalty
over-shrinks the informative directions (benchmark, 50 labels: 0.962 -> 0.986 accuracy).
"With augmentation": each labelled training photo also contributes ``views`` augmented
copies (same augment function as the encoder, milder), embedded and added as extra rows
with the same label and weight; held-out rows are never augmented. Measured on the
synthetic world this is neutral (+-0.005 accuracy at 50-200 labels) and costs most of the
probe's seconds; ``views=0`` turns it off. Part of the labels (``test_fraction``,
stratified, only from classes with at least 5 labels so that no class loses its only
examples) is held out to measure accuracy, with ``n_correct`` and ``n`` reported so that
the caller can put a Wilson bound on it; then, by default, the probe is refit on all labels.

Storage: :func:`save_encoder` / :func:`save_probe` write ``torch.save`` blobs with a format
version and a config; loading uses ``weights_only=True`` so no pickled code runs. Encoder and
probe are stored separately on purpose: one encoder serves many probes (rulebook versions).
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from my_data_platform.core.image_model import _reproducible, _warmup_cosine, conv_stack

log = logging.getLogger(__name__)

ENCODER_FORMAT_VERSION = 1
PROBE_FORMAT_VERSION = 1
DEFAULT_DIM = 64
# 10 epochs: 65-75 s for 3000 photos on 2 idle CPU cores (150-210 s when shared), so a
# 6000-photo world stays near two minutes. 20 epochs reach the from-scratch CNN at 100
# labels too (0.996 vs 0.989) for twice the time; see benchmarks/labels.py.
DEFAULT_EPOCHS = 10
DEFAULT_WIDTHS: tuple[int, ...] = (32, 64)  # the last width is ``dim``
DEFAULT_TEMPERATURE = 0.5
DEFAULT_MIN_SCALE = 0.6
MIN_PER_CLASS_FOR_TEST = 5


# ---------------------------------------------------------------------------------------------
# augmentation


def augment(
    x: torch.Tensor,
    gen: torch.Generator,
    *,
    min_scale: float = 0.35,
    strength: float = 1.0,
) -> torch.Tensor:
    """Random views of a batch: float ``(n, 3, H, W)`` in [0, 1] in, same shape out.

    Every random number comes from ``gen`` (drawn in a fixed order, batch-wide), so a seed
    gives the same views. ``strength`` scales the colour jitter and noise (0 = geometry only).
    """
    n, _, h, w = x.shape
    if n == 0:
        return x
    # random resized crop + flip as one affine grid: scale s of the area, aspect ratio r
    area = torch.empty(n).uniform_(min_scale, 1.0, generator=gen)
    log_r = torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen)
    r = torch.exp(log_r)
    sx = torch.sqrt(area * r).clamp(max=1.0)
    sy = torch.sqrt(area / r).clamp(max=1.0)
    cx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - sx)
    cy = (torch.rand(n, generator=gen) * 2 - 1) * (1 - sy)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = sx * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = sy
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [n, 3, h, w], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    # colour: brightness, contrast, saturation, then grayscale for some, then noise
    def factor(spread: float) -> torch.Tensor:
        return 1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * spread * strength

    bright, contrast, sat = factor(0.4), factor(0.4), factor(0.4)
    gray_p = torch.rand(n, 1, 1, 1, generator=gen) < 0.2 * min(strength, 1.0)
    noise_sd = torch.rand(n, 1, 1, 1, generator=gen) * 0.05 * strength
    noise = torch.randn(out.shape, generator=gen)
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    out = out * bright
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * contrast + mean
    gray = (out * weights).sum(dim=1, keepdim=True)
    out = (out - gray) * sat + gray
    out = torch.where(gray_p, (out * weights).sum(dim=1, keepdim=True).expand_as(out), out)
    return (out + noise * noise_sd).clamp(0.0, 1.0)


def _to_float(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC to float NCHW in [0, 1]."""
    return x_uint8.permute(0, 3, 1, 2).float().div(255.0)


# ---------------------------------------------------------------------------------------------
# the encoder


class ImageEncoder(nn.Module):
    """Conv backbone (whose pooled, normalised output is the embedding) + projection head.

    The input is float NCHW in [0, 1] (what :func:`augment` returns); normalisation to
    [-1, 1] is part of the model so stored weights are self-contained.
    """

    def __init__(
        self,
        dim: int = DEFAULT_DIM,
        widths: Sequence[int] = DEFAULT_WIDTHS,
        proj_dim: int = 32,
        image_size: int = 64,
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            "dim": int(dim),
            "widths": [int(w) for w in widths],
            "proj_dim": int(proj_dim),
            "image_size": int(image_size),
        }
        self.features = conv_stack([*widths, dim])
        self.projector = nn.Sequential(
            nn.Linear(dim, dim, bias=False),
            nn.BatchNorm1d(dim),
            nn.ReLU(inplace=True),
            nn.Linear(dim, proj_dim),
        )

    @property
    def dim(self) -> int:
        return int(self.config["dim"])

    def backbone(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (not normalised), ``(n, dim)``."""
        return self.features(x.mul(2.0).sub(1.0)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The projection used by the contrastive loss."""
        return self.projector(self.backbone(x))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view must pick its partner out of the other 2n - 2 views."""
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"images must be (n, H, W, 3) uint8, got shape {images.shape}")
    return np.ascontiguousarray(images, dtype=np.uint8)


def train_encoder(
    images: np.ndarray,
    *,
    seed: int = 0,
    epochs: int = DEFAULT_EPOCHS,
    dim: int = DEFAULT_DIM,
    num_threads: int | None = 2,
    device: str = "cpu",
    batch_size: int = 256,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    temperature: float = DEFAULT_TEMPERATURE,
    widths: Sequence[int] = DEFAULT_WIDTHS,
    min_scale: float = DEFAULT_MIN_SCALE,
    colour_strength: float = 1.0,
) -> tuple[ImageEncoder, dict[str, Any]]:
    """Train :class:`ImageEncoder` on unlabelled uint8 NHWC ``images`` with NT-Xent.

    Weights, batch order and every augmentation come from ``seed``; on the CPU two runs give
    bit-identical weights. Needs at least 2 images (a contrastive batch needs negatives);
    a last batch of one image is dropped from that epoch (it has no negatives), which the
    seeded shuffle makes a different image each epoch. Returns the encoder in eval mode.
    """
    images = _check_images(images)
    if len(images) < 2:
        raise ValueError(f"contrastive training needs at least 2 images, got {len(images)}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    x_all = torch.from_numpy(images)
    started = time.perf_counter()
    with _reproducible(seed, num_threads):
        gen = torch.Generator().manual_seed(seed)
        model = ImageEncoder(dim, widths, image_size=images.shape[1]).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        steps_per_epoch = math.ceil(len(images) / batch_size)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_cosine(epochs * steps_per_epoch))
        loss_curve: list[float] = []
        model.train()
        for epoch in range(epochs):
            order = torch.randperm(len(images), generator=gen)
            total, seen = 0.0, 0
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                if len(idx) < 2:
                    continue
                xb = _to_float(x_all[idx])
                views = [
                    augment(xb, gen, min_scale=min_scale, strength=colour_strength).to(device)
                    for _ in range(2)
                ]
                v1, v2 = views
                z = model(torch.cat([v1, v2]))
                loss = nt_xent(z[: len(idx)], z[len(idx) :], temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
            loss_curve.append(total / max(seen, 1))
            log.info("ssl epoch %d: loss %.4f", epoch + 1, loss_curve[-1])
    model.eval()
    seconds = time.perf_counter() - started
    metrics: dict[str, Any] = {
        "loss_curve": loss_curve,
        "seconds": seconds,
        "n_images": len(images),
        "epochs": epochs,
        "dim": dim,
        "widths": list(widths),
        "batch_size": batch_size,
        "lr": lr,
        "temperature": temperature,
        "min_scale": min_scale,
        "colour_strength": colour_strength,
        "seed": seed,
        "device": device,
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
    log.info("trained image encoder on %d images: %.1fs", len(images), seconds)
    return model, metrics


@torch.no_grad()
def _embed_float(
    encoder: ImageEncoder, x: torch.Tensor, batch_size: int, device: str
) -> np.ndarray:
    encoder.eval()
    parts = [
        F.normalize(encoder.backbone(x[i : i + batch_size].to(device)).float(), dim=1).cpu()
        for i in range(0, len(x), batch_size)
    ]
    if not parts:
        return np.zeros((0, encoder.dim), np.float32)
    return torch.cat(parts).numpy().astype(np.float32)


def embed(
    encoder: ImageEncoder, images: np.ndarray, batch_size: int = 512, device: str = "cpu"
) -> np.ndarray:
    """L2-normalised backbone embeddings, float32 ``(n, dim)``, of uint8 NHWC images."""
    images = _check_images(images)
    encoder = encoder.to(device)
    x = torch.from_numpy(images)
    parts = [
        _embed_float(encoder, _to_float(x[i : i + batch_size]), batch_size, device)
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, encoder.dim), np.float32)


def _save_blob(model: nn.Module, config: dict[str, Any], version: int, what: str) -> bytes:
    """Kind, format version, config and CPU weights, as bytes for the object store."""
    buf = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(
        {"kind": what, "format_version": version, "config": config, "state_dict": state}, buf
    )
    return buf.getvalue()


def save_encoder(model: ImageEncoder) -> bytes:
    """Weights plus architecture config, as bytes for the object store."""
    if not isinstance(model, ImageEncoder):
        raise TypeError(f"expected an ImageEncoder, got {type(model).__name__}")
    return _save_blob(model, model.config, ENCODER_FORMAT_VERSION, "image encoder")


def _load_blob(data: bytes, expected_version: int, what: str) -> dict[str, Any]:
    """The stored dict, checked for its kind (``what``) and format version."""
    try:
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a zip, or pickled code refused by weights_only
        raise ValueError(f"not a stored {what}: {exc}") from exc
    if not isinstance(blob, dict) or blob.get("kind") != what:
        kind = blob.get("kind") if isinstance(blob, dict) else type(blob).__name__
        raise ValueError(f"not a stored {what}: it holds {kind!r}")
    if blob.get("format_version") != expected_version:
        raise ValueError(f"unsupported {what} format {blob.get('format_version')!r}")
    return blob


def load_encoder(data: bytes, device: str = "cpu") -> ImageEncoder:
    """Rebuild an encoder saved by :func:`save_encoder` (no pickled code runs)."""
    blob = _load_blob(data, ENCODER_FORMAT_VERSION, "image encoder")
    cfg = blob["config"]
    model = ImageEncoder(cfg["dim"], cfg["widths"], cfg["proj_dim"], cfg["image_size"])
    model.load_state_dict(blob["state_dict"])
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------
# the probe


class LinearProbe(nn.Module):
    """Multinomial logistic regression on embeddings; knows its label set."""

    def __init__(self, dim: int, classes: Sequence[str]) -> None:
        super().__init__()
        self.config: dict[str, Any] = {"dim": int(dim), "classes": [str(c) for c in classes]}
        # the training rows' per-feature mean and spread: standardised inputs make one L2
        # penalty fit every feature (normalised embeddings sit in a narrow cone)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.linear = nn.Linear(dim, len(classes))

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.config["classes"])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear((z - self.mean) / self.scale)


def _label_indices(labels: np.ndarray, classes: Sequence[str]) -> tuple[np.ndarray, dict[str, int]]:
    """Class indices, -1 where a label is not in ``classes`` (counted per label value)."""
    labels = np.asarray(labels)
    if labels.dtype.kind in "OUS":
        mapping = {c: i for i, c in enumerate(classes)}
        names = [None if v is None else str(v) for v in labels.tolist()]
        idx = np.array([mapping.get(v, -1) if v is not None else -1 for v in names], np.int64)
    else:
        if labels.dtype.kind == "f" and not np.isfinite(labels).all():
            raise ValueError("numeric labels must be finite class indices")
        idx = labels.astype(np.int64)
        idx = np.where((idx >= 0) & (idx < len(classes)), idx, -1)
        names = [str(v) for v in labels.tolist()]
    unknown: dict[str, int] = {}
    for i in np.flatnonzero(idx < 0):
        unknown[str(names[i])] = unknown.get(str(names[i]), 0) + 1
    return idx, unknown


def _stratified_holdout(
    y: np.ndarray, n_classes: int, test_fraction: float, gen: torch.Generator
) -> np.ndarray:
    """Boolean mask of held-out rows: ``test_fraction`` of each class with >= 5 labels."""
    test = np.zeros(len(y), bool)
    if test_fraction <= 0:
        return test
    for c in range(n_classes):
        rows = np.flatnonzero(y == c)
        if len(rows) < MIN_PER_CLASS_FOR_TEST:
            continue
        perm = torch.randperm(len(rows), generator=gen).numpy()
        test[rows[perm[: math.floor(len(rows) * test_fraction)]]] = True
    return test


def _fit_logistic(
    z: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    dim: int,
    classes: Sequence[str],
    l2: float,
    max_iter: int,
    standardize: bool,
) -> LinearProbe:
    """Weighted, L2-regularised multinomial logistic regression by full-batch L-BFGS."""
    probe = LinearProbe(dim, classes)
    if standardize:
        zt64 = torch.from_numpy(z).double()
        probe.mean.copy_(zt64.mean(dim=0).float())
        probe.scale.copy_(zt64.std(dim=0, correction=0).clamp(min=1e-2).float())
    nn.init.zeros_(probe.linear.weight)
    nn.init.zeros_(probe.linear.bias)
    zt, yt = torch.from_numpy(z), torch.from_numpy(y)
    wt = torch.from_numpy(w.astype(np.float32))
    wt = wt / wt.sum()
    opt = torch.optim.LBFGS(
        probe.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
        line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (F.cross_entropy(probe(zt), yt, reduction="none") * wt).sum()
        loss = loss + l2 * probe.linear.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return probe.eval()


def _augmented_rows(
    encoder: ImageEncoder,
    images: np.ndarray,
    rows: np.ndarray,
    views: int,
    gen: torch.Generator,
    device: str,
    batch_size: int = 512,
) -> np.ndarray:
    """Embeddings of ``views`` augmented copies of each ``rows`` image: ``(views*len, dim)``."""
    out = []
    x = torch.from_numpy(images[rows])
    for _ in range(views):
        for i in range(0, len(x), batch_size):
            xb = augment(_to_float(x[i : i + batch_size]), gen, min_scale=0.6, strength=0.5)
            out.append(_embed_float(encoder, xb, batch_size, device))
    return np.concatenate(out) if out else np.zeros((0, encoder.dim), np.float32)


def train_probe(
    encoder: ImageEncoder,
    images: np.ndarray,
    labels: np.ndarray | Sequence[str] | Sequence[int],
    classes: Sequence[str],
    *,
    seed: int = 0,
    views: int = 4,
    sample_weight: np.ndarray | None = None,
    test_fraction: float = 0.2,
    refit: bool = True,
    l2: float = 1e-3,
    max_iter: int = 200,
    standardize: bool = True,
    num_threads: int | None = 2,
    device: str = "cpu",
    embeddings: np.ndarray | None = None,
) -> tuple[LinearProbe, dict[str, Any]]:
    """Fit a :class:`LinearProbe` on the frozen embeddings of labelled photos.

    ``labels``: class names (or indices into ``classes``), one per image. Labels outside
    ``classes`` are set aside and counted in ``metrics["unknown_labels"]``; rows with weight
    0 are counted as ``n_zero_weight`` and do not train. ``sample_weight`` (e.g. consensus
    confidence in [0, 1]) scales each row's loss. ``embeddings`` may pass precomputed
    :func:`embed` output of ``images`` to save a pass.

    Held-out evaluation: a stratified ``test_fraction`` of each class with at least 5 labels;
    metrics ``held_out_accuracy`` (weighted by nothing: one photo one vote),
    ``held_out_n_correct`` and ``held_out_n`` (0 when too few labels: accuracy is None).
    With ``refit`` the returned probe is then refit on every usable label (the held-out
    figures describe the slightly smaller model, a conservative estimate). Tiny or one-class
    label sets train with what there is; the metrics say which classes had labels. Raises
    ValueError when no usable label is left.
    """
    images = _check_images(images)
    classes = [str(c) for c in classes]
    if not classes:
        raise ValueError("classes must name at least one class")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct, got {classes}")
    labels_arr = np.asarray(labels)
    if labels_arr.ndim != 1 or len(labels_arr) != len(images):
        raise ValueError(
            f"need one label per image: {len(labels_arr)} labels for {len(images)} images"
        )
    if sample_weight is None:
        weight = np.ones(len(images), np.float64)
    else:
        weight = np.asarray(sample_weight, np.float64)
        if weight.shape != (len(images),):
            raise ValueError(f"sample_weight must have shape ({len(images)},), got {weight.shape}")
        if not np.isfinite(weight).all() or (weight < 0).any():
            raise ValueError("sample_weight must be finite and >= 0")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    y_all, unknown = _label_indices(labels_arr, classes)
    usable = (y_all >= 0) & (weight > 0)
    if not usable.any():
        raise ValueError(
            f"no usable labels to train the probe on: {len(images)} labelled images, "
            f"{int((y_all < 0).sum())} with labels outside {classes}, "
            f"{int((weight <= 0).sum())} with zero weight"
        )
    started = time.perf_counter()
    with _reproducible(seed, num_threads):
        gen = torch.Generator().manual_seed(seed)
        encoder = encoder.to(device).eval()
        rows = np.flatnonzero(usable)
        if embeddings is None:
            z_rows = embed(encoder, images[rows], device=device)
        else:
            z_rows = np.asarray(embeddings, np.float32)[rows]
            if z_rows.shape[1] != encoder.dim:
                raise ValueError(f"embeddings have dim {z_rows.shape[1]}, encoder {encoder.dim}")
        y, w = y_all[rows], weight[rows]
        test = _stratified_holdout(y, len(classes), test_fraction, gen)

        def fit(train_mask: np.ndarray) -> LinearProbe:
            z_tr, y_tr, w_tr = z_rows[train_mask], y[train_mask], w[train_mask]
            if views > 0:
                z_aug = _augmented_rows(encoder, images, rows[train_mask], views, gen, device)
                z_tr = np.concatenate([z_tr, z_aug])
                y_tr = np.concatenate([y_tr, np.tile(y[train_mask], views)])
                w_tr = np.concatenate([w_tr, np.tile(w[train_mask], views)])
            return _fit_logistic(z_tr, y_tr, w_tr, encoder.dim, classes, l2, max_iter, standardize)

        probe = fit(~test)
        n_test = int(test.sum())
        n_correct = 0
        if n_test:
            pred = predict_probe(probe, z_rows[test]).argmax(axis=1)
            n_correct = int((pred == y[test]).sum())
        if refit and n_test:
            probe = fit(np.ones(len(y), bool))
    counts = np.bincount(y, minlength=len(classes))
    metrics: dict[str, Any] = {
        "held_out_accuracy": n_correct / n_test if n_test else None,
        "held_out_n_correct": n_correct,
        "held_out_n": n_test,
        "n_train": int(len(y) - n_test) if not refit else len(y),
        "n_labelled": len(images),
        "n_usable": len(y),
        "n_zero_weight": int(((y_all >= 0) & (weight <= 0)).sum()),
        "unknown_labels": unknown,
        "class_counts": {c: int(counts[i]) for i, c in enumerate(classes)},
        "held_out_class_counts": {c: int(np.sum(y[test] == i)) for i, c in enumerate(classes)},
        "classes_present": [c for i, c in enumerate(classes) if counts[i] > 0],
        "classes": classes,
        "views": views,
        "refit": refit,
        "l2": l2,
        "standardize": standardize,
        "seed": seed,
        "seconds": time.perf_counter() - started,
    }
    missing = [c for c in classes if metrics["class_counts"][c] == 0]
    if missing:
        log.warning("probe trained without any label for %s", missing)
    return probe, metrics


@torch.no_grad()
def predict_probe(probe: LinearProbe, embeddings: np.ndarray) -> np.ndarray:
    """Softmax class probabilities, float32 ``(n, n_classes)``, in ``probe.classes`` order."""
    z = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
    probe = probe.cpu().eval()
    if len(z) == 0:
        return np.zeros((0, len(probe.classes)), np.float32)
    return torch.softmax(probe(z), dim=1).numpy().astype(np.float32)


def save_probe(probe: LinearProbe) -> bytes:
    """Weights plus dim and label set, as bytes for the object store."""
    if not isinstance(probe, LinearProbe):
        raise TypeError(f"expected a LinearProbe, got {type(probe).__name__}")
    return _save_blob(probe, probe.config, PROBE_FORMAT_VERSION, "image probe")


def load_probe(data: bytes) -> LinearProbe:
    """Rebuild a probe saved by :func:`save_probe` (no pickled code runs)."""
    blob = _load_blob(data, PROBE_FORMAT_VERSION, "image probe")
    cfg = blob["config"]
    probe = LinearProbe(cfg["dim"], cfg["classes"])
    probe.load_state_dict(blob["state_dict"])
    return probe.eval()
