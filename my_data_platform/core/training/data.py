"""The examples a model reads: one dataset commit, its splits and the feature matrix."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from my_data_platform.core import features as F

EXAMPLES = "examples.parquet"
EMBEDDING_COLUMN = "caption_embedding"
SPLITS = ("train", "validation", "test")
EVAL_SPLITS = ("validation", "test")
# Heavy-tailed, non-negative counts: log1p keeps one viral author from dominating the scale.
_COUNT_RE = re.compile(
    r"(_(views|likes|comments|shares|unique_users)_\d+h$)|(^photo_mean_dwell_ms_)"
    r"|(^author_follower_count$)|(^author_tenure_days$)|(^caption_length$)|(^photo_age_hours$)"
)


def load_dataset(vs: Any, commit_id: str) -> pl.DataFrame:
    """``examples.parquet`` as it was at ``commit_id`` (a commit, never a moving branch)."""
    return pl.read_parquet(io.BytesIO(vs.get_object(commit_id, EXAMPLES)))


def labelled(df: pl.DataFrame) -> pl.DataFrame:
    """The rows that have a label (the newest photos have none yet)."""
    return df.filter(pl.col("label").is_not_null())


def split_mask(df: pl.DataFrame, split: str) -> np.ndarray:
    """A boolean mask of the rows in ``split``."""
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
        fit = x[split_mask(df, "train")] if "split" in df.columns else x
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


def embedding_dim(df: pl.DataFrame) -> int:
    """The caption embedding's width (0 when the frame has none)."""
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
