r"""Confidence intervals used by the analysis (no SciPy needed).

Over seeds, each run is one observation (its run-level mean, e.g. ``revenue_mean``). The 95%
interval of the mean of :math:`n` observations is the Student t interval

.. math::

    \bar x \pm t_{0.975,\,n-1} \, \frac{s}{\sqrt{n}}, \qquad
    s^2 = \frac{1}{n-1} \sum_k (x_k - \bar x)^2,

which assumes the run-level means are roughly normal (they are averages over many rounds); it is
undefined (null) for :math:`n < 2`. Shares of a category among :math:`n` sampled replies (the
lambda sweep) use the Wilson score interval instead, which stays inside [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

CONFIDENCE = 0.95
_EPS = 1e-15


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < _EPS:
            break
    return result


def regularized_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function :math:`I_x(a, b)` for ``0 <= x <= 1``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """CDF of Student's t distribution with ``df`` degrees of freedom."""
    tail = 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(probability: float, df: float) -> float:
    """Quantile of Student's t (bisection on :func:`t_cdf`, accurate to about 1e-10).

    Args:
        probability: In (0, 1), e.g. 0.975 for a two-sided 95% interval.
        df: Degrees of freedom (> 0).
    """
    if not 0.0 < probability < 1.0 or df <= 0:
        raise ValueError(
            f"t_quantile: need 0 < probability < 1 and df > 0, got {probability}, {df}"
        )
    if probability < 0.5:
        return -t_quantile(1.0 - probability, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < probability:
        high *= 2.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        if t_cdf(middle, df) < probability:
            low = middle
        else:
            high = middle
        if high - low < 1e-12 * max(1.0, high):
            break
    return 0.5 * (low + high)


def t_half_width(std: float | None, n: int, confidence: float = CONFIDENCE) -> float | None:
    """Half-width of the t interval of a mean, ``t_{(1+c)/2, n-1} * std / sqrt(n)``; None if n<2."""
    if n < 2 or std is None or math.isnan(std):
        return None
    return t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and t interval of ``values`` (nulls and NaNs dropped); the bounds are NaN if n < 2.

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
    return mean, mean - half, mean + half


def wilson_interval(share: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion ``share`` observed among ``n`` samples."""
    if n <= 0:
        return math.nan, math.nan
    z = normal_quantile(0.5 + confidence / 2.0)
    denominator = 1.0 + z * z / n
    centre = (share + z * z / (2 * n)) / denominator
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def normal_quantile(probability: float) -> float:
    """Standard normal quantile (bisection on ``erf``)."""
    low, high = -40.0, 40.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        if 0.5 * (1.0 + math.erf(middle / math.sqrt(2.0))) < probability:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)
