"""The tiny world and its training examples, shared by the feature test modules."""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl
import pytest

from my_data_platform.core import features as F
from my_data_platform.synth.features_world import world_frames
from my_data_platform_tests.core.features.frames import OBSERVED_UNTIL, TINY


@pytest.fixture(scope="module")
def world() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    return world_frames(TINY)


@pytest.fixture(scope="module")
def examples(world: tuple[pl.DataFrame, ...]) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    events, photos, users = (f.lazy() for f in world)
    lab = F.collect(F.labels(events, photos, F.FeatureConfig(), OBSERVED_UNTIL), "cpu")
    train = F.collect(F.training_examples(events, photos, users, lab), "cpu")
    yield lab, train
