r"""Regret estimator: what an advertiser could have gained by deviating, same randomness.

For advertiser :math:`i` in a round with valuation :math:`v`, holding every other report and every
random draw fixed (the round's :class:`~market_sim.platform.base.Counterfactual`),

.. math::

    \mathrm{regret}_i = \max_{d \in D} u_i(d) - u_i(\text{truthful}),

where truthful is ``Report(bid = v, report_scale = 1)`` and :math:`D` is the deviation space:
bids :math:`m v` with :math:`m \in [0, m_{\max}]` and, for mechanisms that read one, report
distortions on the mechanism's range (:class:`~market_sim.platform.base.ReportSpace`). The
truthful report and the played report are always among the candidates, so the estimate is
:math:`\ge 0` and is a lower bound on the true supremum (docs/design.md, section 5).

Search: a coarse grid (linear in :math:`m`, geometric in the distortion), then ``refinements``
zoom rounds, each evaluating a ``refine_points``-per-axis grid on the bracket of neighbouring grid
cells around the incumbent best. Every zoom is one batched counterfactual call, which suits the
token auction (its cost is per call, not per point); like golden-section search it shrinks the
bracket geometrically, by :math:`(r - 1)/2` per round for :math:`r` points. A zoom grid's ends
are points of the grid before it (``linspace`` and ``geomspace`` return their ends exactly), and
the truthful and played reports may be grid points too: a report already evaluated in the same
search is looked up, not evaluated again (:class:`EvaluationMemo`). A counterfactual's value of a
report does not depend on the other reports in its batch except through float rounding: batch
shapes can reorder float64 sums, and on the bundled LM 118 of 528 linear token-auction
utilities evaluated alone differed from the batched value, by at most 9e-15 relative (log-linear
and slot auctions: none).

The same search gives ``best_response_gain`` = best minus the utility of the report actually
played (what a learner left on the table that round), and ``truthful_utility``, whose sign
defines an individual-rationality violation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from market_sim.platform.base import CounterfactualValues, Report, ReportBatch, ReportSpace
from market_sim.scenario.schema import RegretConfig

Evaluate = Callable[[ReportBatch], CounterfactualValues]


@dataclass(frozen=True)
class RegretEstimate:
    """One (round, advertiser) measurement.

    Attributes:
        regret: Best deviation utility minus truthful utility (>= 0).
        best_response_gain: Best deviation utility minus the played report's utility (>= 0).
        truthful_utility: Utility of the truthful report.
        best_utility: Utility of the best deviation found.
        best_multiplier: Bid multiplier of the best deviation.
        best_distortion: Report distortion of the best deviation.
        evaluations: Distinct counterfactual reports evaluated.
    """

    regret: float
    best_response_gain: float
    truthful_utility: float
    best_utility: float
    best_multiplier: float
    best_distortion: float
    evaluations: int


class EvaluationMemo:
    """Utilities of the reports one search has evaluated, keyed by (bid, distortion).

    Args:
        evaluate: The round's counterfactual for the advertiser.
        valuation: Its valuation (utilities are ``valuation * allocation - payment``).
    """

    def __init__(self, evaluate: Evaluate, valuation: float) -> None:
        self._evaluate = evaluate
        self._valuation = valuation
        self._utilities: dict[tuple[float, float], float] = {}

    @property
    def evaluations(self) -> int:
        """Distinct reports evaluated so far."""
        return len(self._utilities)

    def utilities(self, reports: ReportBatch) -> np.ndarray:
        """``[K]`` utilities of ``reports``; only reports not seen before reach ``evaluate``.

        The new reports go to ``evaluate`` in one call, in their order of first appearance.
        """
        keys = list(zip(reports.bid.tolist(), reports.report_scale.tolist(), strict=True))
        new_keys = list(dict.fromkeys(key for key in keys if key not in self._utilities))
        if new_keys:
            bids, scales = zip(*new_keys, strict=True)
            batch = ReportBatch(
                np.array(bids, dtype=np.float64), np.array(scales, dtype=np.float64)
            )
            values = self._evaluate(batch).utilities(self._valuation)
            self._utilities.update(zip(new_keys, values.tolist(), strict=True))
        return np.array([self._utilities[key] for key in keys], dtype=np.float64)


def truthful_utility(evaluate: Evaluate, valuation: float) -> float:
    """Utility of the truthful report (one counterfactual evaluation)."""
    values = evaluate(ReportBatch.of([Report(bid=valuation, report_scale=1.0)]))
    return float(values.utilities(valuation)[0])


def coarse_axes(config: RegretConfig, space: ReportSpace) -> tuple[np.ndarray, np.ndarray]:
    """The coarse multiplier axis (linear) and distortion axis (geometric, or just 1)."""
    multipliers = np.linspace(0.0, config.multiplier_max, config.multiplier_points)
    if space.distortion is None or config.distortion_points <= 1:
        return multipliers, np.ones(1)
    distortions = np.geomspace(
        space.distortion_low, space.distortion_high, config.distortion_points
    )
    return multipliers, distortions


def grid_reports(multipliers: np.ndarray, distortions: np.ndarray, valuation: float) -> ReportBatch:
    """The reports of a multiplier x distortion grid (multipliers varying slowest)."""
    grid_m, grid_d = np.meshgrid(multipliers, distortions, indexing="ij")
    return ReportBatch(grid_m.ravel() * valuation, grid_d.ravel())


def zoom_axis(axis: np.ndarray, best: float, points: int, geometric: bool) -> np.ndarray:
    """``points`` values spanning the cells of ``axis`` next to ``best`` (within its range)."""
    if len(axis) < 2:
        return axis
    position = int(np.argmin(np.abs(axis - best)))
    low = axis[max(position - 1, 0)]
    high = axis[min(position + 1, len(axis) - 1)]
    if geometric:
        return np.geomspace(low, high, points)
    return np.linspace(low, high, points)


def estimate_regret(
    evaluate: Evaluate,
    valuation: float,
    played: Report,
    space: ReportSpace,
    config: RegretConfig,
) -> RegretEstimate:
    """Search deviations of one advertiser in one round (see the module docstring).

    Args:
        evaluate: The round's counterfactual for this advertiser.
        valuation: Its valuation in the round.
        played: The report it actually made.
        space: What the mechanism reads.
        config: The search budget.

    Returns:
        The estimate; ``evaluations`` counts the distinct reports evaluated.
    """
    multipliers, distortions = coarse_axes(config, space)
    geometric = len(distortions) > 1
    scale = valuation if valuation > 0 else 1.0
    grid = grid_reports(multipliers, distortions, valuation)
    reports = ReportBatch(
        np.concatenate([[valuation, played.bid], grid.bid]),
        np.concatenate([[1.0, played.report_scale], grid.report_scale]),
    )
    memo = EvaluationMemo(evaluate, valuation)
    utilities = memo.utilities(reports)
    truthful, played_utility = float(utilities[0]), float(utilities[1])
    best_index = int(np.argmax(utilities))
    best = float(utilities[best_index])
    best_m = float(reports.bid[best_index]) / scale
    best_d = float(reports.report_scale[best_index])
    for _ in range(config.refinements):
        multipliers = zoom_axis(multipliers, best_m, config.refine_points, geometric=False)
        distortions = zoom_axis(distortions, best_d, config.refine_points, geometric=geometric)
        candidates = grid_reports(multipliers, distortions, valuation)
        zoom_utilities = memo.utilities(candidates)
        index = int(np.argmax(zoom_utilities))
        if zoom_utilities[index] > best:
            best = float(zoom_utilities[index])
            best_m = float(candidates.bid[index]) / scale
            best_d = float(candidates.report_scale[index])
    return RegretEstimate(
        regret=max(best - truthful, 0.0),
        best_response_gain=max(best - played_utility, 0.0),
        truthful_utility=truthful,
        best_utility=best,
        best_multiplier=float(best_m),
        best_distortion=float(best_d),
        evaluations=memo.evaluations,
    )
