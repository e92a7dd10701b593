"""Paired significance of a difference between two retrievers scored on the same questions.

Two runs differ by a few points of recall@1 on a few hundred questions; whether that is the method or
the sample is what these answer. Both are the tests IR evaluation uses for per-query metrics (Smucker,
Allan and Carterette, CIKM 2007): the paired randomization (sign-flip) test and a percentile bootstrap
interval of the mean difference. Pure numpy functions, seeded, so a report is regenerated exactly.

Both see one trained model per side, so they answer "would other questions give the same gap?" and not
"would another training seed?". With several seeds per side, :func:`two_level_bootstrap` resamples both
sources: the seeds of each side, and the questions (one draw for both sides, so the pairing stays). Seeds
and questions are crossed here (every seed scores every question), not nested as in the two-stage
bootstrap of Davison and Hinkley (1997, "Bootstrap Methods and their Application", section 3.8), whose
idea it borrows: resample each random factor. With S seeds the resampled seed means vary by (S - 1) / S of
the seed variance, so with 3 seeds the seed part is understated by a third; the per-seed values and their
spread are reported beside it for that reason. The p is the shifted-null bootstrap test of Efron and
Tibshirani (1993, "An Introduction to the Bootstrap", 16.4).
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


def two_level_bootstrap(
    a: np.ndarray, b: np.ndarray, *, samples: int = 10_000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Percentile interval and two-sided p of mean(B) - mean(A) when each side is several training seeds.

    ``a`` is (seeds of A, questions), ``b`` (seeds of B, questions), the same questions in the same order.
    Each resample draws the seeds of each side with replacement and the questions with replacement (one
    draw for both sides: a question's difficulty cancels as in the paired tests); p is the share of
    resampled differences, shifted to mean zero, at least as far from zero as the observed one (counted
    once itself, so p > 0). With a few seeds the seed draw is coarse (3 seeds: 10 distinct draws), which
    widens the interval; that is the seed variance the single-model tests leave out.
    """
    if not 0.0 < level < 1.0:
        raise UAEError(f"level={level}: a confidence level is between 0 and 1.")
    a, b = np.atleast_2d(np.asarray(a, dtype=np.float64)), np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.size == 0 or b.size == 0:
        raise UAEError(f"seed-by-question scores need two 2-d arrays over the same questions (got {a.shape} and {b.shape}).")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise UAEError("seed-by-question scores hold NaN or inf; a metric was not computed for every question.")
    n = a.shape[1]
    observed = b.mean() - a.mean()
    rng = np.random.default_rng(seed)
    diffs, done = [], 0
    while done < samples:
        m = min(_CHUNK, samples - done)
        questions = rng.multinomial(n, np.full(n, 1.0 / n), size=m)  # how often each question is drawn
        seeds_a = rng.multinomial(len(a), np.full(len(a), 1.0 / len(a)), size=m)
        seeds_b = rng.multinomial(len(b), np.full(len(b), 1.0 / len(b)), size=m)
        mean_a = ((seeds_a @ a) * questions).sum(axis=1) / (len(a) * n)
        mean_b = ((seeds_b @ b) * questions).sum(axis=1) / (len(b) * n)
        diffs.append(mean_b - mean_a)
        done += m
    d = np.concatenate(diffs)
    tail = (1.0 - level) / 2
    low, high = np.quantile(d, [tail, 1.0 - tail])
    extreme = int((np.abs(d - observed) >= abs(observed) - 1e-12).sum())
    return float(low), float(high), (extreme + 1) / (samples + 1)
