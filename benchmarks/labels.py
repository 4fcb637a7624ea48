"""Label efficiency: a self-supervised encoder + linear probe vs. today's from-scratch CNN.

Builds a demo-sized synthetic world (``WorldConfig``: 3000 photos by default), renders every
photo with the generator's own renderer (``synth.images.render_images``, with each photo's
hidden class and quality) and round-trips it through JPEG and ``image_model.decode_batch``,
as the platform sees it. A fixed, seeded ``--test-fraction`` of the photos is the test set;
the rest is the label pool. Then:

1. the contrastive encoder (``core.image_embeddings.train_encoder``) is trained ONCE on every
   photo, test photos included, without any label (that is the production setting: it sees
   every landed photo, and no label leaks);
2. for each ``n`` in ``--n-labels`` (``0`` = the whole pool) and each seed, ``n`` photos are
   drawn from the pool, and these are trained on the same ``n`` labels:
   (a) ``probe``: the linear probe on embeddings with ``--views`` augmented views per label;
   (b) ``probe_noaug``: the same without augmented views;
   (c) ``probe_nostd``: the same as (a) without standardising the embeddings first;
   (d) ``random_probe``: the same probe on an *untrained* encoder's features (is the
       self-supervised training worth its minute?);
   (e) ``cnn``: ``image_model.train_image_classifier`` (today's model) on the same labels,
       no validation/test split of its own, with at least ``--cnn-min-steps`` optimizer steps
       (5 epochs of 50 labels would be 5 steps: not a fair baseline);
3. all are scored on the same test set against the true classes.

Prints a table to stderr and ONE JSON line of raw figures (accuracies per n and seed,
seconds of the encoder, each probe and each CNN) on stdout.

    PYTHONPATH=. .venv/bin/python benchmarks/labels.py --photos 3000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

import numpy as np
import polars as pl
import torch

from my_data_platform.core import image_embeddings as ie
from my_data_platform.core import image_model as im
from my_data_platform.core.stats import wilson_bounds
from my_data_platform.synth.config import WorldConfig
from my_data_platform.synth.features_world import world_tables
from my_data_platform.synth.images import encode_jpeg, render_images
from my_data_platform.synth.population import CLASSES


def world_images(photos: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Decoded 64 px pixels and true class indices of a world's photos, and the seconds."""
    t0 = time.perf_counter()
    table, _ = world_tables(WorldConfig(photos=photos, seed=seed))
    rng = np.random.default_rng(seed)
    cls = table["image_class"].to_numpy()
    pixels = render_images(rng, cls, table["quality"].to_numpy())
    images, ok = im.decode_batch([encode_jpeg(p) for p in pixels])
    assert ok.all()
    return images, cls, time.perf_counter() - t0


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float((probs.argmax(axis=1) == y).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--photos", type=int, default=3000)
    ap.add_argument("--world-seed", type=int, default=42)
    ap.add_argument("--test-fraction", type=float, default=0.2)
    ap.add_argument("--n-labels", type=int, nargs="+", default=[50, 100, 200, 0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=ie.DEFAULT_EPOCHS)
    ap.add_argument("--dim", type=int, default=ie.DEFAULT_DIM)
    ap.add_argument("--temperature", type=float, default=ie.DEFAULT_TEMPERATURE)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--cnn-min-steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    images, y, gen_s = world_images(args.photos, args.world_seed)
    n = len(images)
    print(f"{n} photos rendered+decoded in {gen_s:.1f}s", file=sys.stderr)
    perm = np.random.default_rng(12345).permutation(n)
    n_test = math.floor(n * args.test_fraction)
    test, pool = perm[:n_test], perm[n_test:]

    encoder, enc_m = ie.train_encoder(
        images, seed=0, epochs=args.epochs, dim=args.dim, temperature=args.temperature,
        num_threads=args.threads,
    )  # fmt: skip
    print(
        f"encoder: {enc_m['seconds']:.1f}s for {n} photos x {args.epochs} epochs, "
        f"loss {enc_m['loss_curve'][0]:.3f} -> {enc_m['loss_curve'][-1]:.3f}",
        file=sys.stderr,
    )
    t0 = time.perf_counter()
    z = ie.embed(encoder, images)
    embed_s = time.perf_counter() - t0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        random_encoder = ie.ImageEncoder(args.dim).eval()
    z_random = ie.embed(random_encoder, images)

    rows: list[dict[str, Any]] = []
    for n_labels in args.n_labels:
        size = len(pool) if n_labels <= 0 else min(n_labels, len(pool))
        for seed in args.seeds:
            sub = np.random.default_rng(1000 + seed).choice(pool, size, replace=False)
            row: dict[str, Any] = {"n_labels": size, "seed": seed}
            for name, enc, emb, views, standardize in (
                ("probe", encoder, z, args.views, True),
                ("probe_noaug", encoder, z, 0, True),
                ("probe_nostd", encoder, z, args.views, False),
                ("random_probe", random_encoder, z_random, args.views, True),
            ):
                probe, pm = ie.train_probe(
                    enc, images[sub], y[sub], CLASSES, seed=seed, views=views,
                    test_fraction=0.0, embeddings=emb[sub], num_threads=args.threads,
                    standardize=standardize,
                )  # fmt: skip
                row[name] = accuracy(ie.predict_probe(probe, emb[test]), y[test])
                row[f"{name}_s"] = pm["seconds"]
            epochs = max(im.DEFAULT_EPOCHS, math.ceil(args.cnn_min_steps / math.ceil(size / 128)))
            cnn, cm = im.train_image_classifier(
                images[sub], y[sub], seed=seed, epochs=epochs, val_fraction=0.0,
                test_fraction=0.0, num_threads=args.threads,
            )  # fmt: skip
            row["cnn"] = accuracy(im.predict(cnn, images[test]), y[test])
            row["cnn_s"], row["cnn_epochs"] = cm["seconds"], epochs
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)

    frame = pl.DataFrame(rows)
    table = frame.group_by("n_labels", maintain_order=True).agg(
        *(
            pl.col(c).mean().round(4)
            for c in ("probe", "probe_noaug", "probe_nostd", "random_probe", "cnn")
        ),
        pl.col("probe_s").mean().round(2),
        pl.col("cnn_s").mean().round(2),
        pl.col("cnn_epochs").first(),
    )
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200):
        print(f"test set: {n_test} photos (chance {1 / len(CLASSES):.3f})", file=sys.stderr)
        print(table, file=sys.stderr)
    best = frame.filter(pl.col("n_labels") == frame["n_labels"].min())
    lo, hi = wilson_bounds(round(float(best["probe"].mean()) * n_test), n_test)
    report = {
        "photos": n,
        "n_test": n_test,
        "n_pool": len(pool),
        "encoder_seconds": round(enc_m["seconds"], 2),
        "encoder_epochs": args.epochs,
        "encoder_loss_curve": [round(v, 4) for v in enc_m["loss_curve"]],
        "dim": args.dim,
        "temperature": args.temperature,
        "views": args.views,
        "embed_seconds": round(embed_s, 2),
        "render_seconds": round(gen_s, 2),
        "smallest_n_probe_wilson": [round(lo, 4), round(hi, 4)],
        "rows": [
            {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows
        ],
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
