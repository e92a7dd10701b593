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


def test_two_level_bootstrap_matches_exact_enumeration_of_the_seed_draws() -> None:
    """Every question alike within a seed: only the seed draws move the mean, and their law is enumerable."""
    from uae.evaluation.significance import two_level_bootstrap

    a = np.repeat([[0.0], [1.0]], 50, axis=1)  # A's two seeds score 0 and 1 on every question
    b = np.repeat([[1.0], [3.0]], 50, axis=1)
    draws = [(np.mean(sa), np.mean(sb)) for sa in itertools.product((0.0, 1.0), repeat=2)
             for sb in itertools.product((1.0, 3.0), repeat=2)]  # 16 equally likely draws
    diffs = np.array([mb - ma for ma, mb in draws])
    observed = 2.0 - 0.5
    exact_p = float(np.mean(np.abs(diffs - observed) >= observed))  # diffs 0 and 3: 2 of 16
    low, high, p = two_level_bootstrap(a, b, samples=20_000, seed=2)
    assert (low, high) == (diffs.min(), diffs.max())  # each end holds 1/16 > 2.5% of the draws
    assert exact_p == 0.125 and p == pytest.approx(exact_p, abs=0.01)  # Monte Carlo SE 0.0023


def test_two_level_bootstrap_with_one_seed_is_the_question_bootstrap() -> None:
    """One seed per side: the interval is the paired bootstrap's, whose width the normal law gives."""
    from uae.evaluation.significance import two_level_bootstrap

    rng = np.random.default_rng(5)
    a, b = rng.random(400), rng.random(400) + 0.05
    low, high, _ = two_level_bootstrap(a[None], b[None], samples=20_000, seed=1)
    se = (b - a).std() / np.sqrt(400)
    assert low == pytest.approx((b - a).mean() - 1.96 * se, abs=0.15 * se)
    assert high == pytest.approx((b - a).mean() + 1.96 * se, abs=0.15 * se)
    paired = bootstrap_interval(a, b, samples=20_000, seed=1)
    assert low == pytest.approx(paired[0], abs=0.1 * se) and high == pytest.approx(paired[1], abs=0.1 * se)


def test_seed_variance_widens_the_interval_and_raises_p() -> None:
    from uae.evaluation.significance import two_level_bootstrap

    rng = np.random.default_rng(7)
    base = rng.random(300)
    a = np.stack([base + shift for shift in (0.0, 0.05, -0.05)])  # the same questions, seeds shifted
    b = np.stack([base + 0.03 + shift for shift in (0.04, -0.04, 0.0)])
    one = two_level_bootstrap(a[:1], b[2:], samples=5000, seed=0)  # one seed each: B - A = 0.03 on every question
    both = two_level_bootstrap(a, b, samples=5000, seed=0)
    assert one[0] == pytest.approx(0.03) and one[1] == pytest.approx(0.03) and one[2] == pytest.approx(1 / 5001)
    assert both[0] < 0.0 < both[1] and both[2] > 0.2


def test_two_level_bootstrap_refuses_mismatched_or_missing_scores() -> None:
    from uae.evaluation.significance import two_level_bootstrap

    with pytest.raises(UAEError, match="same questions"):
        two_level_bootstrap(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(UAEError, match="NaN"):
        two_level_bootstrap(np.array([[0.0, np.nan]]), np.zeros((1, 2)))
