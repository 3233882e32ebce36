"""The strategy space of an advertiser: a bid multiplier, and a report distortion if read.

A report is ``Report(bid = m * valuation, report_scale = d)``. Multipliers are spaced linearly on
``[multiplier_min, multiplier_max]``; distortions geometrically on ``[distortion_min,
distortion_max]`` (so that a symmetric range such as 0.25..4 with an odd count contains 1, the
truthful report). The grid is the cartesian product, multipliers varying slowest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from market_sim.config.fields import ParamValue
from market_sim.platform.base import Report, ReportBatch, ReportSpace


@dataclass(frozen=True)
class ReportBounds:
    """Bounds of the continuous strategy space (policy-gradient learners use these directly).

    Attributes:
        multiplier_min: Smallest bid multiplier.
        multiplier_max: Largest bid multiplier.
        distortion_min: Smallest report distortion (1.0 when the distortion is not learned).
        distortion_max: Largest report distortion (1.0 when the distortion is not learned).
    """

    multiplier_min: float
    multiplier_max: float
    distortion_min: float = 1.0
    distortion_max: float = 1.0

    @property
    def learns_distortion(self) -> bool:
        """Whether the distortion varies."""
        return self.distortion_max > self.distortion_min


def report_bounds(params: Mapping[str, ParamValue], space: ReportSpace, where: str) -> ReportBounds:
    """Read the strategy-space parameters of a learner and check them against the mechanism.

    Args:
        params: Validated strategy parameters (``multiplier_min``, ``multiplier_max``,
            ``distortion_min``, ``distortion_max``, ``distortion_count``).
        space: What the mechanism reads.
        where: The scenario key of the strategy, for error messages.

    A distortion grid is what the learner may try "where the mechanism reads one": on a
    bid-only mechanism (ad slots) it collapses to the truthful report, so one scenario can be
    swept across mechanism kinds.

    Raises:
        ValueError: Inverted ranges.
    """
    low, high = float(params["multiplier_min"]), float(params["multiplier_max"])
    fixed_bid = int(params["multiplier_count"]) == 1
    if fixed_bid and high != low:
        raise ValueError(
            f"{where}.multiplier_count = 1 fixes the bid: it needs multiplier_min = "
            f"multiplier_max ({low} != {high})"
        )
    if not fixed_bid and high <= low:
        raise ValueError(f"{where}.multiplier_max must exceed multiplier_min ({high} <= {low})")
    if int(params["distortion_count"]) <= 1 or space.distortion is None:
        return ReportBounds(low, high)
    d_low, d_high = float(params["distortion_min"]), float(params["distortion_max"])
    if d_high <= d_low:
        raise ValueError(f"{where}.distortion_max must exceed distortion_min ({d_high} <= {d_low})")
    return ReportBounds(low, high, d_low, d_high)


TRUTHFUL_SNAP = 1e-12
"""Relative distance from 1 within which a grid point is taken to be exactly 1."""


def snap_to_truthful(points: np.ndarray) -> np.ndarray:
    """``points`` with those within :data:`TRUTHFUL_SNAP` of 1 set to exactly 1.

    ``linspace`` and ``geomspace`` can miss 1 by an ulp (``linspace(0.1, 2.0, 20)[9]`` is
    0.9999999999999999): the learner's truthful action would then bid ``v - 1e-16 v`` and not
    count as truthful (a truthful report's realized utility is recorded as its
    ``truthful_utility`` on unmeasured rounds).
    """
    return np.where(np.abs(points - 1.0) <= TRUTHFUL_SNAP, 1.0, points)


@dataclass(frozen=True)
class ActionGrid:
    """A finite strategy space.

    Attributes:
        multipliers: ``[N]`` bid multiplier of each action.
        distortions: ``[N]`` report distortion of each action.
    """

    multipliers: np.ndarray
    distortions: np.ndarray

    @classmethod
    def from_params(cls, params: Mapping[str, ParamValue], bounds: ReportBounds) -> ActionGrid:
        """The grid of ``multiplier_count`` x ``distortion_count`` actions within ``bounds``."""
        multipliers = np.linspace(
            bounds.multiplier_min, bounds.multiplier_max, int(params["multiplier_count"])
        )
        if bounds.learns_distortion:
            distortions = np.geomspace(
                bounds.distortion_min, bounds.distortion_max, int(params["distortion_count"])
            )
        else:
            distortions = np.ones(1)
        grid_m, grid_d = np.meshgrid(
            snap_to_truthful(multipliers), snap_to_truthful(distortions), indexing="ij"
        )
        return cls(grid_m.ravel(), grid_d.ravel())

    @property
    def size(self) -> int:
        """Number of actions N."""
        return int(self.multipliers.shape[0])

    def report(self, action: int, valuation: float) -> Report:
        """The report of one action at this valuation."""
        return Report(
            bid=float(self.multipliers[action]) * valuation,
            report_scale=float(self.distortions[action]),
        )

    def reports(self, valuation: float) -> ReportBatch:
        """The K reports of every action at this valuation."""
        return ReportBatch(self.multipliers * valuation, self.distortions)
