"""Advertiser agents: a brand, a hidden valuation and a reporting strategy (mesa 3 agents).

An advertiser takes part in a round in three calls, each made on every agent of
``model.agents`` (in their order) through AgentSet methods:

1. :meth:`Advertiser.bid`, once per auction of the round: draw the valuation, report;
2. :meth:`Advertiser.settle`, once per auction: take its own outcome from the auction (the
   entries of its :attr:`~Advertiser.seat`), keep it as :attr:`~Advertiser.latest`;
3. :meth:`Advertiser.learn`, once per round: the strategy learns from the round's outcomes.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mesa

from market_sim.market.learners import MissingCounterfactualError
from market_sim.market.strategies import (
    CounterfactualFn,
    Feedback,
    StrategyOutputError,
    StrategySetup,
)
from market_sim.market.strategy_registry import make_strategy
from market_sim.market.valuations import ValuationSource
from market_sim.platform.base import AuctionOutcome, Bidder, Report
from market_sim.platform.outcome_checks import (
    MechanismOutputError,
    check_counterfactual_values,
    checked_jump_bids,
)
from market_sim.results.records import STRATEGY_PREFIX
from market_sim.scenario.schema import AdvertiserConfig

if TYPE_CHECKING:
    from market_sim.market.model import MarketModel


@dataclass(frozen=True)
class Bid:
    """What an advertiser decided before one auction.

    Attributes:
        query: The auction's query.
        valuation: Its valuation v_i in the auction.
        report: Its report (bid and distortion).
        state: Its strategy's state right after reporting (``strategy_*`` columns).
    """

    query: str
    valuation: float
    report: Report
    state: dict[str, float]


@dataclass(frozen=True)
class AuctionResult:
    """One advertiser's outcome of one auction (one row of ``agents.parquet``).

    Attributes:
        round: The round (0-based).
        auction: The auction within the round.
        bid: What it decided before the auction.
        allocation: x_i measured with its TRUE preferences.
        reported_allocation: x_i measured with its report.
        value: ``valuation * allocation``.
        payment: What it pays.
        utility: ``value - payment``.
        mentioned: Whether the reply names its brand.
        incentives: The regret columns (null where not measured).
        counterfactual: The auction re-run for it under other reports (None if the platform has
            none).
    """

    round: int
    auction: int
    bid: Bid
    allocation: float
    reported_allocation: float
    value: float
    payment: float
    utility: float
    mentioned: bool
    incentives: dict[str, float | None]
    counterfactual: CounterfactualFn | None

    def feedback(self) -> Feedback:
        """What the strategy learns from."""
        return Feedback(
            self.bid.query,
            self.bid.valuation,
            self.bid.report,
            self.allocation,
            self.payment,
            self.utility,
            self.counterfactual,
        )


class Advertiser(mesa.Agent):
    """An advertiser. It never calls the LM: it reports, takes its outcome and learns.

    Args:
        model: The market model (its ``rng`` drives every draw of the agent).
        config: Name, context, mentions, valuation and strategy.
        setup: What its strategy may know before the run (horizon, mechanism's report space).

    Attributes:
        seat: Its index in every auction's bidder list, hence in the platform's outcome arrays
            (its position in ``model.agents``, fixed at creation).
        latest: Its outcome of the last settled auction (None before the first).
    """

    model: MarketModel

    def __init__(
        self, model: mesa.Model, config: AdvertiserConfig, setup: StrategySetup | None = None
    ) -> None:
        super().__init__(model)
        self.seat = len(model.agents) - 1
        self.name = config.name
        self.context = config.context
        self.mentions = tuple(m.lower() for m in config.mentions)
        self.valuation_source = ValuationSource(config.valuation, model.rng)
        self.strategy = make_strategy(config.strategy.kind, config.strategy.params, setup)
        self.bids: list[Bid] = []
        self.results: list[AuctionResult] = []
        self.latest: AuctionResult | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Its state for a checkpoint (:mod:`market_sim.run_resume`), taken between rounds.

        ``latest`` is left out (a resumed market has None there): it is read only while its
        round is recorded, and its counterfactual is a closure over the last auction's engine,
        which pickle cannot write. ``bids`` and ``results`` are empty between rounds.
        """
        return {**self.__dict__, "latest": None}

    @property
    def valuation(self) -> float:
        """Its valuation in the latest auction it bid in (0 before the first)."""
        return self.bids[-1].valuation if self.bids else 0.0

    @property
    def report(self) -> Report:
        """Its report in the latest auction it bid in (bid 0 before the first)."""
        return self.bids[-1].report if self.bids else Report(bid=0.0)

    def bid(self, query: str) -> Bidder:
        """Draw the valuation of the round's next auction and choose the report.

        A round of K auctions calls this K times (once per auction, in order); the strategy
        remembers each action until :meth:`learn`.
        """
        valuation = self.valuation_source.valuation(self.model.rng)
        report = self.strategy.report(valuation, query, self.model.rng)
        if not (0 <= report.bid < math.inf and 0 < report.report_scale < math.inf):  # NaN too
            raise StrategyOutputError(
                f"advertiser {self.name!r}: strategy produced an invalid {report} (bids must be "
                "finite and >= 0, report scales finite and > 0)"
            )
        self.bids.append(Bid(query, valuation, report, self.checked_state()))
        return Bidder(context=self.context, report=report)

    def checked_state(self) -> dict[str, Any]:
        """The strategy's ``state()``: each value a finite real number (a float column) or None.

        Raises:
            StrategyOutputError: A value of another type, or NaN or infinite (it would stop
                the run only when its records are written, after the last round).
        """
        state = self.strategy.state()
        for key, value in state.items():
            finite = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if value is not None and not (finite and math.isfinite(value)):
                raise StrategyOutputError(
                    f"advertiser {self.name!r}: strategy state {key!r} must be a finite number "
                    f"(a column strategy_{key}), got {value!r}"
                )
        return state

    def settle(self, auction: int, outcome: AuctionOutcome) -> None:
        """Take its outcome of the round's auction ``auction`` (entries of its seat).

        The value is ``valuation * allocation`` with the allocation measured with its TRUE
        preferences; where the platform gives a counterfactual, the model's regret estimator
        measures its gain from deviating (:meth:`MarketModel.measure_incentives`).
        """
        bid = self.bids[auction]
        allocation = float(outcome.allocations[self.seat])
        reported_allocation = float(outcome.reported_allocations[self.seat])
        payment = float(outcome.payments[self.seat])
        value = bid.valuation * allocation
        utility = value - payment
        counterfactual = self.counterfactual_of(outcome)
        self.latest = AuctionResult(
            round=self.model.current_round,
            auction=auction,
            bid=bid,
            allocation=allocation,
            reported_allocation=reported_allocation,
            value=value,
            payment=payment,
            utility=utility,
            mentioned=self.mentioned_in(outcome.text),
            incentives=self.model.measure_incentives(
                bid.valuation,
                bid.report,
                counterfactual,
                utility,
                find_jump_bids=functools.partial(
                    checked_jump_bids, self.model.platform.kind, outcome.counterfactual, self.seat
                ),
            ),
            counterfactual=counterfactual,
        )
        self.results.append(self.latest)

    def counterfactual_of(self, outcome: AuctionOutcome) -> CounterfactualFn | None:
        """The auction's counterfactual bound to its seat (None if the platform has none)."""
        engine = outcome.counterfactual
        if engine is None:
            return None
        kind = self.model.platform.kind
        return lambda reports: check_counterfactual_values(
            kind, engine.evaluate(self.seat, reports), len(reports)
        )

    def learn(self) -> None:
        """Pass the round's K outcomes (in auction order) to the strategy; start a new round.

        Raises:
            MechanismOutputError: A full-information learner (Hedge) got an auction without a
                counterfactual; the message names the advertiser's key and the alternatives.
        """
        try:
            self.strategy.update_round([result.feedback() for result in self.results])
        except MissingCounterfactualError:
            kind = self.model.scenario.advertisers[self.seat].strategy.kind
            raise MechanismOutputError(
                f"mechanism {self.model.platform.kind!r} gives no counterfactual, which "
                f"advertisers[{self.seat}].strategy.kind = {kind!r} needs (full information): "
                "choose exp3, epsilon_greedy, ucb1 or policy_gradient (bandit feedback)"
            ) from None
        self.bids, self.results = [], []

    def record(self) -> dict[str, Any]:
        """Its row of ``agents.parquet`` for the latest settled auction."""
        result = self.latest
        if result is None:
            raise RuntimeError(f"advertiser {self.name!r} has no settled auction to record")
        bid = result.bid
        return {
            "run_id": self.model.run_id,
            "round": result.round,
            "auction": result.auction,
            "agent": self.name,
            "valuation": bid.valuation,
            "bid": bid.report.bid,
            "report_scale": bid.report.report_scale,
            "allocation": result.allocation,
            "reported_allocation": result.reported_allocation,
            "value": result.value,
            "payment": result.payment,
            "utility": result.utility,
            **result.incentives,
            "mentioned": result.mentioned,
            **{STRATEGY_PREFIX + key: value for key, value in bid.state.items()},
        }

    def mentioned_in(self, text: str) -> bool:
        """Whether a reply mentions this brand (case-insensitive)."""
        lowered = text.lower()
        return any(mention in lowered for mention in self.mentions)
