"""Benchmark of the embedded version store (``core.versioning.local``), default settings.

What is committed, as the ``datasets/popularity`` asset will: a training dataset of
``--examples`` rows (features, label, split, image key and sha256) as one Parquet file per
split, plus ``--images`` image objects. The images are stored as their own small objects (the
bytes, ~2-4 KiB each, random so they do not compress): the costly case, one object per image,
rather than a single manifest file.

Figures:

* ``commit``: staging all objects (``put_objects``) and the commit, in seconds, with the bytes
  written to disk (apparent size of every file the store created) vs the logical data size;
* ``recommit``: the same dataset again with 1% of the images changed, on a new branch: content
  addressing stores only the changed objects, so the bytes written are small;
* ``branch_create``: median seconds to create a branch at three dataset sizes: it writes one
  small ref file whatever the size (zero copy), so the times should be flat.

The store runs with ``durable=True`` (the default: one filesystem sync per commit). The last
line of output is one JSON object.

    .venv/bin/python benchmarks/versioning.py [--examples 100000 --images 10000]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from my_data_platform.core.versioning import LocalVersionStore


def dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def make_images(n: int, rng: np.random.Generator) -> dict[str, bytes]:
    sizes = rng.integers(2048, 4096, size=n)
    blob = rng.bytes(int(sizes.sum()))
    out, pos = {}, 0
    for i, size in enumerate(sizes.tolist()):
        out[f"images/{i // 1000:03d}/{i:07d}.jpg"] = blob[pos : pos + size]
        pos += size
    return out


def make_dataset(n: int, image_keys: list[str], rng: np.random.Generator) -> dict[str, bytes]:
    """One Parquet file per split, like the dataset the pipeline publishes."""
    df = pl.DataFrame(
        {
            "photo_id": np.arange(n, dtype=np.int64),
            "user_id": rng.integers(0, n // 10 + 1, size=n),
            **{f"f{j:02d}": rng.standard_normal(n).astype(np.float32) for j in range(16)},
            "caption_len": rng.integers(0, 280, size=n).astype(np.int32),
            "label": rng.random(n) < 0.2,
            "split": rng.choice(
                np.array(["train", "validation", "test"]), size=n, p=[0.8, 0.1, 0.1]
            ),
            "image_key": np.array(image_keys)[np.arange(n) % len(image_keys)],
        }
    )
    files = {}
    for (split,), part in df.group_by(["split"], maintain_order=True):
        buf = io.BytesIO()
        part.drop("split").write_parquet(buf, compression="zstd")
        files[f"tables/{split}.parquet"] = buf.getvalue()
    return files


def timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def branch_create_seconds(store: LocalVersionStore, label: str, repeats: int) -> float:
    times = []
    for i in range(repeats):
        t, _ = timed(lambda i=i: store.create_branch(f"bench-{label}-{i}", "main"))
        times.append(t)
    return statistics.median(times)


def branch_create_both(store: LocalVersionStore, label: str, repeats: int) -> dict[str, float]:
    """Durable (fsync of the ref file and its folder) and without fsync, which isolates the
    store's own work from the disk's flush latency."""
    nosync = LocalVersionStore(store.root, store.repository, durable=False)
    return {
        "seconds": branch_create_seconds(store, label, repeats),
        "seconds_nosync": branch_create_seconds(nosync, label + "-nosync", repeats),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--examples", type=int, default=100_000)
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=25, help="branch creations per size")
    ap.add_argument("--dir", type=Path, default=None, help="where to build (default: a temp dir)")
    args = ap.parse_args()

    rng = np.random.default_rng(7)
    images = make_images(args.images, rng)
    tables = make_dataset(args.examples, list(images), rng)
    logical = sum(map(len, images.values())) + sum(map(len, tables.values()))

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        store = LocalVersionStore(root, "datasets")
        store.create_repository()
        before = dir_bytes(root)

        # the write-audit-publish shape: write on a run branch, commit, merge into main
        store.create_branch("run-1", "main")
        t_tables, _ = timed(lambda: store.put_objects("run-1", tables))
        t_images, _ = timed(lambda: store.put_objects("run-1", images))
        t_commit, c1 = timed(
            lambda: store.commit("run-1", "dataset v1", {"examples": str(args.examples)})
        )
        t_merge, _ = timed(lambda: store.merge("run-1", "main"))
        written = dir_bytes(root) - before
        total = t_tables + t_images + t_commit

        # a re-publish with 1% of the images changed: only those are stored again
        changed = {k: v[::-1] for k, v in list(images.items())[: max(1, args.images // 100)]}
        before2 = dir_bytes(root)
        store.create_branch("run-2", "main")
        t2_put, _ = timed(lambda: store.put_objects("run-2", {**tables, **images, **changed}))
        t2_commit, _ = timed(lambda: store.commit("run-2", "dataset v2"))
        written2 = dir_bytes(root) - before2

        # branch creation at three sizes: tiny, a tenth, the full dataset
        sizes: dict[str, dict[str, float]] = {}
        for label, n_img in (("small", 10), ("medium", args.images // 10)):
            s = LocalVersionStore(root, f"size-{label}")
            s.create_repository()
            s.put_objects("main", dict(list(images.items())[:n_img]))
            s.commit("main", label)
            sizes[label] = {
                "objects": n_img,
                "bytes": sum(e.size for e in s.list_objects("main")),
                **branch_create_both(s, label, args.repeats),
            }
        sizes["large"] = {
            "objects": len(store.list_objects("main")),
            "bytes": sum(e.size for e in store.list_objects("main")),
            **branch_create_both(store, "large", args.repeats),
        }
        problems = store.check_consistency(verify_content=False)

    result = {
        "benchmark": "versioning_embedded",
        "examples": args.examples,
        "images": args.images,
        "images_stored_as": "one object per image (image bytes, 2-4 KiB each)",
        "tables_files": len(tables),
        "tables_bytes": sum(map(len, tables.values())),
        "logical_bytes": logical,
        "commit": {
            "stage_tables_s": round(t_tables, 3),
            "stage_images_s": round(t_images, 3),
            "commit_s": round(t_commit, 3),
            "total_s": round(total, 3),
            "merge_into_main_s": round(t_merge, 4),
            "bytes_written": written,
            "objects_per_s": round((len(images) + len(tables)) / total),
        },
        "recommit_1pct_changed": {
            "stage_s": round(t2_put, 3),
            "commit_s": round(t2_commit, 3),
            "bytes_written": written2,
        },
        "branch_create_s": {k: round(v["seconds"], 6) for k, v in sizes.items()},
        "branch_create_nosync_s": {k: round(v["seconds_nosync"], 6) for k, v in sizes.items()},
        "branch_create_sizes": {
            k: {"objects": int(v["objects"]), "bytes": int(v["bytes"])} for k, v in sizes.items()
        },
        "consistency_problems": len(problems),
        "commit_id": c1.id,
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 1),
    }
    print(
        f"dataset: {args.examples} examples in {len(tables)} Parquet files "
        f"({result['tables_bytes'] / 1e6:.1f} MB) + {args.images} image objects "
        f"({(logical - result['tables_bytes']) / 1e6:.1f} MB)"
    )
    print(
        f"commit:  staged+committed in {total:.2f}s "
        f"(tables {t_tables:.2f}s, images {t_images:.2f}s, commit {t_commit:.3f}s), "
        f"{written / 1e6:.1f} MB written for {logical / 1e6:.1f} MB of data"
    )
    print(
        f"recommit with 1% images changed: {t2_put + t2_commit:.2f}s, "
        f"{written2 / 1e6:.2f} MB written"
    )
    for k, v in sizes.items():
        print(
            f"branch create ({k:6s}: {int(v['objects']):6d} objects, "
            f"{v['bytes'] / 1e6:8.1f} MB): {v['seconds'] * 1e3:.2f} ms "
            f"({v['seconds_nosync'] * 1e3:.3f} ms without fsync)"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
