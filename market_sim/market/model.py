"""The market: one mesa model wiring queries, advertisers and the platform, round by round."""

from __future__ import annotations

from typing import Any

import mesa

from market_sim.market.agents import Advertiser
from market_sim.market.queries import StaticQueryStream
from market_sim.market.strategies import Feedback
from market_sim.platform.base import Platform
from market_sim.scenario.schema import Scenario

SEED_BOUND = 2**63 - 1


class MarketModel(mesa.Model):
    """A repeated ad marketplace (DESIGN.md section 2).

    Each :meth:`step` is one round: a query arrives, every advertiser draws its valuation and
    reports, the platform runs the mechanism on the LM, advertisers are paid out in value
    (measured with their TRUE preferences) and charged, then learn from the outcome. One record
    per round and per (round, advertiser) is appended to :attr:`round_records` and
    :attr:`agent_records`.

    All randomness flows from ``scenario.seed``: mesa's numpy generator draws valuations, query
    order and, per round, the seed of the platform's torch generator.

    Args:
        scenario: The validated scenario.
        platform: The mechanism on the language model.
        run_id: Identifier written into every record.
    """

    def __init__(self, scenario: Scenario, platform: Platform, run_id: str) -> None:
        super().__init__(rng=scenario.seed)
        self.scenario = scenario
        self.platform = platform
        self.run_id = run_id
        self.round_index = 0
        self.query_stream = StaticQueryStream(
            scenario.queries.items, scenario.queries.order, self.rng
        )
        self.advertisers = [Advertiser(self, config) for config in scenario.advertisers]
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
                **outcome.extras,
            }
        )
        for i, advertiser in enumerate(self.advertisers):
            utility = values[i] - payments[i]
            report = advertiser.report
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
                    "regret": None,
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
                )
            )
        self.round_index += 1
