r"""Confidence intervals used by the analysis (quantiles from :mod:`scipy.stats`).

Over seeds, each run is one observation (its run-level mean, e.g. ``revenue_mean``). The 95%
interval of the mean of :math:`n` observations is the Student t interval

.. math::

    \bar x \pm t_{0.975,\,n-1} \, \frac{s}{\sqrt{n}}, \qquad
    s^2 = \frac{1}{n-1} \sum_k (x_k - \bar x)^2,

which assumes the run-level means are roughly normal (they are averages over many rounds); it is
undefined (null) for :math:`n < 2`.

**Quantities with a known range.** Revenue, regret and bid ratios cannot be negative and rates
lie in [0, 1], yet a symmetric t interval over a few seeds can cross those bounds. The interval
reported for such a metric is the t interval intersected with the metric's range
(:func:`clip_interval`): the true mean always lies in the range, so whenever the t interval
covers it the clipped interval does too, and the coverage stays exactly that of the t interval.
This is the choice made for the tables and figures over seeds, because the alternatives behave
worse with the 2-5 seeds a sweep usually has:

* the percentile bootstrap (:func:`bootstrap_interval`, offered for larger samples) never leaves
  the sample's [min, max], so with 3 seeds it misses the true mean whenever all three fall on one
  side of it, a probability of at least 1/4 for a symmetric distribution: far below 95%;
* a t interval on the log scale is undefined as soon as one seed is exactly 0 (VCG's regret, a
  mechanism without payments), which is common here.

Shares of a category among :math:`n` sampled replies (the lambda sweep) use the Wilson score
interval (:func:`wilson_interval`), which stays inside [0, 1]; :func:`clopper_pearson_interval`
is the exact (conservative) alternative for integer counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0

Range = tuple[float | None, float | None]
"""A quantity's ``(lower, upper)`` bound; None is unbounded on that side."""


def t_quantile(probability: float, df: float) -> float:
    """Quantile of Student's t distribution (``scipy.stats.t.ppf``).

    Args:
        probability: In (0, 1), e.g. 0.975 for a two-sided 95% interval.
        df: Degrees of freedom (> 0).

    Raises:
        ValueError: ``probability`` outside (0, 1) or ``df <= 0``.
    """
    if not 0.0 < probability < 1.0 or df <= 0:
        raise ValueError(
            f"t_quantile: need 0 < probability < 1 and df > 0, got {probability}, {df}"
        )
    return float(stats.t.ppf(probability, df))


def normal_quantile(probability: float) -> float:
    """Standard normal quantile (``scipy.stats.norm.ppf``)."""
    return float(stats.norm.ppf(probability))


def t_half_width(std: float | None, n: int, confidence: float = CONFIDENCE) -> float | None:
    """Half-width of the t interval of a mean, ``t_{(1+c)/2, n-1} * std / sqrt(n)``; None if n<2."""
    if n < 2 or std is None or math.isnan(std):
        return None
    return t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)


def clip_interval(low: float, high: float, bounds: Range) -> tuple[float, float]:
    """Intersect an interval with a quantity's range (see the module docstring).

    NaN bounds (an undefined interval) stay NaN.
    """
    lower, upper = bounds
    if lower is not None and not math.isnan(low):
        low, high = max(low, lower), max(high, lower)
    if upper is not None and not math.isnan(high):
        low, high = min(low, upper), min(high, upper)
    return low, high


def mean_ci(
    values: Sequence[float], confidence: float = CONFIDENCE, bounds: Range = (None, None)
) -> tuple[float, float, float]:
    """Mean and t interval of ``values`` (nulls and NaNs dropped); the bounds are NaN if n < 2.

    Args:
        values: The observations.
        confidence: Confidence level.
        bounds: The quantity's range; the interval is intersected with it.

    Returns:
        ``(mean, low, high)``.
    """
    clean = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not clean:
        return math.nan, math.nan, math.nan
    n = len(clean)
    mean = sum(clean) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in clean) / (n - 1)) if n > 1 else math.nan
    half = t_half_width(std, n, confidence)
    if half is None:
        return mean, math.nan, math.nan
    return (mean, *clip_interval(mean - half, mean + half, bounds))


def bootstrap_interval(
    values: Sequence[float],
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, deterministic for a given ``seed``.

    Draws ``resamples`` samples of size n with replacement (``numpy.random.default_rng(seed)``),
    takes each one's mean, and returns the ``(1-c)/2`` and ``(1+c)/2`` quantiles of those means.
    The interval lies inside the sample's [min, max], so it respects any range the data respect,
    but it undercovers for small n (see the module docstring). NaN for n < 2.
    """
    clean = np.array([float(v) for v in values if v is not None and not math.isnan(float(v))])
    if clean.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = clean[rng.integers(0, clean.size, size=(resamples, clean.size))].mean(axis=1)
    low, high = np.quantile(means, [0.5 - confidence / 2.0, 0.5 + confidence / 2.0])
    return float(low), float(high)


def wilson_interval(share: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    r"""Wilson score interval of a proportion ``share`` observed among ``n`` samples.

    .. math::

        \frac{\hat p + z^2/2n \pm z\sqrt{\hat p(1-\hat p)/n + z^2/4n^2}}{1 + z^2/n},
        \qquad z = \Phi^{-1}\big((1+c)/2\big).
    """
    if n <= 0:
        return math.nan, math.nan
    z = normal_quantile(0.5 + confidence / 2.0)
    denominator = 1.0 + z * z / n
    centre = (share + z * z / (2 * n)) / denominator
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def clopper_pearson_interval(
    successes: int, n: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a proportion from integer counts (beta quantiles)."""
    if n <= 0:
        return math.nan, math.nan
    alpha = 1.0 - confidence
    low = 0.0 if successes == 0 else float(stats.beta.ppf(alpha / 2, successes, n - successes + 1))
    high = (
        1.0
        if successes == n
        else float(stats.beta.ppf(1 - alpha / 2, successes + 1, n - successes))
    )
    return low, high
