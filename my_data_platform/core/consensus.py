"""Consensus labels from several annotators, with quality assurance.

Annotations are long rows ``(photo_id, annotator, label)``. From them:

- :func:`majority_vote`: the most frequent label per item (ties broken by the rulebook's
  order), the baseline;
- :func:`dawid_skene`: Dawid & Skene (1979). Each annotator has a confusion matrix (how
  often they answer ``l`` when the truth is ``k``), estimated by EM together with the class
  priors and each item's posterior over classes. A careless annotator's answers get little
  weight because their confusion matrix is nearly flat, which majority vote cannot know. The
  posterior's maximum is the label's confidence;
- :func:`krippendorff_alpha`: agreement between annotators beyond chance (nominal data,
  any number of annotators per item, missing values allowed);
- :func:`annotator_report`: each annotator's accuracy on gold items (photos with a known
  answer) and their agreement with the consensus.

Gold answers are never fed to the EM: consensus accuracy on gold is then an honest,
held-out measure of the method (the asset's blocking check).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

ANNOTATION_SCHEMA: dict[str, Any] = {
    "annotation_id": pl.String,
    "photo_id": pl.Int64,
    "annotator": pl.String,
    "label": pl.String,
    "annotated_at": pl.Datetime("us", "UTC"),
    "source": pl.String,
}
"""The canonical annotation rows: OLTP ``photo_annotations`` and Label Studio imports alike."""

GOLD_SCHEMA: dict[str, Any] = {"photo_id": pl.Int64, "label": pl.String}


@dataclass(frozen=True)
class Encoded:
    """Annotations as integer codes: item index, annotator index, label index."""

    items: np.ndarray  # photo ids, sorted
    annotators: list[str]
    item: np.ndarray
    annotator: np.ndarray
    label: np.ndarray
    n_classes: int


def latest_per_annotator(annotations: pl.DataFrame) -> pl.DataFrame:
    """One answer per (photo, annotator): their latest; a re-label replaces, never doubles, a
    vote. Ties on time go to the greater annotation id, so the result is deterministic."""
    return annotations.sort(["photo_id", "annotator", "annotated_at", "annotation_id"]).unique(
        ["photo_id", "annotator"], keep="last", maintain_order=True
    )


def encode(annotations: pl.DataFrame, label_set: Sequence[str]) -> Encoded:
    """Integer codes for the annotation rows (whose labels must all be in ``label_set``)."""
    unknown = set(annotations["label"].unique().to_list()) - set(label_set)
    if unknown:
        raise ValueError(f"labels outside the label set {tuple(label_set)}: {sorted(unknown)}")
    items = np.unique(annotations["photo_id"].to_numpy())
    annotators = sorted(set(annotations["annotator"].to_list()))
    amap = {a: i for i, a in enumerate(annotators)}
    lmap = {c: i for i, c in enumerate(label_set)}
    return Encoded(
        items=items,
        annotators=annotators,
        item=np.searchsorted(items, annotations["photo_id"].to_numpy()),
        annotator=np.array([amap[a] for a in annotations["annotator"].to_list()], np.int64),
        label=np.array([lmap[c] for c in annotations["label"].to_list()], np.int64),
        n_classes=len(label_set),
    )


def _votes(enc: Encoded) -> np.ndarray:
    counts = np.zeros((len(enc.items), enc.n_classes))
    np.add.at(counts, (enc.item, enc.label), 1.0)
    return counts


def _frame(enc: Encoded, post: np.ndarray, label_set: Sequence[str], method: str) -> pl.DataFrame:
    # argmax takes the first maximum: ties go to the label listed first in the rulebook
    best = post.argmax(axis=1)
    votes = _votes(enc)
    n = votes.sum(axis=1)
    return pl.DataFrame(
        {
            "photo_id": pl.Series(enc.items, dtype=pl.Int64),
            "label": pl.Series(list(label_set), dtype=pl.String).gather(best),
            "confidence": post[np.arange(len(best)), best].astype(np.float64),
            "n_annotations": n.astype(np.int64),
            "agreement": votes[np.arange(len(best)), best] / np.maximum(n, 1),
            "method": [method] * len(best),
        }
    )


def majority_vote(annotations: pl.DataFrame, label_set: Sequence[str]) -> pl.DataFrame:
    """The plain majority label per photo; confidence is the winning vote share."""
    enc = encode(annotations, label_set)
    votes = _votes(enc)
    post = votes / np.maximum(votes.sum(axis=1, keepdims=True), 1)
    return _frame(enc, post, label_set, "majority_vote")


@dataclass(frozen=True)
class DawidSkene:
    labels: pl.DataFrame
    """photo_id, label, confidence (posterior max), n_annotations, agreement, method."""
    confusion: dict[str, np.ndarray]
    """Per annotator, ``P(answer l | truth k)`` as a (k, l) matrix."""
    priors: np.ndarray
    iterations: int
    converged: bool


def dawid_skene(
    annotations: pl.DataFrame,
    label_set: Sequence[str],
    *,
    max_iter: int = 500,
    tol: float = 1e-9,
    smoothing: float = 0.01,
) -> DawidSkene:
    """Dawid-Skene EM, initialised from the majority vote's soft posterior.

    ``smoothing`` is a small Dirichlet prior on every confusion row and on the class priors,
    so an annotator who never saw class ``k`` does not get a zero (or NaN) row. Deterministic:
    no random initialisation.
    """
    enc = encode(annotations, label_set)
    k = enc.n_classes
    n_ann = len(enc.annotators)
    votes = _votes(enc)
    post = (votes + 1e-9) / (votes + 1e-9).sum(axis=1, keepdims=True)
    converged = False
    iterations = 0
    prev_ll = -np.inf
    priors = np.full(k, 1.0 / k)
    confusion = np.full((n_ann, k, k), 1.0 / k)
    for _ in range(max_iter):
        iterations += 1
        # M-step: priors and each annotator's confusion matrix from the soft labels
        priors = post.sum(axis=0) + smoothing
        priors /= priors.sum()
        confusion = np.full((n_ann, k, k), smoothing)
        np.add.at(confusion, (enc.annotator, slice(None), enc.label), post[enc.item])
        confusion /= confusion.sum(axis=2, keepdims=True)
        # E-step: log posterior of each item's class
        log_post = np.tile(np.log(priors), (len(enc.items), 1))
        np.add.at(log_post, enc.item, np.log(confusion[enc.annotator, :, enc.label]))
        peak = log_post.max(axis=1, keepdims=True)
        new = np.exp(log_post - peak)
        total = new.sum(axis=1, keepdims=True)
        new /= total
        post = new
        # the marginal log-likelihood never decreases under EM: stop when it stops moving
        ll = float((peak + np.log(total)).sum())
        if abs(ll - prev_ll) <= tol * max(1.0, abs(ll)):
            converged = True
            break
        prev_ll = ll
    return DawidSkene(
        labels=_frame(enc, post, label_set, "dawid_skene"),
        confusion={a: confusion[i] for i, a in enumerate(enc.annotators)},
        priors=priors,
        iterations=iterations,
        converged=converged,
    )


def krippendorff_alpha(annotations: pl.DataFrame) -> tuple[float | None, int]:
    """Krippendorff's alpha for nominal labels, and the number of pairable values.

    Units with a single answer carry no agreement information and are left out. ``None``
    when fewer than two units are pairable or every value is the same (no variation)."""
    labels = sorted(set(annotations["label"].to_list()))
    # one row per unit: how many coders gave each value (units with one value carry nothing)
    counts = (
        annotations.group_by("photo_id", "label")
        .len()
        .pivot(on="label", index="photo_id", values="len")
        .fill_null(0)
    )
    c = counts.select(labels).to_numpy().astype(np.float64) if counts.height else np.zeros((0, 0))
    m = c.sum(axis=1) if len(c) else np.zeros(0)
    c, m = c[m >= 2], m[m >= 2]
    units = len(m)
    # coincidences: ordered pairs of values from different coders, each unit weighted 1/(m-1)
    w = c / (m - 1)[:, None]
    o = c.T @ w - np.diag(w.sum(axis=0)) if units else np.zeros((len(labels), len(labels)))
    n_c = o.sum(axis=1)
    n = float(n_c.sum())
    if units < 2 or n <= 1:
        return None, int(n)
    expected = (n * n - float((n_c**2).sum())) / (n - 1)
    if expected == 0:
        return None, int(n)
    observed = float(o.sum() - np.trace(o))
    return 1.0 - observed / expected, int(n)


def annotator_report(
    annotations: pl.DataFrame, consensus: pl.DataFrame, gold: pl.DataFrame
) -> pl.DataFrame:
    """Per annotator: annotations, gold items answered, correct on gold, gold accuracy, and
    agreement with the consensus (on non-gold photos)."""
    gold_rows = annotations.join(gold.rename({"label": "gold"}), on="photo_id", how="inner")
    on_gold = gold_rows.group_by("annotator").agg(
        pl.len().alias("gold_answered"),
        (pl.col("label") == pl.col("gold")).sum().alias("gold_correct"),
    )
    agree = (
        annotations.join(gold.select("photo_id"), on="photo_id", how="anti")
        .join(consensus.select("photo_id", pl.col("label").alias("cons")), on="photo_id")
        .group_by("annotator")
        .agg((pl.col("label") == pl.col("cons")).mean().alias("agreement_with_consensus"))
    )
    return (
        annotations.group_by("annotator")
        .agg(pl.len().alias("annotations"))
        .join(on_gold, on="annotator", how="left")
        .join(agree, on="annotator", how="left")
        .with_columns(
            pl.col("gold_answered").fill_null(0),
            pl.col("gold_correct").fill_null(0),
        )
        .with_columns(
            pl.when(pl.col("gold_answered") > 0)
            .then(pl.col("gold_correct") / pl.col("gold_answered"))
            .alias("gold_accuracy")
        )
        .sort("annotator")
    )


def accuracy_against(labels: pl.DataFrame, truth: pl.DataFrame) -> tuple[int, int]:
    """(correct, n) of ``labels`` against ``truth`` (both photo_id, label) on shared photos."""
    j = labels.select("photo_id", "label").join(
        truth.select("photo_id", pl.col("label").alias("truth")), on="photo_id"
    )
    return int((j["label"] == j["truth"]).sum()), j.height


def annotator_png(report: pl.DataFrame, floor: float | None = None) -> bytes:
    """A bar chart of each annotator's gold accuracy and agreement with the consensus."""
    import io

    from matplotlib.figure import Figure

    names = report["annotator"].to_list()
    x = np.arange(len(names))
    fig = Figure(figsize=(6, 3.5), dpi=100)
    ax = fig.subplots()
    gold = report["gold_accuracy"].fill_null(0.0).to_numpy()
    agree = report["agreement_with_consensus"].fill_null(0.0).to_numpy()
    ax.bar(x - 0.2, gold, 0.4, label="accuracy on gold", color="#3182bd")
    ax.bar(x + 0.2, agree, 0.4, label="agreement with consensus", color="#9ecae1")
    if floor is not None:
        ax.axhline(floor, color="#de2d26", linestyle="--", label=f"floor {floor}")
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set(ylim=(0, 1.05), ylabel="share", title="annotators")
    ax.legend(loc="lower left", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()
