"""Hidden valuations: fixed, or drawn from a named distribution once or every round."""

from __future__ import annotations

import math

import numpy as np

from market_sim.config.bounds import MAX_VALUATION
from market_sim.scenario.schema import ValuationConfig


class ValuationSource:
    """Draws an advertiser's valuation from its configuration.

    Args:
        config: ``fixed`` (value), ``uniform`` (low, high) or ``lognormal`` (mean and sigma of
            the log); ``redraw`` is ``once`` (drawn at construction) or ``round``.
        rng: The model's random generator (draw order is part of reproducibility).
    """

    def __init__(self, config: ValuationConfig, rng: np.random.Generator) -> None:
        self.config = config
        self._once: float | None = None
        if config.dist != "fixed" and config.redraw == "once":
            self._once = self._draw(rng)

    def _draw(self, rng: np.random.Generator) -> float:
        return float(draw_valuation(self.config, rng))

    def valuation(self, rng: np.random.Generator) -> float:
        """This round's valuation."""
        return self._once if self._once is not None else self._draw(rng)


def draw_valuation(
    config: ValuationConfig, rng: np.random.Generator, size: int | None = None
) -> float | np.ndarray:
    """One valuation (``size`` None) or ``[size]`` of them, drawn from ``config``'s distribution.

    numpy's generators give the same numbers drawn one at a time or as a block, so the market's
    per-auction draws and the array path's block draws share one stream of values.
    """
    if config.dist == "fixed":
        return float(config.value) if size is None else np.full(size, float(config.value))
    if config.dist == "uniform":
        return rng.uniform(config.low, config.high, size=size)
    if config.dist == "lognormal":
        return bounded(rng.lognormal(config.mean, config.sigma, size=size))
    raise ValueError(f"valuation dist {config.dist!r} unknown; allowed: fixed, uniform, lognormal")


def bounded(draws: float | np.ndarray) -> float | np.ndarray:
    """Lognormal draws cut at :data:`~market_sim.config.bounds.MAX_VALUATION`.

    The scenario's parameters keep a draw above it below 1e-9 in probability
    (:data:`~market_sim.config.bounds.LOGNORMAL_SIGMAS_BELOW_MAX`); the cut makes the bound
    hold for every draw.
    """
    return np.minimum(draws, MAX_VALUATION)


def expected_valuation(config: ValuationConfig) -> float:
    r"""Mean of a valuation distribution: what a platform that knows the prior expects.

    ``fixed``: the value; ``uniform``: :math:`(low + high) / 2`; ``lognormal`` cut at
    :math:`M` = ``MAX_VALUATION`` (:func:`bounded`): :math:`E[\min(X, M)]`, with
    :math:`z = (\ln M - \mu) / \sigma`,

    .. math::

        e^{\mu + \sigma^2 / 2} \, \Phi(z - \sigma) + M \, (1 - \Phi(z)),

    which is :math:`e^{\mu + \sigma^2 / 2}` wherever the cut is negligible (every shipped
    scenario: to the last bit).
    """
    if config.dist == "fixed":
        return float(config.value)
    if config.dist == "uniform":
        return (float(config.low) + float(config.high)) / 2.0
    if config.dist == "lognormal":
        mean, sigma = float(config.mean), float(config.sigma)
        uncut = math.exp(mean + sigma**2 / 2.0)
        if sigma == 0.0:
            return min(uncut, MAX_VALUATION)
        z = (math.log(MAX_VALUATION) - mean) / sigma
        return uncut * normal_cdf(z - sigma) + MAX_VALUATION * normal_cdf(-z)
    raise ValueError(f"valuation dist {config.dist!r} unknown; allowed: fixed, uniform, lognormal")


def normal_cdf(x: float) -> float:
    r"""The standard normal's :math:`\Phi(x) = \operatorname{erfc}(-x / \sqrt 2) / 2`."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))
