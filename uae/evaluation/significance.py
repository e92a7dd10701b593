"""Paired significance of a difference between two retrievers scored on the same questions.

Two runs differ by a few points of recall@1 on a few hundred questions; whether that is the method or
the sample is what these answer. Both are the tests IR evaluation uses for per-query metrics (Smucker,
Allan and Carterette, CIKM 2007): the paired randomization (sign-flip) test and a percentile bootstrap
interval of the mean difference. Pure numpy functions, seeded, so a report is regenerated exactly.
"""

from __future__ import annotations

import numpy as np

from uae.core.errors import UAEError

_CHUNK = 1024  # resamples per matrix, to bound memory at n_questions * 1024 floats


def _differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise UAEError(f"paired scores need two equal, non-empty 1-d arrays (got shapes {a.shape} and {b.shape}).")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise UAEError("paired scores hold NaN or inf; a metric was not computed for every question.")
    return b - a


def randomization_p_value(a: np.ndarray, b: np.ndarray, *, samples: int = 10_000, seed: int = 0) -> float:
    """Two-sided p of the null "A and B are exchangeable per question": each question's difference
    keeps or flips its sign at random, and p is the share of such mean differences at least as far
    from zero as the observed one (with the observed assignment counted, so p > 0)."""
    d = _differences(a, b)
    observed = abs(d.mean())
    rng = np.random.default_rng(seed)
    extreme, done = 0, 0
    while done < samples:
        m = min(_CHUNK, samples - done)
        signs = rng.integers(0, 2, size=(m, d.size)) * 2 - 1
        # a tolerance, so that ties in exact arithmetic are not lost to rounding
        extreme += int((np.abs(signs @ d) / d.size >= observed - 1e-12).sum())
        done += m
    return (extreme + 1) / (samples + 1)


def bootstrap_interval(
    a: np.ndarray, b: np.ndarray, *, samples: int = 10_000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of mean(B - A) over questions resampled with replacement."""
    if not 0.0 < level < 1.0:
        raise UAEError(f"level={level}: a confidence level is between 0 and 1.")
    d = _differences(a, b)
    rng = np.random.default_rng(seed)
    means = []
    done = 0
    while done < samples:
        m = min(_CHUNK, samples - done)
        means.append(d[rng.integers(0, d.size, size=(m, d.size))].mean(axis=1))
        done += m
    tail = (1.0 - level) / 2
    low, high = np.quantile(np.concatenate(means), [tail, 1.0 - tail])
    return float(low), float(high)
