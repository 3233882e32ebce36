"""The market: one mesa model wiring queries, advertisers and the platform, round by round."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mesa
import numpy as np
import polars as pl

from market_sim.incentives.regret import RegretEstimate, estimate_regret
from market_sim.market.agents import Advertiser
from market_sim.market.array_round import ArraySlotRound
from market_sim.market.queries import QueryStream, StaticQueryStream
from market_sim.market.strategies import CounterfactualFn, Feedback, StrategySetup
from market_sim.platform.base import AuctionOutcome, Bidder, Platform, Report
from market_sim.results import NULLABLE_AGENT_COLUMNS
from market_sim.scenario.bounds import SEED_MAX
from market_sim.scenario.schema import Scenario

SEED_BOUND = SEED_MAX
"""Round seeds are drawn below the scenario's seed bound (numpy's and torch's generators)."""


@dataclass(frozen=True)
class RoundPlan:
    """Everything a round decides before the platform runs: K queries and K x n reports.

    Attributes:
        queries: ``[K]`` the queries of the round's auctions.
        stream_fields: ``[K]`` the query stream's extra record columns of each query.
        valuations: ``[K][n]`` each advertiser's valuation in each auction.
        reports: ``[K][n]`` each advertiser's report in each auction.
        states: ``[K][n]`` each strategy's state right after it reported (record columns).
        bidders: ``[K][n]`` what the platform sees (context and report).
        seed: Seeds every random draw of the platform's batch.
    """

    queries: list[str]
    stream_fields: list[dict[str, object]]
    valuations: list[list[float]]
    reports: list[list[Report]]
    states: list[list[dict[str, float]]]
    bidders: list[list[Bidder]]
    seed: int


class MarketModel(mesa.Model):
    """A repeated ad marketplace (docs/design.md, section 2.2), K auctions per round.

    Each :meth:`step` is one round of ``scenario.auctions_per_round = K`` auctions:

    1. :meth:`plan_round`: draw K queries from the stream, then for each auction every
       advertiser draws its valuation and reports (auction by auction, advertiser by
       advertiser), then one platform seed;
    2. the platform runs the K auctions as one batch (:meth:`Platform.run_auctions`);
    3. :meth:`settle_round`: advertisers are paid out in value (measured with their TRUE
       preferences) and charged; one record per auction and per (auction, advertiser) is
       appended to :attr:`round_records` and :attr:`agent_records`; where the platform gives a
       counterfactual, the regret estimator (:mod:`market_sim.incentives.regret`) measures
       every advertiser's gain from deviating in every auction of the rounds
       ``scenario.regret`` asks for, with the auction's randomness held fixed;
    4. every strategy learns once from its K feedbacks (``Strategy.update_round``).

    With K = 1 the draws happen in the same order as one auction per round always did, so
    results for a seed do not depend on whether ``auctions_per_round`` is given.

    All randomness flows from ``scenario.seed``: mesa's numpy generator draws valuations, query
    order, the strategies' actions and, per round, the seed of the platform's torch generator.

    Args:
        scenario: The validated scenario.
        platform: The mechanism on the language model.
        run_id: Identifier written into every record.
        vectorize: Let rounds of K > 1 ad-slot auctions beside a cached reply run as array
            operations (:mod:`market_sim.market.array_round`: the same rules and learners,
            the random draws in another order); False keeps the generic round everywhere.
        query_stream: Builds the query stream from the model's generator (default: the static
            pool of ``scenario.queries``).
    """

    def __init__(
        self,
        scenario: Scenario,
        platform: Platform,
        run_id: str,
        query_stream: Callable[[np.random.Generator], QueryStream] | None = None,
        vectorize: bool = True,
    ) -> None:
        super().__init__(rng=scenario.seed)
        self.scenario = scenario
        self.platform = platform
        self.run_id = run_id
        self.round_index = 0
        self.auctions_per_round = scenario.auctions_per_round
        self.query_stream: QueryStream = (
            query_stream(self.rng)
            if query_stream is not None
            else StaticQueryStream(scenario.queries.items, scenario.queries.order, self.rng)
        )
        setup = {
            "horizon": scenario.rounds * scenario.auctions_per_round,
            "auctions_per_round": scenario.auctions_per_round,
            "contexts": len(set(scenario.queries.items)),
            "report_space": platform.report_space,
        }
        self.advertisers = [
            Advertiser(self, config, StrategySetup(**setup, where=f"advertisers.{i}.strategy"))
            for i, config in enumerate(scenario.advertisers)
        ]
        self.round_records: list[dict[str, Any]] = []
        self.agent_records: list[dict[str, Any]] = []
        # Rounds of K > 1 no-LM slot auctions run as array operations (records in its arrays).
        self.array_round = ArraySlotRound.for_model(self) if vectorize else None

    def step(self) -> None:
        """Run one round of K auctions and record it."""
        if self.array_round is not None:
            self.array_round.run(self.round_index)
            self.round_index += 1
            return
        plan = self.plan_round()
        outcomes = self.platform.run_auctions(plan.queries, plan.bidders, plan.seed)
        self.settle_round(plan, outcomes)

    def tables(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The records so far: one row per auction, and one per (auction, advertiser)."""
        if self.array_round is not None:
            return self.array_round.tables()
        rounds = pl.from_dicts(self.round_records, infer_schema_length=None)
        agents = pl.from_dicts(self.agent_records, infer_schema_length=None).with_columns(
            pl.col(name).cast(pl.Float64) for name in NULLABLE_AGENT_COLUMNS
        )
        return rounds, agents

    def plan_round(self) -> RoundPlan:
        """Draw the round's K queries, K x n valuations and reports, and the platform seed."""
        queries: list[str] = []
        stream_fields: list[dict[str, object]] = []
        for _ in range(self.auctions_per_round):
            queries.append(self.query_stream.next_query())
            stream_fields.append(self.query_stream.round_fields())
        valuations, reports, states, bidders = [], [], [], []
        for query in queries:
            auction_bidders = [advertiser.prepare(query) for advertiser in self.advertisers]
            bidders.append(auction_bidders)
            valuations.append([advertiser.valuation for advertiser in self.advertisers])
            reports.append([bidder.report for bidder in auction_bidders])
            states.append([advertiser.strategy.state() for advertiser in self.advertisers])
        round_seed = int(self.rng.integers(SEED_BOUND))
        return RoundPlan(queries, stream_fields, valuations, reports, states, bidders, round_seed)

    def settle_round(self, plan: RoundPlan, outcomes: list[AuctionOutcome]) -> None:
        """Record the K outcomes, then let every advertiser learn from its K feedbacks."""
        if len(outcomes) != len(plan.queries):
            raise ValueError(f"platform returned {len(outcomes)} outcomes for {len(plan.queries)}")
        feedbacks: list[list[Feedback]] = [[] for _ in self.advertisers]
        for auction, outcome in enumerate(outcomes):
            for i, feedback in enumerate(self.settle_auction(plan, auction, outcome)):
                feedbacks[i].append(feedback)
        for advertiser, own in zip(self.advertisers, feedbacks, strict=True):
            advertiser.observe_round(own)
        self.round_index += 1

    def settle_auction(
        self, plan: RoundPlan, auction: int, outcome: AuctionOutcome
    ) -> list[Feedback]:
        """Append one auction's records and return each advertiser's feedback."""
        query = plan.queries[auction]
        valuations = plan.valuations[auction]
        values = [valuations[i] * float(outcome.allocations[i]) for i in range(len(valuations))]
        payments = [float(p) for p in outcome.payments]
        mentioned = [
            advertiser.name
            for advertiser in self.advertisers
            if advertiser.mentioned_in(outcome.text)
        ]
        self.round_records.append(
            {
                "run_id": self.run_id,
                "round": self.round_index,
                "auction": auction,
                "query": query,
                "mechanism": self.platform.kind,
                "text": outcome.text,
                "revenue": sum(payments),
                "advertiser_value": sum(values),
                "user_value": outcome.user_value,
                "social_welfare": sum(values) + outcome.user_value,
                "brands_mentioned": mentioned,
                "round_seed": plan.seed,
                **plan.stream_fields[auction],
                **outcome.extras,
            }
        )
        feedbacks = []
        for i, advertiser in enumerate(self.advertisers):
            valuation, report = valuations[i], plan.reports[auction][i]
            utility = values[i] - payments[i]
            counterfactual = self.counterfactual_for(outcome, i)
            incentives = self.measure_incentives(valuation, report, counterfactual, utility)
            self.agent_records.append(
                {
                    "run_id": self.run_id,
                    "round": self.round_index,
                    "auction": auction,
                    "agent": advertiser.name,
                    "valuation": valuation,
                    "bid": report.bid,
                    "report_scale": report.report_scale,
                    "allocation": float(outcome.allocations[i]),
                    "reported_allocation": float(outcome.reported_allocations[i]),
                    "value": values[i],
                    "payment": payments[i],
                    "utility": utility,
                    **incentives,
                    "mentioned": advertiser.name in mentioned,
                    **{f"strategy_{k}": v for k, v in plan.states[auction][i].items()},
                }
            )
            feedbacks.append(
                Feedback(
                    query,
                    valuation,
                    report,
                    float(outcome.allocations[i]),
                    payments[i],
                    utility,
                    counterfactual,
                )
            )
        return feedbacks

    def counterfactual_for(self, outcome: AuctionOutcome, agent: int) -> CounterfactualFn | None:
        """The auction's counterfactual bound to one advertiser (None if the platform has none)."""
        if outcome.counterfactual is None:
            return None
        engine = outcome.counterfactual
        return lambda reports: engine.evaluate(agent, reports)

    def measure_incentives(
        self,
        valuation: float,
        report: Report,
        counterfactual: CounterfactualFn | None,
        utility: float,
    ) -> dict[str, float | None]:
        """Regret columns of one (auction, advertiser) record (null where not measured).

        Regret is measured in every auction of the rounds ``scenario.regret`` selects
        (``round % every == 0``). ``truthful_utility`` is measured whenever regret is; on other
        rounds it is the realized utility of an advertiser that reported truthfully, else null.
        """
        config = self.scenario.regret
        truthful = report == Report(valuation, 1.0)
        estimate: RegretEstimate | None = None
        if counterfactual is not None and config.enabled and self.round_index % config.every == 0:
            estimate = estimate_regret(
                counterfactual, valuation, report, self.platform.report_space, config
            )
        if estimate is None:
            return {
                "regret": None,
                "best_response_gain": None,
                "truthful_utility": utility if truthful else None,
                "best_deviation_multiplier": None,
                "best_deviation_distortion": None,
            }
        return {
            "regret": estimate.regret,
            "best_response_gain": estimate.best_response_gain,
            "truthful_utility": estimate.truthful_utility,
            "best_deviation_multiplier": estimate.best_multiplier,
            "best_deviation_distortion": estimate.best_distortion,
        }
