"""The market: one mesa model wiring queries, advertisers and the platform, round by round."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mesa
import numpy as np

from market_sim.incentives.regret import RegretEstimate, estimate_regret
from market_sim.market.agents import Advertiser
from market_sim.market.queries import QueryStream, StaticQueryStream
from market_sim.market.strategies import CounterfactualFn, Feedback, StrategySetup
from market_sim.platform.base import AuctionOutcome, Platform, Report
from market_sim.scenario.schema import Scenario

SEED_BOUND = 2**63 - 1


class MarketModel(mesa.Model):
    """A repeated ad marketplace (DESIGN.md section 2).

    Each :meth:`step` is one round: a query arrives, every advertiser draws its valuation and
    reports, the platform runs the mechanism on the LM, advertisers are paid out in value
    (measured with their TRUE preferences) and charged, then learn from the outcome. One record
    per round and per (round, advertiser) is appended to :attr:`round_records` and
    :attr:`agent_records`. Where the platform gives a counterfactual, the regret estimator
    (:mod:`market_sim.incentives.regret`) measures every advertiser's gain from deviating, on
    the rounds ``scenario.regret`` asks for, with the round's randomness held fixed.

    All randomness flows from ``scenario.seed``: mesa's numpy generator draws valuations, query
    order and, per round, the seed of the platform's torch generator.

    Args:
        scenario: The validated scenario.
        platform: The mechanism on the language model.
        run_id: Identifier written into every record.
        query_stream: Builds the query stream from the model's generator (default: the static
            pool of ``scenario.queries``).
    """

    def __init__(
        self,
        scenario: Scenario,
        platform: Platform,
        run_id: str,
        query_stream: Callable[[np.random.Generator], QueryStream] | None = None,
    ) -> None:
        super().__init__(rng=scenario.seed)
        self.scenario = scenario
        self.platform = platform
        self.run_id = run_id
        self.round_index = 0
        self.query_stream: QueryStream = (
            query_stream(self.rng)
            if query_stream is not None
            else StaticQueryStream(scenario.queries.items, scenario.queries.order, self.rng)
        )
        setup = {
            "horizon": scenario.rounds,
            "contexts": len(set(scenario.queries.items)),
            "report_space": platform.report_space,
        }
        self.advertisers = [
            Advertiser(self, config, StrategySetup(**setup, where=f"advertisers.{i}.strategy"))
            for i, config in enumerate(scenario.advertisers)
        ]
        self.round_records: list[dict[str, Any]] = []
        self.agent_records: list[dict[str, Any]] = []

    def step(self) -> None:
        """Run one round and record it."""
        query = self.query_stream.next_query()
        bidders = [advertiser.prepare(query) for advertiser in self.advertisers]
        round_seed = int(self.rng.integers(SEED_BOUND))
        outcome = self.platform.run_auctions([query], [bidders], round_seed)[0]
        values = [
            advertiser.valuation * float(outcome.allocations[i])
            for i, advertiser in enumerate(self.advertisers)
        ]
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
                "query": query,
                "mechanism": self.platform.kind,
                "text": outcome.text,
                "revenue": sum(payments),
                "advertiser_value": sum(values),
                "user_value": outcome.user_value,
                "social_welfare": sum(values) + outcome.user_value,
                "brands_mentioned": mentioned,
                "round_seed": round_seed,
                **self.query_stream.round_fields(),
                **outcome.extras,
            }
        )
        for i, advertiser in enumerate(self.advertisers):
            utility = values[i] - payments[i]
            report = advertiser.report
            counterfactual = self.counterfactual_for(outcome, i)
            incentives = self.measure_incentives(advertiser, counterfactual, utility)
            self.agent_records.append(
                {
                    "run_id": self.run_id,
                    "round": self.round_index,
                    "agent": advertiser.name,
                    "valuation": advertiser.valuation,
                    "bid": report.bid,
                    "report_scale": report.report_scale,
                    "allocation": float(outcome.allocations[i]),
                    "reported_allocation": float(outcome.reported_allocations[i]),
                    "value": values[i],
                    "payment": payments[i],
                    "utility": utility,
                    **incentives,
                    "mentioned": advertiser.name in mentioned,
                    **{f"strategy_{k}": v for k, v in advertiser.strategy.state().items()},
                }
            )
            advertiser.observe(
                Feedback(
                    query,
                    advertiser.valuation,
                    report,
                    float(outcome.allocations[i]),
                    payments[i],
                    utility,
                    counterfactual,
                )
            )
        self.round_index += 1

    def counterfactual_for(self, outcome: AuctionOutcome, agent: int) -> CounterfactualFn | None:
        """The round's counterfactual bound to one advertiser (None if the platform has none)."""
        if outcome.counterfactual is None:
            return None
        engine = outcome.counterfactual
        return lambda reports: engine.evaluate(agent, reports)

    def measure_incentives(
        self, advertiser: Advertiser, counterfactual: CounterfactualFn | None, utility: float
    ) -> dict[str, float | None]:
        """Regret columns of one (round, advertiser) record (null where not measured).

        ``truthful_utility`` is measured whenever regret is; on other rounds it is the realized
        utility of an advertiser that reported truthfully, else null.
        """
        config = self.scenario.regret
        report = advertiser.report
        truthful = report == Report(advertiser.valuation, 1.0)
        estimate: RegretEstimate | None = None
        if counterfactual is not None and config.enabled and self.round_index % config.every == 0:
            estimate = estimate_regret(
                counterfactual,
                advertiser.valuation,
                report,
                self.platform.report_space,
                config,
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
