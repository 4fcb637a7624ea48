"""Building and auditing a versioned training dataset (pure Python, no Dagster): examples with
author-disjoint splits, the images they reference and a dataset card (see docs/ml-assets.md)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from my_data_platform.core import features as F
from my_data_platform.core.stats import FloorJudgement, judge_rate_floor

EXAMPLES = "examples.parquet"
IMAGES = "images.parquet"
CARD = "README.md"
LABELS = "labels.json"
"""Which labels the targets and image features came from (model manifests copy it)."""
SPLITS = ("train", "validation", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
SPLIT_SALT = 0x9E3779B97F4A7C15  # change it and every split is reshuffled: bump deliberately
LABEL_BALANCE_BOUNDS = (0.02, 0.98)
_U64 = np.uint64


def _splitmix64(x: np.ndarray, salt: int) -> np.ndarray:
    """A fixed, platform-independent 64-bit mix: stable across library versions, unlike
    Polars' or DuckDB's ``hash``."""
    with np.errstate(over="ignore"):
        z = x.astype(_U64) + _U64(salt)
        z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
        return z ^ (z >> _U64(31))


def assign_splits(
    examples: pl.DataFrame,
    author_of: pl.DataFrame,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    salt: int = SPLIT_SALT,
) -> pl.DataFrame:
    """Add ``author_id`` and ``split`` (train/validation/test) to ``examples``."""
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    df = examples.join(
        author_of.select("photo_id", pl.col("user_id").alias("author_id")),
        on="photo_id",
        how="left",
    )
    if df["author_id"].null_count():
        raise ValueError(f"{df['author_id'].null_count()} examples have no known author")
    u = _splitmix64(df["author_id"].to_numpy(), salt).astype(np.float64) / 2.0**64
    edges = np.cumsum(fractions)
    idx = np.searchsorted(edges[:-1], u, side="right")
    return df.with_columns(
        split=pl.Series(np.array(SPLITS)[idx], dtype=pl.Enum(list(SPLITS)))
    ).sort("photo_id")


def _parquet(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    # fixed settings so the same rows give the same bytes (and the same content address)
    df.write_parquet(buf, compression="zstd", compression_level=3, statistics=False)
    return buf.getvalue()


def split_counts(df: pl.DataFrame) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for split in SPLITS:
        part = df.filter(pl.col("split") == split)
        out[split] = {
            "examples": part.height,
            "authors": part["author_id"].n_unique() if part.height else 0,
            "positive_rate": round(float(part["label"].mean() or 0.0), 4) if part.height else 0.0,
        }
    return out


def label_balance_png(counts: Mapping[str, Mapping[str, float]]) -> bytes | None:
    """A stacked bar chart of positive / negative examples per split (PNG), for metadata;
    ``None`` when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    splits = list(counts)
    pos = [counts[s]["examples"] * counts[s]["positive_rate"] for s in splits]
    neg = [counts[s]["examples"] - p for s, p in zip(splits, pos, strict=True)]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.bar(splits, neg, label="not popular", color="#9ecae1")
    ax.bar(splits, pos, bottom=neg, label="popular", color="#3182bd")
    for i, s in enumerate(splits):
        ax.text(i, neg[i] + pos[i], f"{counts[s]['positive_rate']:.1%}", ha="center", va="bottom")
    ax.set(ylabel="examples", title="label balance by split")
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def dataset_card(examples: pl.DataFrame, images: pl.DataFrame, upstream: Mapping[str, str]) -> str:
    """The card depends only on the data and its upstream versions (no build time), so the
    same inputs give the same bytes and re-publishing them is a no-op."""
    counts = split_counts(examples)
    lines = [
        "# popularity dataset",
        "",
        "Predict whether a new photo becomes popular (engagement in its first hours after "
        "upload at or above a threshold) from what is known shortly after upload.",
        "",
        "Splits are by author (salted hash), so no author or photo appears in two splits. "
        "The commit that holds this card records when and by which run it was built.",
        "",
        "## Counts",
        "",
        "| split | examples | authors | positive rate |",
        "|---|---:|---:|---:|",
        *[
            f"| {s} | {c['examples']} | {c['authors']} | {c['positive_rate']:.3f} |"
            for s, c in counts.items()
        ],
        f"| all | {examples.height} | {examples['author_id'].n_unique()} | "
        f"{float(examples['label'].mean() or 0.0):.3f} |",
        "",
        f"Images referenced: {images.height} ({int(images['decodable'].sum())} decodable).",
        "",
        "## Schema (`examples.parquet`)",
        "",
        "| column | type |",
        "|---|---|",
        *[f"| {n} | {t} |" for n, t in examples.schema.items()],
        "",
        "## Upstream versions",
        "",
        *[f"- {k}: `{v}`" for k, v in sorted(upstream.items())],
        "",
    ]
    return "\n".join(lines)


def build_dataset(
    examples: pl.DataFrame,
    photos: pl.DataFrame,
    manifest: pl.DataFrame,
    upstream: Mapping[str, str],
) -> tuple[dict[str, bytes], pl.DataFrame, pl.DataFrame]:
    """The objects of one dataset version, plus the examples (with splits) and image slice.

    ``photos`` maps photo_id -> user_id (author) and object_key; ``manifest`` is the lake's
    image manifest (key, sha256, bytes, width, height, format, decodable).
    """
    ex = assign_splits(examples, photos)
    images = (
        ex.select("photo_id")
        .join(photos.select("photo_id", "object_key"), on="photo_id", how="left")
        .join(
            manifest.select(
                pl.col("key").alias("object_key"),
                "sha256",
                "bytes",
                "width",
                "height",
                "format",
                "decodable",
            ),
            on="object_key",
            how="left",
        )
        .with_columns(pl.col("decodable").fill_null(False))
        .sort("photo_id")
    )
    objects = {
        EXAMPLES: _parquet(ex),
        IMAGES: _parquet(images),
        CARD: dataset_card(ex, images, upstream).encode(),
    }
    return objects, ex, images


@dataclass(frozen=True)
class Audit:
    """One audit's outcome. ``passed`` decides publication; ``warn`` marks a passed audit whose
    point estimate is out of bounds while the sample cannot tell (reported, not blocking)."""

    name: str
    passed: bool
    detail: dict[str, object]
    warn: bool = False


def judge_rate_within(successes: int, n: int, bounds: tuple[float, float]) -> FloorJudgement:
    """A rate that must lie within ``bounds = (lo, hi)``, judged with its sample size: the floor
    ``lo`` on the rate and the floor ``1 - hi`` on its complement, each with one-sided 95%
    Wilson bounds; the worse verdict wins (fail: the data say it is out of bounds; warn: only
    the estimate is). A small world then warns instead of refusing to publish."""
    lo, hi = bounds
    low_side = judge_rate_floor(successes, n, lo)
    high_side = judge_rate_floor(n - successes, n, 1.0 - hi)
    order = {"pass": 0, "warn": 1, "fail": 2}
    return max(low_side, high_side, key=lambda j: order[j.verdict])


def audit_dataset(
    ex: pl.DataFrame,
    images: pl.DataFrame,
    *,
    recomputed: pl.DataFrame | None = None,
    label_bounds: tuple[float, float] = LABEL_BALANCE_BOUNDS,
) -> list[Audit]:
    """The audits a version must pass before it is published to ``main``.

    ``recomputed`` holds activity features recomputed from raw events as of each sampled
    example's ``prediction_ts`` (events after it excluded): equal values prove the stored
    features do not use the future.
    """
    required = ["photo_id", "prediction_ts", "label", "split", "author_id", *F.FEATURE_COLUMNS]
    missing = [c for c in required if c not in ex.columns]
    audits = [
        Audit("schema", not missing and ex.height > 0, {"missing": missing, "rows": ex.height})
    ]
    present = [c for c in required if c in ex.columns]
    nulls = {c: n for c in present if (n := ex[c].null_count())}
    audits.append(Audit("no_nulls", not nulls, {"null_counts": nulls}))

    by_photo = (
        ex.group_by("photo_id").agg(pl.col("split").n_unique().alias("n")).filter(pl.col("n") > 1)
    )
    by_author = (
        ex.group_by("author_id").agg(pl.col("split").n_unique().alias("n")).filter(pl.col("n") > 1)
    )
    audits.append(
        Audit(
            "splits_disjoint",
            by_photo.height == 0 and by_author.height == 0 and ex["photo_id"].is_unique().all(),
            {"photos_in_two_splits": by_photo.height, "authors_in_two_splits": by_author.height},
        )
    )
    rate = float(ex["label"].mean() or 0.0) if ex.height else 0.0
    lo, hi = label_bounds
    counts = split_counts(ex)
    per_split = {s: c["positive_rate"] for s, c in counts.items()}
    # The rate is judged with its sample size (Wilson); an empty split is an exact invariant.
    positives = int(ex["label"].sum() or 0) if ex.height else 0
    balance = judge_rate_within(positives, ex.height, (lo, hi))
    empty = [s for s, c in counts.items() if c["examples"] == 0]
    audits.append(
        Audit(
            "label_balance",
            balance.verdict != "fail" and not empty,
            {
                "positive_rate": round(rate, 4),
                "bounds": [lo, hi],
                "per_split": per_split,
                "empty_splits": empty,
                **balance.metadata(),
            },
            warn=balance.verdict == "warn" and not empty,
        )
    )
    if recomputed is None:
        audits.append(Audit("features_not_after_prediction_time", False, {"reason": "no sample"}))
    else:
        cols = [c for c in F.activity_feature_columns() if c in recomputed.columns]
        stored = ex.select("photo_id", *cols).join(
            recomputed.select("photo_id", *cols), on="photo_id", suffix="__raw"
        )
        diff = {c: stored.filter(pl.col(c) != pl.col(f"{c}__raw")).height for c in cols}
        diff = {c: n for c, n in diff.items() if n}
        audits.append(
            Audit(
                "features_not_after_prediction_time",
                stored.height == recomputed.height and not diff,
                {"sampled": stored.height, "mismatched_columns": diff},
            )
        )
    bad_images = images.filter(pl.col("sha256").is_null()).height
    audits.append(
        Audit(
            "images_referenced",
            bad_images == 0,
            {"images": images.height, "missing_from_manifest": bad_images},
        )
    )
    return audits


def audit_sample(ex: pl.DataFrame, n: int = 256, seed: int = 0) -> pl.DataFrame:
    """The examples whose features are recomputed from raw events during the audit."""
    return ex.sample(min(n, ex.height), seed=seed, shuffle=False) if ex.height else ex


def read_examples(data: bytes) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(data))
