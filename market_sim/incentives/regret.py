r"""Regret estimator: what an advertiser could have gained by deviating, same randomness.

For advertiser :math:`i` in a round with valuation :math:`v`, holding every other report and every
random draw fixed (the round's :class:`~market_sim.platform.base.Counterfactual`),

.. math::

    \mathrm{regret}_i = \max_{d \in D} u_i(d) - u_i(\text{truthful}),

where truthful is ``Report(bid = v, report_scale = 1)`` and :math:`D` is the deviation space:
bids :math:`m v` with :math:`m \in [0, m_{\max}]` and, for mechanisms that read one, report
distortions on the mechanism's range (:class:`~market_sim.platform.base.ReportSpace`). The
truthful report and the played report are always among the candidates (the played report even
where it lies outside :math:`D`, a learner's multiplier above ``regret.multiplier_max``), so the
estimate is :math:`\ge 0` and a lower bound on the supremum over :math:`D` and the played report
(docs/design.md, section 5).

Search: a coarse grid (linear in :math:`m`, geometric in the distortion), then ``refinements``
zoom rounds, each evaluating a ``refine_points``-per-axis grid on the bracket of neighbouring grid
cells around the incumbent best. Every zoom is one batched counterfactual call, which suits the
token auction (its cost is mostly per call); like golden-section search it shrinks the
bracket geometrically, by :math:`(r - 1)/2` per round for :math:`r` points. A zoom grid's ends
are points of the grid before it (``linspace`` and ``geomspace`` return their ends exactly), and
the truthful and played reports may be grid points too: a report already evaluated in the same
search is looked up, not evaluated again (:class:`EvaluationMemo`). A counterfactual's value of a
report does not depend on the other reports in its batch except through float rounding: batch
shapes can reorder float64 sums, and on the bundled LM 118 of 528 linear token-auction
utilities evaluated alone differed from the batched value, by at most 9e-15 relative (log-linear
and slot auctions: none).

Like golden-section search, one bracket is a local search. Where the utility has several peaks
(first price over k slots: one per slot the advertiser could win, each a jump just above a rival's
bid), the coarse grid can rank the highest one second and the zoom never visits it, and a piece
of the rule narrower than a grid cell can be missed altogether (GSP with rates 1 and 0.9 against
bids 0.75 and 0.65: the slot-2 piece (0.65, 0.75) holds no grid point, and the grid's estimate
is 0 where the supremum is 0.065). Two remedies:

* **Jump bids.** A counterfactual that knows where the advertiser's outcome can jump
  (:class:`~market_sim.platform.base.JumpBids`: the slot auctions give the other bids and 0)
  has each such bid and the next float above it added to the coarse grid
  (:func:`jump_candidates`). Between jumps a slot auction's utility is constant or falls with
  the bid, so every piece's supremum is a candidate and the estimate is that supremum itself
  (over :math:`D` and the played report; up to one ulp of the bid for first price).
  ``benchmarks/regret_peaks.py`` (first price, rates 1 and 0.5, ``slot_value`` 24, 3 bidders
  with values U[0.5, 1.5] and rivals bidding 0.54 or 1.0 of value, 600 draws each, against a
  4001-point scan plus the rivals' bids): no shortfall, at 23 evaluations per search instead of
  18; the tests check the best of a dense scan for all four rules, ties and zero bids included.
* **More peaks**, for a counterfactual without jump bids (the token auction, MOSAIC, a
  plugin's): ``regret.peaks = P`` zooms the best point and the next P - 1 peaks of the coarse
  grid (local maxima, one per plateau: :func:`coarse_peaks`) in the same calls. On the
  benchmark above with the jump bids left out, the mean estimate is 3.2% and 4.5% below the
  supremum with P = 1, 2.5% and 4.5% with P = 3, and the largest single shortfall falls from
  4.9 to 1.9 (0.54) but stays 2.7 (1.0: the higher peak sits on the slope of the lower one, no
  local maximum of the coarse grid). The rest is the grid's resolution at a jump: the last
  zoom's spacing is ``multiplier_max / (multiplier_points - 1) / ((refine_points - 1) / 2) **
  refinements`` of the value. P = 1 is the default: on the Hawaii token auction P = 3 moved the
  mean regret by 5e-4 relative and made the run 1.4x slower.

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


def jump_candidates(
    jump_bids: np.ndarray, valuations: np.ndarray, multiplier_max: float
) -> np.ndarray:
    r"""``[K, 2J]``: each jump bid and the next float above it, in order, per auction.

    A jump bid :math:`o` (:class:`~market_sim.platform.base.JumpBids`) opens a piece of the
    advertiser's outcome rule just above it; :math:`o` itself keeps the tie-break's piece, and
    ``np.nextafter(o, inf)`` is the lowest bid of the piece above. A candidate outside the
    deviation space :math:`[0, m_{\max} v]` is NaN: the single search drops it, the batched
    search (:mod:`market_sim.incentives.regret_batch`), which needs as many candidates in every
    auction, puts the truthful bid there, its first candidate already, which changes nothing.

    Args:
        jump_bids: ``[K, J]`` jump bids per auction.
        valuations: ``[K]`` the advertiser's valuations.
        multiplier_max: ``regret.multiplier_max``.

    Returns:
        ``[K, 2J]`` candidate bids: ``o_1, nextafter(o_1), o_2, ...`` per row, NaN outside
        :math:`[0, m_{\max} v]`.
    """
    jump_bids = np.asarray(jump_bids, dtype=np.float64)
    valuations = np.asarray(valuations, dtype=np.float64)
    pairs = np.stack([jump_bids, np.nextafter(jump_bids, np.inf)], axis=-1)
    candidates = pairs.reshape(len(jump_bids), -1)
    top = (multiplier_max * valuations)[:, None]
    return np.where((candidates >= 0.0) & (candidates <= top), candidates, np.nan)


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


@dataclass
class Peak:
    """One bracket the zoom refines: its axes and the best point found in it.

    Attributes:
        multipliers: Current multiplier axis (the coarse one, then each zoom's).
        distortions: Current distortion axis.
        multiplier: Multiplier of the best point found in this bracket.
        distortion: Distortion of that point.
        utility: Its utility.
    """

    multipliers: np.ndarray
    distortions: np.ndarray
    multiplier: float
    distortion: float
    utility: float


def coarse_peaks(
    utilities: np.ndarray, count: int, exclude: tuple[int, int] | None = None
) -> list[int]:
    """Flat indices of the ``count`` best peaks of a coarse grid, best first, one per plateau.

    A point is a local maximum when no grid neighbour (8-neighbourhood) has a larger utility.
    Neighbouring local maxima of equal utility form one plateau (a flat region, such as the
    utility 0 of every bid that wins nothing), represented by its first point in index order, so
    a plateau takes one place in the list however wide it is. Ties in utility between plateaus
    keep the lower index. The plateau holding ``exclude`` (the cell the first bracket already
    zooms) is left out.

    Args:
        utilities: ``[M, D]`` utilities of the multiplier x distortion grid.
        count: How many to return (at most the number of plateaus).
        exclude: ``(row, column)`` of a cell whose plateau is not returned, or None.
    """
    if count <= 0:
        return []
    rows, columns = utilities.shape
    padded = np.pad(utilities, 1, constant_values=-np.inf)
    steps = [(dm, dd) for dm in (-1, 0, 1) for dd in (-1, 0, 1) if (dm, dd) != (0, 0)]
    neighbours = np.stack(
        [padded[1 + dm : 1 + dm + rows, 1 + dd : 1 + dd + columns] for dm, dd in steps]
    )
    is_peak = utilities >= neighbours.max(axis=0)
    claimed = np.zeros_like(is_peak)

    def claim(row: int, column: int) -> None:
        """Mark the plateau of ``(row, column)`` (equal-utility local maxima, connected)."""
        stack = [(row, column)]
        claimed[row, column] = True
        while stack:
            m, d = stack.pop()
            for dm, dd in steps:
                r, c = m + dm, d + dd
                inside = 0 <= r < rows and 0 <= c < columns  # checked first: -1 would wrap
                if (
                    inside
                    and is_peak[r, c]
                    and not claimed[r, c]
                    and utilities[r, c] == utilities[m, d]
                ):
                    claimed[r, c] = True
                    stack.append((r, c))

    if exclude is not None and is_peak[exclude]:
        claim(*exclude)
    flat = utilities.ravel()
    chosen: list[int] = []
    for index in np.lexsort((np.arange(flat.size), -flat)):  # utility descending, then index
        cell = divmod(int(index), columns)
        if len(chosen) == count:
            break
        if is_peak[cell] and not claimed[cell]:
            chosen.append(int(index))
            claim(*cell)
    return chosen


def further_peaks(
    grid_utilities: np.ndarray,
    multipliers: np.ndarray,
    distortions: np.ndarray,
    first: Peak,
    count: int,
) -> list[Peak]:
    """The brackets after the first: the coarse grid's next ``count - 1`` peaks.

    Args:
        grid_utilities: ``[M, D]`` utilities of the coarse grid.
        multipliers: ``[M]`` its multiplier axis.
        distortions: ``[D]`` its distortion axis.
        first: The first bracket (its plateau is not zoomed twice).
        count: ``regret.peaks``.
    """
    first_cell = (
        int(np.argmin(np.abs(multipliers - first.multiplier))),
        int(np.argmin(np.abs(distortions - first.distortion))),
    )
    peaks = []
    for index in coarse_peaks(grid_utilities, count - 1, exclude=first_cell):
        row, column = divmod(index, len(distortions))
        peaks.append(
            Peak(
                multipliers,
                distortions,
                float(multipliers[row]),
                float(distortions[column]),
                float(grid_utilities[row, column]),
            )
        )
    return peaks


def estimate_regret(
    evaluate: Evaluate,
    valuation: float,
    played: Report,
    space: ReportSpace,
    config: RegretConfig,
    jump_bids: np.ndarray | None = None,
) -> RegretEstimate:
    """Search deviations of one advertiser in one round (see the module docstring).

    The zoom refines ``config.peaks`` brackets at once (all their points in one counterfactual
    call per zoom round): the first around the best report of the coarse grid, the truthful
    and the played report; the others around the next best local maxima of the coarse grid.
    One bracket is a local search: where the utility has several peaks (first price over two
    slots: one peak per slot it could win), a peak the coarse grid ranked second but that is
    higher on a finer grid would be missed.

    Args:
        evaluate: The round's counterfactual for this advertiser.
        valuation: Its valuation in the round.
        played: The report it actually made.
        space: What the mechanism reads.
        config: The search budget.
        jump_bids: ``[J]`` bids at which the advertiser's outcome may jump
            (:meth:`~market_sim.platform.base.JumpBids.jump_bids`), or None: each and the next float
            above it join the coarse grid (:func:`jump_candidates`), at every coarse
            distortion.

    Returns:
        The estimate; ``evaluations`` counts the distinct reports evaluated.
    """
    multipliers, distortions = coarse_axes(config, space)
    geometric = len(distortions) > 1
    scale = valuation if valuation > 0 else 1.0
    grid = grid_reports(multipliers, distortions, valuation)
    jumps = np.empty(0)
    if jump_bids is not None and len(jump_bids):
        jumps = jump_candidates(
            np.asarray(jump_bids)[None, :], np.array([valuation]), config.multiplier_max
        )[0]
        jumps = jumps[~np.isnan(jumps)]
    reports = ReportBatch(
        np.concatenate([[valuation, played.bid], grid.bid, np.repeat(jumps, len(distortions))]),
        np.concatenate(
            [[1.0, played.report_scale], grid.report_scale, np.tile(distortions, len(jumps))]
        ),
    )
    memo = EvaluationMemo(evaluate, valuation)
    utilities = memo.utilities(reports)
    truthful, played_utility = float(utilities[0]), float(utilities[1])
    best_index = int(np.argmax(utilities))
    peaks = [
        Peak(
            multipliers,
            distortions,
            float(reports.bid[best_index]) / scale,
            float(reports.report_scale[best_index]),
            float(utilities[best_index]),
        )
    ]
    if config.peaks > 1:
        grid_utilities = utilities[2 : 2 + len(grid)].reshape(len(multipliers), len(distortions))
        peaks += further_peaks(grid_utilities, multipliers, distortions, peaks[0], config.peaks)
    for _ in range(config.refinements):
        batches = []
        for peak in peaks:
            peak.multipliers = zoom_axis(
                peak.multipliers, peak.multiplier, config.refine_points, geometric=False
            )
            peak.distortions = zoom_axis(
                peak.distortions, peak.distortion, config.refine_points, geometric=geometric
            )
            batches.append(grid_reports(peak.multipliers, peak.distortions, valuation))
        candidates = (
            batches[0]
            if len(batches) == 1
            else ReportBatch(
                np.concatenate([batch.bid for batch in batches]),
                np.concatenate([batch.report_scale for batch in batches]),
            )
        )
        zoom_utilities = memo.utilities(candidates)
        start = 0
        for peak, batch in zip(peaks, batches, strict=True):
            mine = zoom_utilities[start : start + len(batch.bid)]
            start += len(batch.bid)
            index = int(np.argmax(mine))
            if mine[index] > peak.utility:
                peak.utility = float(mine[index])
                peak.multiplier = float(batch.bid[index]) / scale
                peak.distortion = float(batch.report_scale[index])
    best_peak = max(peaks, key=lambda peak: peak.utility)  # the first of equals
    best = best_peak.utility
    return RegretEstimate(
        regret=max(best - truthful, 0.0),
        best_response_gain=max(best - played_utility, 0.0),
        truthful_utility=truthful,
        best_utility=best,
        best_multiplier=float(best_peak.multiplier),
        best_distortion=float(best_peak.distortion),
        evaluations=memo.evaluations,
    )
