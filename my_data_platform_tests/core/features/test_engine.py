"""Engines: streaming equals in-memory; the GPU matches the CPU (skips without CUDA)."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from my_data_platform.core import features as F
from my_data_platform_tests.core.features.frames import (
    OBSERVED_UNTIL,
)


def test_streaming_equals_in_memory(world: tuple[pl.DataFrame, ...]) -> None:
    events, photos, users = (f.lazy() for f in world)
    lab = F.labels(events, photos, F.FeatureConfig(), OBSERVED_UNTIL)
    snap = F.activity_features(
        events, photos, photos.select("photo_id", pl.lit(OBSERVED_UNTIL).alias("as_of"))
    )
    train = F.training_examples(events, photos, users, lab)
    for lf in (lab, snap, train):
        assert_frame_equal(F.collect(lf, "cpu"), lf.collect(engine="in-memory"))


def test_resolve_engine() -> None:
    assert F.resolve_engine("cpu") == "cpu"
    ok, _ = F.gpu_available()
    assert F.resolve_engine("auto") == ("gpu" if ok else "cpu")
    if not ok:
        with pytest.raises(RuntimeError, match="unavailable"):
            F.resolve_engine("gpu")
    with pytest.raises(ValueError, match="unknown engine"):
        F.resolve_engine("tpu")


@pytest.mark.gpu
def test_gpu_matches_cpu(world: tuple[pl.DataFrame, ...]) -> None:
    ok, why = F.gpu_available()
    if not ok:
        pytest.skip(f"GPU parity needs CUDA and cudf_polars: {why}")
    events, photos, users = (f.lazy() for f in world)
    lab = F.labels(events, photos, F.FeatureConfig(), OBSERVED_UNTIL)
    snap = F.activity_features(
        events, photos, photos.select("photo_id", pl.lit(OBSERVED_UNTIL).alias("as_of"))
    )
    train = F.training_examples(events, photos, users, lab)
    for lf in (lab, snap, train):
        cpu = F.collect(lf, "cpu")
        gpu = F.collect(lf, "gpu")
        assert_frame_equal(gpu, cpu, check_exact=False, rel_tol=1e-9, abs_tol=0.0)
        ints = [c for c, t in cpu.schema.items() if t.is_integer()]
        assert_frame_equal(gpu.select(ints), cpu.select(ints))  # counts exact
