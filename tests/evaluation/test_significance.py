"""Paired tests against exact enumeration and closed forms (the compare CLI on hand-made runs: tests/analysis/test_compare.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from uae.core.errors import UAEError
from uae.evaluation.significance import bootstrap_interval, randomization_p_value


def test_randomization_p_matches_exact_enumeration() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random(10), rng.random(10) + 0.15
    d = b - a
    patterns = np.array(list(itertools.product((-1, 1), repeat=10)))
    exact = float(np.mean(np.abs(patterns @ d) >= abs(d.sum()) - 1e-12))
    got = randomization_p_value(a, b, samples=40_000, seed=1)
    assert 0.0 < exact < 1.0 and got == pytest.approx(exact, abs=0.01)  # Monte Carlo SE <= 0.0025


def test_no_difference_and_constant_difference() -> None:
    a = np.array([0.0, 1.0, 0.5, 0.25])
    assert randomization_p_value(a, a.copy()) == 1.0
    assert bootstrap_interval(a, a.copy()) == (0.0, 0.0)
    assert bootstrap_interval(a, a + 0.125) == pytest.approx((0.125, 0.125))
    # only "all +" and "all -" reach the observed mean: each draw hits them with chance 2^-19, so none of 2000 does
    assert randomization_p_value(np.zeros(20), np.ones(20), samples=2000) == pytest.approx(1 / 2001)


def test_bootstrap_interval_matches_the_normal_approximation() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 2000), rng.normal(0.1, 1, 2000)
    d = b - a
    half = 1.96 * d.std(ddof=1) / np.sqrt(d.size)
    low, high = bootstrap_interval(a, b, samples=4000, seed=2)
    assert low == pytest.approx(d.mean() - half, abs=0.15 * half) and high == pytest.approx(d.mean() + half, abs=0.15 * half)


def test_bad_scores_are_refused() -> None:
    with pytest.raises(UAEError, match="equal, non-empty"):
        randomization_p_value(np.zeros(3), np.zeros(4))
    with pytest.raises(UAEError, match="NaN"):
        bootstrap_interval(np.array([0.0, np.nan]), np.zeros(2))
    with pytest.raises(UAEError, match="level"):
        bootstrap_interval(np.zeros(2), np.zeros(2), level=1.5)
