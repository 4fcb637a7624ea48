"""Sampling: the guide-table search is the exact inverse CDF."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from my_data_platform.synth.sampling import sample_index


@settings(max_examples=50, deadline=None)
@given(
    weights=st.lists(st.floats(0.0, 1e3), min_size=1, max_size=200).filter(lambda w: sum(w) > 0),
    seed=st.integers(0, 2**32 - 1),
)
def test_sample_index_is_exact_inverse_cdf(weights: list[float], seed: int) -> None:
    cum = np.cumsum(weights)
    u = np.random.default_rng(seed).random(500)
    got = sample_index(cum, u, guide_size=64)
    expected = np.minimum(np.searchsorted(cum, u * cum[-1], side="right"), len(cum) - 1)
    assert np.array_equal(got, expected)
    assert np.all(np.asarray(weights)[got] > 0)
