"""Advertiser agents: a brand, a hidden valuation and a reporting strategy (mesa 3 agents)."""

from __future__ import annotations

from collections.abc import Sequence

import mesa

from market_sim.market.strategies import Feedback, StrategySetup
from market_sim.market.strategy_registry import make_strategy
from market_sim.market.valuations import ValuationSource
from market_sim.platform.base import Bidder, Report
from market_sim.scenario.schema import AdvertiserConfig


class Advertiser(mesa.Agent):
    """An advertiser. It never calls the LM: it reports, and learns from feedback.

    Args:
        model: The market model (its ``rng`` drives every draw of the agent).
        config: Name, context, mentions, valuation and strategy.
        setup: What its strategy may know before the run (horizon, mechanism's report space).
    """

    def __init__(
        self, model: mesa.Model, config: AdvertiserConfig, setup: StrategySetup | None = None
    ) -> None:
        super().__init__(model)
        self.name = config.name
        self.context = config.context
        self.mentions = tuple(m.lower() for m in config.mentions)
        self.valuation_source = ValuationSource(config.valuation, model.rng)
        self.strategy = make_strategy(config.strategy.kind, config.strategy.params, setup)
        self.valuation = 0.0
        self.report = Report(bid=0.0)

    def prepare(self, query: str) -> Bidder:
        """Draw the valuation of one auction and choose the report (kept as the latest).

        A round of K auctions calls this K times (once per auction, in order); the strategy
        remembers each action until :meth:`observe_round`.
        """
        self.valuation = self.valuation_source.valuation(self.model.rng)
        self.report = self.strategy.report(self.valuation, query, self.model.rng)
        if self.report.bid < 0 or self.report.report_scale <= 0:
            raise ValueError(
                f"advertiser {self.name!r}: strategy produced an invalid {self.report}"
            )
        return Bidder(context=self.context, report=self.report)

    def observe_round(self, feedbacks: Sequence[Feedback]) -> None:
        """Pass the outcomes of the round's K auctions (in auction order) to the strategy."""
        self.strategy.update_round(feedbacks)

    def mentioned_in(self, text: str) -> bool:
        """Whether a reply mentions this brand (case-insensitive)."""
        lowered = text.lower()
        return any(mention in lowered for mention in self.mentions)
