"""Training the popularity model from one exact dataset version (pure Python + PyTorch).

Why this module looks the way it does:

* **Read by commit id.** :func:`load_dataset` takes a commit id, never a branch: a model is only
  reproducible when the data it saw can be read again byte for byte.
* **Deterministic on CPU.** A seed fixes the weights' init, the batch order (a seeded
  generator, not the global RNG) and the kernels (``torch.use_deterministic_algorithms``), with
  a fixed thread count, so the same commit + config + seed gives the same weights and metrics.
  :func:`reproduce` retrains from a manifest and lets a test (or an auditor) check that.
* **Honest yardsticks.** Every model number comes with two baselines computed on the same
  splits (an author prior and a logistic regression) and an *oracle* that ranks by the
  generator's hidden popularity score: the gap model -> oracle is what is left to learn.
* **Train-split statistics only.** Standardisation stats come from the train split and are
  stored with the checkpoint, so serving transforms features exactly like training did.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import math
import platform
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from my_data_platform.core import features as F

EXAMPLES = "examples.parquet"
EMBEDDING_COLUMN = "caption_embedding"
SPLITS = ("train", "validation", "test")
EVAL_SPLITS = ("validation", "test")
CHECKPOINT_FORMAT = 1
_EPS = 1e-7
# Heavy-tailed, non-negative counts: log1p keeps one viral author from dominating the scale.
_COUNT_RE = re.compile(
    r"(_(views|likes|comments|shares|unique_users)_\d+h$)|(^photo_mean_dwell_ms_)"
    r"|(^author_follower_count$)|(^author_tenure_days$)|(^caption_length$)|(^photo_age_hours$)"
)


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


# ---------------------------------------------------------------------------------------------
# Data


def load_dataset(vs: Any, commit_id: str) -> pl.DataFrame:
    """``examples.parquet`` as it was at ``commit_id`` (a commit, never a moving branch)."""
    return pl.read_parquet(io.BytesIO(vs.get_object(commit_id, EXAMPLES)))


def _labelled(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(pl.col("label").is_not_null())


def _split_mask(df: pl.DataFrame, split: str) -> np.ndarray:
    return (df["split"].cast(pl.String) == split).fill_null(False).to_numpy()


def default_feature_columns(df: pl.DataFrame) -> list[str]:
    """The numeric columns a model may use: the feature set plus image-classifier outputs."""
    cols = [c for c in F.FEATURE_COLUMNS if c in df.columns]
    extra = sorted(c for c in df.columns if c.startswith("prob_"))
    if "confidence" in df.columns:
        extra.insert(0, "confidence")
    return cols + extra


def tabular_matrix(
    df: pl.DataFrame,
    columns: Sequence[str] | None = None,
    stats: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Standardised float32 feature matrix and the stats that produced it.

    Without ``stats`` they are fitted on the train split (all rows if there is no ``split``
    column); pass them back in to transform validation/test/serving data identically. Count
    columns get ``log1p`` first; missing values become the train mean (0 after scaling).
    """
    if stats is not None:
        columns = list(stats["columns"])
    elif columns is None:
        columns = default_feature_columns(df)
    columns = list(columns)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"feature columns missing from the frame: {missing}")
    x = (
        df.select(pl.col(c).cast(pl.Float64) for c in columns).to_numpy().astype(np.float64)
        if columns
        else np.zeros((df.height, 0))
    )
    if stats is None:
        log1p = [bool(_COUNT_RE.search(c)) for c in columns]
    else:
        log1p = [bool(b) for b in stats["log1p"]]
    lmask = np.asarray(log1p, dtype=bool)
    if lmask.any():
        x[:, lmask] = np.log1p(np.clip(x[:, lmask], 0.0, None))
    if stats is None:
        fit = x[_split_mask(df, "train")] if "split" in df.columns else x
        if fit.shape[0] == 0:
            raise ValueError("no train rows to fit the standardisation on")
        with np.errstate(all="ignore"), contextlib.suppress(RuntimeWarning):
            mean = np.nanmean(fit, axis=0) if fit.size else np.zeros(len(columns))
            std = np.nanstd(fit, axis=0) if fit.size else np.ones(len(columns))
        mean = np.nan_to_num(mean, nan=0.0)
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        stats = {
            "columns": columns,
            "log1p": log1p,
            "mean": [float(v) for v in mean],
            "std": [float(v) for v in std],
        }
    z = (x - np.asarray(stats["mean"])) / np.asarray(stats["std"])
    z = np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
    return z.astype(np.float32), dict(stats)


def _embedding_matrix(df: pl.DataFrame, dim: int) -> np.ndarray:
    """``caption_embedding`` as an (n, dim) float32 matrix; photos without one get zeros."""
    if EMBEDDING_COLUMN not in df.columns:
        raise ValueError(f"model expects a {dim}-d {EMBEDDING_COLUMN!r} column")
    arr = df[EMBEDDING_COLUMN].cast(pl.Array(pl.Float32, dim)).to_numpy()
    return np.nan_to_num(np.asarray(arr, dtype=np.float32), nan=0.0)


def _embedding_dim(df: pl.DataFrame) -> int:
    if EMBEDDING_COLUMN not in df.columns:
        return 0
    col = df[EMBEDDING_COLUMN]
    if isinstance(col.dtype, pl.Array):
        return int(col.dtype.size)
    lens = col.list.len().drop_nulls()
    return int(lens.max()) if lens.len() else 0  # type: ignore[arg-type]


def model_inputs(df: pl.DataFrame, stats: Mapping[str, Any]) -> np.ndarray:
    """Everything the network sees: standardised tabular features (+ the caption embedding)."""
    x, _ = tabular_matrix(df, stats=stats)
    dim = int(stats.get("embedding_dim", 0))
    if dim:
        x = np.concatenate([x, _embedding_matrix(df, dim)], axis=1)
    return x


# ---------------------------------------------------------------------------------------------
# Metrics


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean binary cross-entropy, probabilities clipped to [1e-7, 1 - 1e-7]."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _bins(p: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum((np.clip(p, 0.0, 1.0) * bins).astype(np.int64), bins - 1)


def calibration_curve(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Reliability diagram data: per equal-width probability bin (non-empty only), the mean
    prediction next to the observed positive rate. A calibrated model lies on the diagonal."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    idx = _bins(p, bins)
    n = np.bincount(idx, minlength=bins)
    sp = np.bincount(idx, weights=p, minlength=bins)
    sy = np.bincount(idx, weights=y, minlength=bins)
    return [
        {
            "bin": b,
            "lower": b / bins,
            "upper": (b + 1) / bins,
            "n": int(n[b]),
            "mean_predicted": float(sp[b] / n[b]),
            "fraction_positive": float(sy[b] / n[b]),
        }
        for b in range(bins)
        if n[b]
    ]


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE: the bin-size-weighted mean |observed rate - mean prediction| over 10 equal bins."""
    total = len(np.asarray(y))
    if not total:
        return float("nan")
    return float(
        sum(
            c["n"] / total * abs(c["fraction_positive"] - c["mean_predicted"])
            for c in calibration_curve(y, p, bins)
        )
    )


def roc_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """ROC AUC, or None when the split holds one class only (AUC is undefined there)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return None
    return float(roc_auc_score(y, p))


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """The numbers reported for every scorer and split."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if not len(y):
        return {"n": 0}
    return {
        "roc_auc": roc_auc(y, p),
        "log_loss": log_loss(y, p),
        "brier": float(np.mean((p - y) ** 2)),
        "ece": expected_calibration_error(y, p),
        "n": len(y),
        "positive_rate": float(y.mean()),
    }


def _per_split(df: pl.DataFrame, p: np.ndarray) -> dict[str, dict[str, Any]]:
    y = df["label"].to_numpy().astype(np.float64)
    out = {}
    for split in EVAL_SPLITS:
        m = _split_mask(df, split)
        out[split] = binary_metrics(y[m], p[m])
    return out


# ---------------------------------------------------------------------------------------------
# Model


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
    ``metrics`` = ``{"validation", "test", "curve", "best_epoch", "seconds", "stats"}``.
    """
    config = config or TrainConfig()
    t0 = time.perf_counter()
    df = _labelled(df)
    _, stats = tabular_matrix(df)
    dim = _embedding_dim(df) if config.use_embeddings else 0
    stats["embedding_dim"] = dim
    x = model_inputs(df, stats)
    y = df["label"].to_numpy().astype(np.float32)
    tr, va = _split_mask(df, "train"), _split_mask(df, "validation")
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
        **_per_split(df, p),
        "curve": curve,
        "best_epoch": best[1],
        "seconds": time.perf_counter() - t0,
    }
    return model, metrics


def predict(model: nn.Module, df: pl.DataFrame, stats: Mapping[str, Any]) -> np.ndarray:
    """P(popular) per row of ``df``, transformed with the stats saved at training time."""
    device = next(model.parameters()).device
    return _probs(model, model_inputs(df, stats), str(device))


# ---------------------------------------------------------------------------------------------
# Baselines and oracle


def _platt(score_train: np.ndarray, y_train: np.ndarray) -> Any:
    """Map a raw score to a probability with a 1-d logistic fit on train: ranking (AUC) is
    untouched, while log loss / Brier / ECE become comparable with the model's."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y_train)) < 2:
        rate = float(np.mean(y_train)) if len(y_train) else 0.5
        return lambda s: np.full(len(s), rate)
    mu, sd = float(np.mean(score_train)), float(np.std(score_train)) or 1.0
    lr = LogisticRegression().fit(((score_train - mu) / sd)[:, None], y_train)
    return lambda s: lr.predict_proba(((np.asarray(s) - mu) / sd)[:, None])[:, 1]


def _scored(df: pl.DataFrame, score: np.ndarray) -> dict[str, dict[str, Any]]:
    y = df["label"].to_numpy().astype(np.float64)
    tr = _split_mask(df, "train")
    return _per_split(df, _platt(score[tr], y[tr])(score))


AUTHOR_ENGAGEMENT = ("author_likes_672h", "author_comments_672h", "author_shares_672h")


def baselines(df: pl.DataFrame) -> dict[str, Any]:
    """Two yardsticks on the same splits as the model.

    ``author_prior``: splits are author-disjoint, so a per-author train positive rate would
    never apply to a validation/test author. The prior instead uses what *is* known about any
    author at prediction time: ``log1p`` of the engagement (likes + comments + shares) their
    photos received in the trailing 672 h, i.e. the author's recent audience -- the label is
    engagement volume, so this is the natural "popular authors make popular photos" prior
    (falls back to follower count when those columns are absent). It is Platt-calibrated on
    train. ``logistic_regression``: sklearn on the standardised tabular features.
    """
    from sklearn.linear_model import LogisticRegression

    df = _labelled(df)
    y = df["label"].to_numpy().astype(np.float64)
    tr = _split_mask(df, "train")
    cols = [c for c in AUTHOR_ENGAGEMENT if c in df.columns] or ["author_follower_count"]
    raw = df.select(pl.sum_horizontal(pl.col(c).cast(pl.Float64).fill_null(0) for c in cols))
    prior = np.log1p(np.clip(raw.to_series().to_numpy(), 0.0, None))
    out: dict[str, Any] = {"author_prior": {**_scored(df, prior), "score": "+".join(cols)}}

    x, _ = tabular_matrix(df)
    if len(np.unique(y[tr])) < 2:
        p = np.full(len(y), float(y[tr].mean()))
    else:
        lr = LogisticRegression(max_iter=2000).fit(x[tr], y[tr])
        p = lr.predict_proba(x)[:, 1]
    out["logistic_regression"] = _per_split(df, p)
    return out


def oracle(df: pl.DataFrame, ground_truth_photos: pl.DataFrame) -> dict[str, Any]:
    """The best achievable ranking: score = the generator's hidden ``latent_score`` (log of
    ``expected_rate``, the same order). Photos without ground truth (real data) are dropped
    and ``coverage`` says how many matched."""
    df = _labelled(df)
    score_col = "latent_score" if "latent_score" in ground_truth_photos.columns else None
    if score_col is None and "expected_rate" not in ground_truth_photos.columns:
        raise ValueError("ground truth needs latent_score or expected_rate")
    gt = ground_truth_photos.select(
        "photo_id",
        (pl.col(score_col) if score_col else pl.col("expected_rate").log())
        .cast(pl.Float64)
        .alias("_oracle_score"),
    ).unique("photo_id", keep="first")
    joined = df.select("photo_id", "split", "label").join(gt, on="photo_id", how="inner")
    joined = joined.filter(pl.col("_oracle_score").is_not_null())
    out: dict[str, Any] = _scored(joined, joined["_oracle_score"].to_numpy())
    out["score"] = score_col or "log(expected_rate)"
    out["coverage"] = joined.height / df.height if df.height else 0.0
    return out


# ---------------------------------------------------------------------------------------------
# Checkpoints, manifests and reproduction


def save_checkpoint(model: PopularityMLP, stats: Mapping[str, Any], config: TrainConfig) -> bytes:
    """Serialise to bytes holding only tensors and plain containers, so
    ``torch.load(weights_only=True)`` can read it (no pickled code runs on load)."""
    buf = io.BytesIO()
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "n_inputs": int(model.n_inputs),
            "hidden": list(model.hidden),
            "stats": dict(stats),
            "config": config.to_dict(),
        },
        buf,
    )
    return buf.getvalue()


def load_checkpoint(data: bytes) -> tuple[PopularityMLP, dict[str, Any], TrainConfig]:
    """Inverse of :func:`save_checkpoint`; the model comes back on CPU in eval mode."""
    ck = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if ck.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"unsupported checkpoint format {ck.get('format')!r}")
    model = PopularityMLP(int(ck["n_inputs"]), ck["hidden"])
    model.load_state_dict(ck["state_dict"])
    model.eval()
    stats = dict(ck["stats"])
    model.stats = stats  # type: ignore[assignment]
    return model, stats, TrainConfig.from_dict(ck["config"])


def library_versions() -> dict[str, str]:
    """Versions that can change numbers; recorded so a reproduction can be judged fairly."""
    import sklearn

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "polars": pl.__version__,
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
    }


def build_manifest(
    *,
    dataset_commit: str,
    code_version: str,
    config: TrainConfig,
    device: str,
    metrics: Mapping[str, Any],
    baselines: Mapping[str, Any],
    oracle: Mapping[str, Any] | None,
    checkpoint_uri: str,
    library_versions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The provenance record stored next to the checkpoint: enough to retrain the same model
    (:func:`reproduce`) and to judge it against its yardsticks."""
    versions = dict(library_versions) if library_versions is not None else _lib_versions()
    return {
        "kind": "popularity_model",
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "dataset_commit": dataset_commit,
        "dataset_object": EXAMPLES,
        "code_version": code_version,
        "seed": config.seed,
        "device": device,
        "config": config.to_dict(),
        "metrics": {k: v for k, v in metrics.items() if k != "stats"},
        "baselines": dict(baselines),
        "oracle": dict(oracle) if oracle is not None else None,
        "checkpoint_uri": checkpoint_uri,
        "library_versions": versions,
    }


_lib_versions = library_versions


def reproduce(vs: Any, manifest: Mapping[str, Any], device: str | None = None) -> dict[str, Any]:
    """Retrain from a manifest (dataset commit + config + seed) and return the new metrics.

    ``device`` overrides the recorded one (e.g. a GPU-trained model re-checked on CPU; then
    expect small differences). Compare with :func:`metrics_max_diff`.
    """
    config = TrainConfig.from_dict(manifest["config"])
    if device is not None:
        config = dataclasses.replace(config, device=device)
    df = load_dataset(vs, manifest["dataset_commit"])
    _, metrics = train_popularity_model(df, config)
    return metrics


def metrics_max_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """Largest absolute difference between two runs' validation/test numbers."""
    worst = 0.0
    for split in EVAL_SPLITS:
        for k, va in a.get(split, {}).items():
            vb = b.get(split, {}).get(k)
            if va is None or vb is None:
                if va is not vb:
                    return math.inf
                continue
            worst = max(worst, abs(float(va) - float(vb)))
    return worst


# ---------------------------------------------------------------------------------------------
# Plots


def _series(data: Sequence[Mapping[str, Any]]) -> tuple[str, str, list[tuple[str, list, list]]]:
    if data and "epoch" in data[0]:
        xs = [float(d["epoch"]) for d in data]
        lines = [
            (k, xs, [float(d[k]) for d in data])
            for k in ("train_loss", "val_loss")
            if all(d.get(k) is not None for d in data)
        ]
        return "epoch", "log loss", lines
    xs = [float(d["mean_predicted"]) for d in data]
    return (
        "mean predicted",
        "fraction positive",
        [
            ("diagonal", [0.0, 1.0], [0.0, 1.0]),
            ("model", xs, [d["fraction_positive"] for d in data]),
        ],
    )


def plot_png(data: Sequence[Mapping[str, Any]], title: str = "") -> bytes | None:
    """A PNG of a training curve (``curve`` rows) or a reliability diagram
    (:func:`calibration_curve` rows) for asset metadata. Uses matplotlib when installed,
    else a plain Pillow drawing; ``None`` when neither is available."""
    xlabel, ylabel, lines = _series(data)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
        for name, xs, ys in lines:
            ax.plot(xs, ys, marker="o" if name == "model" else None, label=name)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        ax.legend()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        plt.close(fig)
        return buf.getvalue()
    except ImportError:
        pass
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return None
    w, h, m = 480, 320, 40
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    allx = [v for _, xs, _ in lines for v in xs] or [0.0, 1.0]
    ally = [float(v) for _, _, ys in lines for v in ys] or [0.0, 1.0]
    x0, x1 = min(allx), max(allx) if max(allx) > min(allx) else min(allx) + 1
    y0, y1 = min(ally), max(ally) if max(ally) > min(ally) else min(ally) + 1

    def to_px(x: float, y: float) -> tuple[float, float]:
        return m + (x - x0) / (x1 - x0) * (w - 2 * m), h - m - (y - y0) / (y1 - y0) * (h - 2 * m)

    draw.rectangle((m, m, w - m, h - m), outline="black")
    draw.text((m, 8), title or f"{ylabel} vs {xlabel}", fill="black")
    draw.text((m, h - m + 8), f"{xlabel} [{x0:.3g}, {x1:.3g}]", fill="black")
    draw.text((w - m - 150, h - m + 8), f"{ylabel} [{y0:.3g}, {y1:.3g}]", fill="black")
    colors = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]
    for i, (name, xs, ys) in enumerate(lines):
        color = colors[i % len(colors)]
        pts = [to_px(float(a), float(b)) for a, b in zip(xs, ys, strict=True)]
        if len(pts) > 1:
            draw.line(pts, fill=color, width=2)
        draw.text((w - m - 120, m + 4 + 12 * i), name, fill=color)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
