"""How advertisers turn a hidden valuation into a report: the strategy interface and registry.

A strategy sees its valuation and the query, returns a :class:`~market_sim.platform.base.Report`,
and afterwards gets the round's feedback. A round holds K auctions (``auctions_per_round``): the
strategy reports once per auction (K calls of ``report``, in auction order) and then learns once
from the K feedbacks (``update_round``), in the same order. The built-in learners
(:mod:`market_sim.market.learners`) implement the same methods; their factories are in
:data:`market_sim.market.strategy_registry.STRATEGY_FACTORIES`, their parameter tables in
:data:`market_sim.scenario.schema.STRATEGY_PARAMS`. A strategy from outside market-sim is a
plugin (:mod:`market_sim.scenario.strategy_plugins`): its kind, parameters, docs and factory in
one object; the market model does not change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from market_sim.config.fields import ParamValue
from market_sim.platform.base import CounterfactualValues, Report, ReportBatch, ReportSpace

CounterfactualFn = Callable[[ReportBatch | Sequence[Report]], CounterfactualValues]
"""The round re-run for this advertiser under other reports (same randomness)."""


@dataclass(frozen=True)
class StrategySetup:
    """What a strategy may know before the run starts.

    Attributes:
        horizon: Auctions the strategy plays in the run, ``rounds * auctions_per_round``
            (learners tune their rates to it).
        auctions_per_round: K, auctions per round (feedback arrives in batches of K).
        contexts: Distinct queries of the stream (a contextual learner's horizon per context
            is ``horizon / contexts``). For the eva stream, which admits queries as it runs,
            the starting queries: a query admitted later plays fewer auctions than its learner
            is tuned to, so its rates come out smaller than its own horizon would set.
        query_order: ``cycle`` or ``sample``, how the stream draws its queries (how often a
            round holds a given query).
        report_space: What the mechanism reads from a report.
        where: Scenario key of the strategy (for error messages).
    """

    horizon: int = 1
    auctions_per_round: int = 1
    contexts: int = 1
    query_order: str = "cycle"
    report_space: ReportSpace = ReportSpace("distortion", 0.25, 4.0)
    where: str = "strategy"


@dataclass(frozen=True)
class Feedback:
    """What an advertiser learns after a round.

    Attributes:
        query: The round's query.
        valuation: Its valuation in the round.
        report: What it reported.
        allocation: Influence measured with its true preferences.
        payment: What it paid.
        utility: ``valuation * allocation - payment``.
        counterfactual: The round re-run for this advertiser under other reports, or None
            when the platform cannot (full-information learners then refuse to run).
    """

    query: str
    valuation: float
    report: Report
    allocation: float
    payment: float
    utility: float
    counterfactual: CounterfactualFn | None = None


class StrategyOutputError(ValueError):
    """A strategy's report is not one the market takes (one line naming the advertiser)."""


class Strategy(Protocol):
    """A reporting strategy."""

    def report(self, valuation: float, query: str, rng: np.random.Generator) -> Report:
        """The report for one auction of this round."""
        ...

    def update(self, feedback: Feedback) -> None:
        """Learn from a round of one auction (``update_round([feedback])``)."""
        ...

    def update_round(self, feedbacks: Sequence[Feedback]) -> None:
        """Learn once from the round's K outcomes, in the order of the K reports."""
        ...

    def state(self) -> dict[str, float]:
        """Scalars describing the strategy's current state, recorded each round."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """The strategy's whole state (JSON-ready), written to ``learners.json`` at the end."""
        ...


@dataclass
class FixedDistortion:
    """Bid ``bid_multiplier * valuation`` and report the distortion ``distortion``.

    The distortion is the mechanism's ``report_scale`` (the token auction's sharpening
    exponent, MOSAIC's relevance exponent, the affine maximizer's reward scale or blend).

    ``bid_multiplier = distortion = 1`` is truthful reporting.
    """

    bid_multiplier: float = 1.0
    distortion: float = 1.0

    def report(self, valuation: float, query: str, rng: np.random.Generator) -> Report:
        """Scale the valuation; the distortion never changes."""
        return Report(bid=self.bid_multiplier * valuation, report_scale=self.distortion)

    def update(self, feedback: Feedback) -> None:
        """Fixed strategies do not learn."""

    def update_round(self, feedbacks: Sequence[Feedback]) -> None:
        """Fixed strategies do not learn."""

    def state(self) -> dict[str, float]:
        """The fixed parameters."""
        return {"bid_multiplier": self.bid_multiplier, "distortion": self.distortion}

    def snapshot(self) -> dict[str, Any]:
        """The fixed parameters."""
        return {"kind": "fixed", **self.state()}


def fixed_strategy(params: Mapping[str, ParamValue], setup: StrategySetup) -> FixedDistortion:
    """A fixed report; a distortion other than 1 needs a mechanism that reads one."""
    strategy = FixedDistortion(float(params["bid_multiplier"]), float(params["distortion"]))
    if strategy.distortion != 1.0 and setup.report_space.distortion is None:
        raise ValueError(
            f"{setup.where}.distortion: the mechanism reads no report distortion (bid only); "
            "use distortion = 1"
        )
    return strategy
