"""The regret search evaluates each distinct report once and keeps the best it saw."""

from __future__ import annotations

import numpy as np
import pytest

from market_sim.incentives.regret import estimate_regret
from market_sim.platform.base import CounterfactualValues, Report, ReportBatch, ReportSpace
from market_sim.scenario.schema import RegretConfig

SPACE = ReportSpace("sharpen", 0.25, 4.0)


class CountingCounterfactual:
    """A smooth two-axis toy game that records every report it is asked to evaluate."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, float]] = []

    def __call__(self, reports: ReportBatch) -> CounterfactualValues:
        self.seen.extend(zip(reports.bid.tolist(), reports.report_scale.tolist(), strict=True))
        allocations = 1.0 - np.exp(-reports.bid * np.sqrt(reports.report_scale))
        payments = 0.4 * reports.bid * allocations * reports.report_scale**0.25
        return CounterfactualValues(allocations, payments)


@pytest.mark.parametrize("refinements", [0, 1, 3, 6])
@pytest.mark.parametrize("played", [Report(1.0, 1.0), Report(0.8, 2.0), Report(3.7, 0.3)])
def test_each_report_is_evaluated_once_and_the_best_seen_is_returned(refinements, played):
    evaluate = CountingCounterfactual()
    config = RegretConfig(refinements=refinements)
    estimate = estimate_regret(evaluate, 1.0, played, SPACE, config)
    assert len(evaluate.seen) == len(set(evaluate.seen)) == estimate.evaluations
    values = evaluate(ReportBatch.of([Report(*report) for report in evaluate.seen]))
    utilities = values.utilities(1.0)
    assert estimate.best_utility == utilities.max()
    truthful = utilities[evaluate.seen.index((1.0, 1.0))]
    assert estimate.regret == max(estimate.best_utility - truthful, 0.0)
    grid_size = config.multiplier_points * config.distortion_points
    zoom_size = config.refine_points**2
    # The truthful report (m = 1, distortion 1) is a point of the coarse grid and each zoom
    # grid's 4 corners are points of the grid before it: all looked up, not re-evaluated.
    assert estimate.evaluations <= 1 + grid_size + refinements * (zoom_size - 4)
