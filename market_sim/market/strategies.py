"""How advertisers turn a hidden valuation into a report: the strategy interface and registry.

A strategy sees its valuation and the query, returns a :class:`~market_sim.platform.base.Report`,
and afterwards gets the round's feedback. Learning strategies (a later capability) implement
the same three methods and register a factory in :data:`STRATEGY_FACTORIES`, next to their
parameter table in :data:`market_sim.scenario.schema.STRATEGY_PARAMS`; the market model does
not change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from market_sim.platform.base import Report


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
    """

    query: str
    valuation: float
    report: Report
    allocation: float
    payment: float
    utility: float


class Strategy(Protocol):
    """A reporting strategy."""

    def report(self, valuation: float, query: str, rng: np.random.Generator) -> Report:
        """The report for this round."""
        ...

    def update(self, feedback: Feedback) -> None:
        """Learn from the round's outcome (no-op for non-learning strategies)."""
        ...

    def state(self) -> dict[str, float]:
        """Scalars describing the strategy's current state, recorded each round."""
        ...


@dataclass
class FixedDistortion:
    """Bid ``bid_multiplier * valuation`` and report with sharpening ``sharpen``.

    ``bid_multiplier = sharpen = 1`` is truthful reporting.
    """

    bid_multiplier: float = 1.0
    sharpen: float = 1.0

    def report(self, valuation: float, query: str, rng: np.random.Generator) -> Report:
        """Scale the valuation; the distortion never changes."""
        return Report(bid=self.bid_multiplier * valuation, report_scale=self.sharpen)

    def update(self, feedback: Feedback) -> None:
        """Fixed strategies do not learn."""

    def state(self) -> dict[str, float]:
        """The fixed parameters."""
        return {"bid_multiplier": self.bid_multiplier, "sharpen": self.sharpen}


STRATEGY_FACTORIES: dict[str, Callable[[Mapping[str, float]], Strategy]] = {
    "truthful": lambda params: FixedDistortion(),
    "fixed": lambda params: FixedDistortion(
        bid_multiplier=float(params["bid_multiplier"]), sharpen=float(params["sharpen"])
    ),
}
"""Strategy kind -> factory taking the validated parameters."""


def make_strategy(kind: str, params: Mapping[str, float]) -> Strategy:
    """Build the strategy of a kind from its validated parameters.

    Raises:
        ValueError: The kind has no factory.
    """
    if kind not in STRATEGY_FACTORIES:
        raise ValueError(
            f"strategy kind {kind!r} unknown; allowed: {', '.join(STRATEGY_FACTORIES)}"
        )
    return STRATEGY_FACTORIES[kind](params)
