"""Plots: the training curve and the reliability diagram render as PNG."""

from __future__ import annotations

import polars as pl

from my_data_platform.core import training as T


def test_plots(trained: tuple[T.PopularityMLP, dict], data: tuple[pl.DataFrame, pl.DataFrame]):
    model, m = trained
    df = data[0]
    cal = T.calibration_curve(df["label"].to_numpy(), T.predict(model, df, model.stats))
    for rows in (m["curve"], cal):
        png = T.plot_png(rows, title="t")
        if png is not None:
            assert png.startswith(b"\x89PNG")
