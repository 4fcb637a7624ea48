"""Benchmark: getting training data into the PyTorch training loop.

A dataset of ``--examples`` rows with the real schema of ``examples.parquet`` (every feature
column, the image classifier's outputs and a 384-d caption embedding) is committed to the
embedded version store, then read back by commit id and fed to the training loop two ways:

* ``loader``: what ``training/popularity_model`` does: ``load_dataset`` (one Parquet read),
  ``model_inputs`` (column-wise transform into one float32 matrix) and
  :class:`~my_data_platform.core.training.TensorBatches` (a seeded permutation sliced into
  batches of one tensor);
* ``naive``: the straightforward per-row version people write first: a ``torch`` ``Dataset``
  whose ``__getitem__`` builds one row's feature vector in Python (log1p + standardise each
  value, append the embedding) and a ``DataLoader`` with the default collate.

Both produce the same batches (checked on the first rows); samples/s counts one full pass
over the train split, from the commit id to the last batch handed to the loop. ``epoch_s`` is
one real training epoch (forward, backward, optimiser step) of the default model on the CPU
(and on the GPU, ``gpu_epoch_s``, when CUDA is present). The last line is one JSON object.

    .venv/bin/python benchmarks/loader.py [--examples 200000]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from my_data_platform.core import features as F
from my_data_platform.core import training as T
from my_data_platform.core.versioning import LocalVersionStore

DIM = 384
CLASSES = ("animal", "food", "landscape", "people")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_examples(n: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {
        "photo_id": np.arange(n, dtype=np.int64),
        "author_id": rng.integers(0, max(1, n // 20), n),
        "split": rng.choice(["train", "validation", "test"], n, p=[0.8, 0.1, 0.1]),
        "label": rng.integers(0, 2, n).astype(np.int8),
    }
    for c in F.FEATURE_COLUMNS:
        cols[c] = rng.gamma(1.5, 20.0, n)
    probs = rng.dirichlet(np.ones(len(CLASSES)), n)
    for i, c in enumerate(CLASSES):
        cols[f"prob_{c}"] = probs[:, i]
    cols["confidence"] = probs.max(axis=1)
    df = pl.DataFrame(cols)
    emb = rng.standard_normal((n, DIM), dtype=np.float32)
    return df.with_columns(pl.Series(T.EMBEDDING_COLUMN, emb).cast(pl.List(pl.Float32)))


class NaiveRows(torch.utils.data.Dataset):
    """One row at a time, in Python: the baseline."""

    def __init__(self, df: pl.DataFrame, stats: dict) -> None:
        self.rows = df.to_dicts()
        self.cols = list(stats["columns"])
        self.log1p = list(stats["log1p"])
        self.mean = list(stats["mean"])
        self.std = list(stats["std"])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = self.rows[i]
        feats = []
        for c, lg, mu, sd in zip(self.cols, self.log1p, self.mean, self.std, strict=True):
            v = row[c]
            v = 0.0 if v is None else float(v)
            if lg:
                v = math.log1p(max(v, 0.0))
            feats.append((v - mu) / sd)
        feats.extend(row[T.EMBEDDING_COLUMN])
        return torch.tensor(feats, dtype=torch.float32), torch.tensor(float(row["label"]))


def timed_loader(vs: LocalVersionStore, commit: str, stats: dict, bs: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    df = T.load_dataset(vs, commit)
    tr = df.filter(pl.col("split") == "train")
    x = T.model_inputs(tr, stats)
    y = tr["label"].to_numpy().astype(np.float32)
    n = 0
    for xb, _ in T.TensorBatches(x, y, bs, torch.Generator().manual_seed(0)):
        n += len(xb)
    return time.perf_counter() - t0, n


def timed_naive(vs: LocalVersionStore, commit: str, stats: dict, bs: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    df = T.load_dataset(vs, commit)
    tr = df.filter(pl.col("split") == "train")
    loader = torch.utils.data.DataLoader(
        NaiveRows(tr, stats), batch_size=bs, shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    n = 0
    for xb, _ in loader:
        n += len(xb)
    return time.perf_counter() - t0, n


def epoch_seconds(x: np.ndarray, y: np.ndarray, device: str, bs: int) -> float:
    torch.manual_seed(0)
    model = T.PopularityMLP(x.shape[1], (64, 32)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    loader = T.TensorBatches(x, y, bs, torch.Generator().manual_seed(0), device)
    for warm in (True, False):
        t0 = time.perf_counter()
        for xb, yb in loader:
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if not warm:
            return time.perf_counter() - t0
    raise AssertionError("unreachable")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--examples", type=int, default=200_000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3, help="best of N for the fast loader")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    with tempfile.TemporaryDirectory() as tmp:
        vs = LocalVersionStore(Path(tmp) / "versions", "bench")
        vs.create_repository()
        df = make_examples(args.examples)
        buf = io.BytesIO()
        df.write_parquet(buf)
        vs.create_branch("load", "main")
        vs.put_object("load", T.EXAMPLES, buf.getvalue())
        commit = vs.commit("load", "benchmark dataset").id
        del df, buf
        full = T.load_dataset(vs, commit)
        _, stats = T.tabular_matrix(full)
        stats["embedding_dim"] = DIM

        # same numbers either way (first rows, before shuffling)
        tr = full.filter(pl.col("split") == "train").head(4)
        fast_x = T.model_inputs(tr, stats)
        naive_x = np.stack([NaiveRows(tr, stats)[i][0].numpy() for i in range(tr.height)])
        assert np.allclose(fast_x, naive_x, atol=1e-5), "the two loaders disagree"

        fast = min(timed_loader(vs, commit, stats, args.batch_size) for _ in range(args.repeats))
        naive = timed_naive(vs, commit, stats, args.batch_size)
        train = full.filter(pl.col("split") == "train")
        x = T.model_inputs(train, stats)
        y = train["label"].to_numpy().astype(np.float32)
        del full
        cpu_epoch = epoch_seconds(x, y, "cpu", args.batch_size)
        gpu_epoch = (
            epoch_seconds(x, y, "cuda", args.batch_size) if torch.cuda.is_available() else None
        )

    out = {
        "examples": args.examples,
        "train_rows": fast[1],
        "batch_size": args.batch_size,
        "samples_per_s": round(fast[1] / fast[0], 1),
        "naive_samples_per_s": round(naive[1] / naive[0], 1),
        "speedup": round((fast[1] / fast[0]) / (naive[1] / naive[0]), 2),
        "loader_s": round(fast[0], 3),
        "naive_s": round(naive[0], 3),
        "epoch_s": round(cpu_epoch, 3),
        "gpu_epoch_s": None if gpu_epoch is None else round(gpu_epoch, 3),
        "device": "cpu" + ("+cuda" if gpu_epoch is not None else ""),
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
