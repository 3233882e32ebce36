r"""The regret search of :mod:`market_sim.incentives.regret` over K auctions at once, bids only.

:func:`~market_sim.incentives.regret.estimate_regret` searches one (auction, advertiser) pair:
a coarse multiplier grid with the truthful and the played report, then ``refinements`` zooms
around the incumbent best. For a mechanism that reads bids only and whose counterfactual takes
``[K, A]`` candidate bids, one per row of K auctions (the ad-slot auctions of the array round,
:func:`market_sim.market.array_round.counterfactual_utilities`), this module runs the same
search for one advertiser in all K auctions with array operations: one counterfactual call for
the coarse grid, one per zoom.

It is the same search, not an approximation of it: every step repeats the single search's
arithmetic row by row (the grid bids ``m v``, the first maximum of each row, the zoom brackets
and their :func:`row_linspace` points, the strict improvement test, the multipliers
``(m v) / v``), so a row's five numbers equal the single search's bit for bit whenever the
counterfactual's rows equal the single evaluation's (true of the slot auctions' closed form,
tested against the sorted rule). The tests compare both searches on random auctions of the four
slot rules and four search budgets. One difference: the single search looks up a report it has
evaluated before instead of evaluating it again, which changes its count of evaluations, not
its values; that count is not recorded.

Only ``regret.peaks = 1`` is batched; with more peaks the caller runs the single search.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from market_sim.incentives.regret import jump_candidates
from market_sim.scenario.schema import RegretConfig

RowUtilities = Callable[[np.ndarray], np.ndarray]
"""``[K, A]`` candidate bids (one row per auction) -> ``[K, A]`` the advertiser's utilities."""


@dataclass(frozen=True)
class RegretColumns:
    """One advertiser's estimates in K auctions (the fields of ``RegretEstimate``), ``[K]`` each.

    Attributes:
        regret: Best deviation utility minus truthful utility (>= 0).
        best_response_gain: Best deviation utility minus the played report's utility (>= 0).
        truthful_utility: Utility of the truthful bid.
        best_multiplier: Bid multiplier of the best deviation found.
        best_distortion: Report distortion of that deviation (1, or the played report's scale
            where the played report is the best).
    """

    regret: np.ndarray
    best_response_gain: np.ndarray
    truthful_utility: np.ndarray
    best_multiplier: np.ndarray
    best_distortion: np.ndarray


def row_linspace(low: np.ndarray, high: np.ndarray, points: int) -> np.ndarray:
    """``[K, points]``: row k is ``np.linspace(low[k], high[k], points)``, bit for bit.

    ``np.linspace`` given arrays of ends takes its zero-step branch for every row as soon as one
    row has a zero step, which rounds the other rows differently from their own call; this takes
    each row's branch as its own call would: ``low + i * step`` with ``step = (high - low) /
    (points - 1)``, or ``low + (i / (points - 1)) * (high - low)`` where that step is 0; the last
    point is ``high`` itself.
    """
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    count = np.arange(points, dtype=np.float64)[None, :]
    if points < 2:
        return low[:, None] + count * (high - low)[:, None]
    delta = (high - low)[:, None]
    step = delta / (points - 1)
    zero_step = step == 0
    values = np.where(zero_step, count / (points - 1) * delta, count * step) + low[:, None]
    values[:, -1] = high
    return values


def zoom_bracket(axes: np.ndarray, best: np.ndarray, points: int) -> np.ndarray:
    """``[K, points]``: each row's zoom axis around ``best`` (``zoom_axis``, row by row).

    Args:
        axes: ``[K, P]`` each row's current multiplier axis.
        best: ``[K]`` each row's best multiplier so far.
        points: ``regret.refine_points``.
    """
    if axes.shape[1] < 2:
        return axes
    rows = np.arange(len(axes))
    position = np.argmin(np.abs(axes - best[:, None]), axis=1)
    low = axes[rows, np.maximum(position - 1, 0)]
    high = axes[rows, np.minimum(position + 1, axes.shape[1] - 1)]
    return row_linspace(low, high, points)


def first_maxima(utilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``([K] column, [K] value)`` of each row's first maximum (``np.argmax``)."""
    columns = np.argmax(utilities, axis=1)
    return columns, utilities[np.arange(len(utilities)), columns]


def estimate_bid_regret_rows(
    utilities: RowUtilities,
    valuations: np.ndarray,
    played_bids: np.ndarray,
    played_scales: np.ndarray,
    config: RegretConfig,
    jump_bids: np.ndarray | None = None,
) -> RegretColumns:
    """The single search of each of K auctions for a bids-only mechanism (``peaks = 1``).

    Args:
        utilities: The advertiser's counterfactual over K auctions (:data:`RowUtilities`).
        valuations: ``[K]`` its valuations.
        played_bids: ``[K]`` the bids it made.
        played_scales: ``[K]`` the report scales it sent (read by no bids-only mechanism,
            returned as the best distortion where the played report is the best).
        config: The search budget; ``config.peaks`` must be 1.
        jump_bids: ``[K, J]`` bids at which the advertiser's outcome may jump in each auction
            (the other bids of a ranked auction), or None: they and the next floats above them
            join the coarse grid, after its points, as in the single search (the truthful bid
            stands in for one outside the deviation space).

    Returns:
        The K estimates.

    Raises:
        ValueError: ``config.peaks`` is not 1.
    """
    if config.peaks != 1:
        raise ValueError(
            f"the batched regret search zooms one peak, got regret.peaks = {config.peaks}"
        )
    valuations = np.asarray(valuations, dtype=np.float64)
    count = len(valuations)
    multipliers = np.linspace(0.0, config.multiplier_max, config.multiplier_points)
    scale = np.where(valuations > 0, valuations, 1.0)
    columns = [
        valuations[:, None],
        played_bids[:, None],
        multipliers[None, :] * valuations[:, None],
    ]
    if jump_bids is not None and np.shape(jump_bids)[1]:
        jumps = jump_candidates(jump_bids, valuations, config.multiplier_max)
        columns.append(np.where(np.isnan(jumps), valuations[:, None], jumps))
    bids = np.concatenate(columns, axis=1)
    scales = np.ones_like(bids)
    scales[:, 1] = played_scales
    grid_utilities = utilities(bids)
    rows = np.arange(count)
    truthful, played = grid_utilities[:, 0], grid_utilities[:, 1]
    best_column, best = first_maxima(grid_utilities)
    best_multiplier = bids[rows, best_column] / scale
    best_distortion = scales[rows, best_column]
    axes = np.broadcast_to(multipliers, (count, len(multipliers)))
    for _ in range(config.refinements):
        axes = zoom_bracket(axes, best_multiplier, config.refine_points)
        candidates = axes * valuations[:, None]
        column, value = first_maxima(utilities(candidates))
        better = value > best
        best = np.where(better, value, best)
        best_multiplier = np.where(better, candidates[rows, column] / scale, best_multiplier)
        best_distortion = np.where(better, 1.0, best_distortion)
    return RegretColumns(
        regret=non_negative(best - truthful),
        best_response_gain=non_negative(best - played),
        truthful_utility=truthful,
        best_multiplier=best_multiplier,
        best_distortion=best_distortion,
    )


def non_negative(values: np.ndarray) -> np.ndarray:
    """``max(x, 0.0)`` element by element as Python's ``max`` gives it (x unless 0 > x)."""
    return np.where(values < 0.0, 0.0, values)
