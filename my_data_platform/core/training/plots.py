"""PNG plots for asset metadata: a training curve or a reliability diagram (matplotlib)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any


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


def plot_png(data: Sequence[Mapping[str, Any]], title: str = "") -> bytes:
    """A PNG of a training curve (``curve`` rows) or a reliability diagram
    (:func:`~.metrics.calibration_curve` rows)."""
    # A Figure without pyplot: no global backend or figure registry, safe in any thread.
    from matplotlib.figure import Figure

    xlabel, ylabel, lines = _series(data)
    fig = Figure(figsize=(5, 3.5), dpi=100)
    ax = fig.subplots()
    for name, xs, ys in lines:
        ax.plot(xs, ys, marker="o" if name == "model" else None, label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()
