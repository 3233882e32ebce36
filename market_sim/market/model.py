"""The market: one mesa model wiring queries, advertisers and the platform, round by round."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import mesa
import numpy as np
import polars as pl

from market_sim.config.bounds import SEED_MAX
from market_sim.incentives.regret import RegretEstimate, estimate_regret
from market_sim.market.agents import Advertiser, AuctionResult
from market_sim.market.array_replicates import run_in_lockstep
from market_sim.market.array_round import ArraySlotRound
from market_sim.market.queries import QueryStream, StaticQueryStream
from market_sim.market.strategies import CounterfactualFn, StrategySetup
from market_sim.platform.base import (
    AuctionBatch,
    AuctionOutcome,
    Bidder,
    Platform,
    Report,
    run_auction_groups,
)
from market_sim.platform.outcome_checks import (
    check_count,
    check_outcomes,
)
from market_sim.results.records import AGENTS, ROUNDS, RecordTable
from market_sim.scenario.schema import Scenario

SEED_BOUND = SEED_MAX
"""Round seeds are drawn below the scenario's seed bound (numpy's and torch's generators)."""
RECORD_CHUNK_ROWS = 65_536
"""Rows of a record table kept as Python lists before they are frozen into a typed frame.

The DataCollector holds a row's values as Python objects, about 32 bytes each; a typed polars
column holds 8. Freezing every ``RECORD_CHUNK_ROWS`` rows keeps a long run's records near the
typed size. Measured on classic_auctions.toml (four advertisers, one auction per round, 150,000
rounds, regret off): the records grow by 1.4 KB per auction instead of 3.2 KB, and the peak once
the tables are built is 785 MB instead of 1,163 MB (about 510 MB of it before round 0). Linearly
extrapolated, 10^7 auctions on the generic round need about 18 GB instead of 44 GB."""


@dataclass(frozen=True)
class RoundPlan:
    """What a round decides before the platform runs: K queries, K x n bids and a seed.

    Each advertiser keeps its own K bids (valuation, report, strategy state:
    :attr:`Advertiser.bids`); the plan holds what the platform sees.

    Attributes:
        queries: ``[K]`` the queries of the round's auctions.
        stream_fields: ``[K]`` the query stream's extra record columns of each query.
        bidders: ``[K][n]`` what the platform sees (context and report), in seat order.
        seed: Seeds every random draw of the platform's batch.
    """

    queries: list[str]
    stream_fields: list[dict[str, object]]
    bidders: list[list[Bidder]]
    seed: int


class MarketModel(mesa.Model):
    """A repeated ad marketplace (docs/design.md, section 2.2), K auctions per round.

    A mesa model: the advertisers are :class:`Advertiser` agents in ``model.agents``, activated
    through AgentSet methods in their creation order (``unique_id`` order; an agent's
    :attr:`~Advertiser.seat` is its position there, the index of its entries in the platform's
    outcome arrays; nothing shuffles them, since every draw of a round comes from one generator
    in that order). Each :meth:`step` is one round of ``scenario.auctions_per_round = K``
    auctions, and mesa's ``model.steps`` counts the rounds run (the records' ``round`` is
    ``steps - 1`` during the step, :attr:`current_round`):

    1. :meth:`plan_round`: draw K queries from the stream, then for each auction
       ``agents.map("bid", query)`` (each advertiser draws its valuation and reports), then one
       platform seed;
    2. the platform runs the K auctions as one batch (:meth:`Platform.run_auctions`);
    3. :meth:`settle_round`: per auction, ``agents.do("settle", auction, outcome)``: each
       advertiser takes its own outcome (value measured with its TRUE preferences, payment,
       utility and, where the platform gives a counterfactual on the rounds ``scenario.regret``
       asks for, its gain from deviating with the auction's randomness held fixed) and keeps
       it as ``agent.latest``; the datacollector records one row per auction and one per
       (auction, advertiser);
    4. ``agents.do("learn")``: every strategy learns once from its K outcomes.

    ``running`` turns False after ``scenario.rounds`` steps, so ``run_model()`` runs the
    scenario. With K = 1 the draws happen in the same order as one auction per round always
    did, so results for a seed do not depend on whether ``auctions_per_round`` is given. All
    randomness flows from ``scenario.seed``: mesa's numpy generator draws valuations, query
    order, the strategies' actions and, per round, the seed of the platform's torch generator.

    Records: mesa's ``DataCollector`` with one table per results file (``rounds`` and
    ``agents``, columns from :mod:`market_sim.results.records`), filled with ``add_table_row``: the
    rows are per auction, not per step, so model and agent reporters (one value per step) do
    not fit. Rounds of K > 1 ad-slot auctions beside a cached reply run as array code
    (:mod:`market_sim.market.array_round`) and keep their records as ``[K, n]`` arrays instead:
    there a round costs a few array operations, and one ``add_table_row`` per row costs far more
    than building the columns (``benchmarks/datacollector_rows.py``, K = 64, 3 advertisers,
    200 rounds, 51,200 rows, two runs at load 2.5 on 2 cores: columnar tables 0.02 to 0.04 s,
    the same rows through the DataCollector 1.1 s, 22 us per row, 33x to 49x; that is 1.3x to
    1.7x the time of the array rounds themselves).

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
            "query_order": scenario.queries.order,
            "report_space": platform.report_space,
        }
        for i, config in enumerate(scenario.advertisers):
            Advertiser(self, config, StrategySetup(**setup, where=f"advertisers.{i}.strategy"))
        self.datacollector = mesa.DataCollector(
            tables={ROUNDS.file: list(ROUNDS.names), AGENTS.file: list(AGENTS.names)}
        )
        self.frozen_records: dict[str, list[pl.DataFrame]] = {ROUNDS.file: [], AGENTS.file: []}
        """Per table, the typed frames of the rows frozen so far (:data:`RECORD_CHUNK_ROWS`)."""
        # Rounds of K > 1 no-LM slot auctions run as array operations (records in its arrays).
        self.array_round = ArraySlotRound.for_model(self) if vectorize else None
        self.running = scenario.rounds > 0

    @property
    def current_round(self) -> int:
        """The round being run (0-based): mesa's ``steps`` counts it from 1 when it starts."""
        return self.steps - 1

    def step(
        self,
        plan: RoundPlan | None = None,
        outcomes: Sequence[AuctionOutcome] | None = None,
        array_round_done: bool = False,
    ) -> None:
        """Run one round of K auctions and record it.

        Args:
            plan: The round's plan, when its auctions already ran outside (replicates in
                lockstep, :func:`step_in_lockstep`); None plans here.
            outcomes: The platform's K outcomes of ``plan`` (given with ``plan``).
            array_round_done: The array round already ran and recorded this round outside
                (replicates in lockstep); the step only counts it.
        """
        if self.array_round is not None:
            if not array_round_done:
                self.array_round.run(self.current_round)
        else:
            if plan is None:
                plan = self.plan_round()
                outcomes = self.platform.run_auctions(plan.queries, plan.bidders, plan.seed)
            if outcomes is None:
                raise ValueError("a planned round needs the platform's outcomes")
            self.settle_round(plan, outcomes)
        self.running = self.steps < self.scenario.rounds

    def plan_round(self) -> RoundPlan:
        """Draw the round's K queries, K x n valuations and reports, and the platform seed."""
        queries: list[str] = []
        stream_fields: list[dict[str, object]] = []
        for _ in range(self.auctions_per_round):
            queries.append(self.query_stream.next_query())
            stream_fields.append(self.query_stream.round_fields())
        bidders = [self.agents.map("bid", query) for query in queries]
        return RoundPlan(queries, stream_fields, bidders, int(self.rng.integers(SEED_BOUND)))

    def settle_round(self, plan: RoundPlan, outcomes: Sequence[AuctionOutcome]) -> None:
        """Settle and record the K auctions, then let every advertiser learn from its K."""
        check_outcomes(self.platform.kind, outcomes, len(plan.queries), len(self.agents))
        for auction, outcome in enumerate(outcomes):
            self.agents.do("settle", auction, outcome)
            results: list[AuctionResult] = self.agents.get("latest")
            self.add_row(ROUNDS, self.round_record(plan, auction, outcome, results))
            for row in self.agents.map("record"):
                self.add_row(AGENTS, row)
        self.agents.do("learn")

    def round_record(
        self, plan: RoundPlan, auction: int, outcome: AuctionOutcome, results: list[AuctionResult]
    ) -> dict[str, Any]:
        """The ``rounds.parquet`` row of one settled auction (sums in seat order)."""
        values = [result.value for result in results]
        payments = [result.payment for result in results]
        advertiser_value = sum(values)
        row = {
            "run_id": self.run_id,
            "round": self.current_round,
            "auction": auction,
            "query": plan.queries[auction],
            "mechanism": self.platform.kind,
            "text": outcome.text,
            "revenue": sum(payments),
            "advertiser_value": advertiser_value,
            "user_value": outcome.user_value,
            "social_welfare": advertiser_value + outcome.user_value,
            "brands_mentioned": [
                agent.name
                for agent, result in zip(self.agents, results, strict=True)
                if result.mentioned
            ],
            "round_seed": plan.seed,
            **plan.stream_fields[auction],
        }
        return {**row, **outcome.extras}  # names checked by check_outcomes

    def add_row(self, table: RecordTable, row: dict[str, Any]) -> None:
        """Append a row to the datacollector's table of ``table`` (undeclared keys refused).

        ``DataCollector.add_table_row`` would drop a key its table does not list; the schema
        check makes an undeclared key an error instead, and a key declared by prefix (a
        plugin's ``extra_<name>``) seen for the first time becomes a new column, null on the
        earlier rows.
        """
        table.check_names(list(row))
        collected = self.datacollector.tables[table.file]
        for name in row:
            if name not in collected:
                collected[name] = [None] * len(collected[table.columns[0].name])
        self.datacollector.add_table_row(table.file, row, ignore_missing=True)
        if len(collected[table.columns[0].name]) >= RECORD_CHUNK_ROWS:
            self.frozen_records[table.file].append(table.frame(collected))
            for name in collected:  # the DataCollector goes on appending to these lists
                collected[name] = []

    def tables(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The records so far, typed by :mod:`market_sim.results.records`.

        Returns:
            ``rounds`` (one row per auction) and ``agents`` (one per (auction, advertiser)).
        """
        if self.array_round is not None:
            return self.array_round.tables()
        return self.table(ROUNDS), self.table(AGENTS)

    def table(self, table: RecordTable) -> pl.DataFrame:
        """One record table: its frozen frames and the rows still in the DataCollector's lists.

        The frames are joined diagonally (a column that a chunk left out, being all null there,
        is null on its rows) and put in declared order: the frame equals one built from all rows
        at once. They are not copied into one contiguous frame (that would hold the table twice
        at the end of the run), so the parquet file of a run of more than
        :data:`RECORD_CHUNK_ROWS` rows lays its pages out by chunk: other bytes than one frame's
        file, the same values, and the same bytes on every rerun.
        """
        collected = self.datacollector.tables[table.file]
        frames = [*self.frozen_records[table.file], table.frame(collected)]
        if len(frames) == 1:
            return frames[0]
        joined = pl.concat([f for f in frames if f.height], how="diagonal", rechunk=False)
        return joined.select(name for name, _ in table.ordered(joined.columns))

    def measure_incentives(
        self,
        valuation: float,
        report: Report,
        counterfactual: CounterfactualFn | None,
        utility: float,
        find_jump_bids: Callable[[], np.ndarray | None] | None = None,
    ) -> dict[str, float | None]:
        """Regret columns of one (auction, advertiser) record (null where not measured).

        Regret is measured in every auction of the rounds ``scenario.regret`` selects
        (``round % every == 0``). ``truthful_utility`` is measured whenever regret is; on other
        rounds it is the realized utility of an advertiser that reported truthfully, else null,
        and null where the platform's counterfactual is not the realized outcome (see
        :class:`~market_sim.platform.base.Platform`: ex-post token auctions).
        ``find_jump_bids`` gives the counterfactual's ``[J]`` jump bids
        (:class:`~market_sim.platform.base.JumpBids`; None where it has none), which join the
        search's coarse grid; it is called only where regret is searched.
        """
        config = self.scenario.regret
        truthful = report == Report(valuation, 1.0) and getattr(
            self.platform, "counterfactual_is_realized", True
        )
        estimate: RegretEstimate | None = None
        measured_round = self.current_round % config.every == 0
        if counterfactual is not None and config.enabled and measured_round:
            estimate = estimate_regret(
                counterfactual,
                valuation,
                report,
                self.platform.report_space,
                config,
                jump_bids=None if find_jump_bids is None else find_jump_bids(),
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


def strategy_modules(market: MarketModel) -> tuple[list[str], dict[str, list[str]]]:
    """The advertisers' strategy kinds, and kind -> the modules of the strategy objects built.

    What :func:`~market_sim.scenario.strategy_plugins.strategy_origins` hashes besides a
    plugin's factory: the class a factory builds may live in another module.
    """
    kinds = [advertiser.strategy.kind for advertiser in market.scenario.advertisers]
    modules: dict[str, list[str]] = {}
    for kind, agent in zip(kinds, market.agents, strict=True):
        modules.setdefault(kind, []).append(type(agent.strategy).__module__)
    return kinds, modules


def step_in_lockstep(markets: Sequence[MarketModel]) -> None:
    """One round of each replicate market, their auctions in one platform call where possible.

    Every market plans its round with its own generator, the platform runs the R x K auctions
    as one decode where it can (:func:`run_auction_groups`: the token auction; other platforms
    run replicate after replicate), then each market steps on its own outcomes. Array rounds
    make no LM call per auction; their auctions and counterfactuals run as ``[R K, n]`` arrays
    (:func:`market_sim.market.array_replicates.run_in_lockstep`).

    Raises:
        ValueError: The markets are not at the same round.
    """
    if len({market.steps for market in markets}) > 1:
        raise ValueError(
            f"markets in lockstep must be at the same round, got {[m.steps for m in markets]}"
        )
    rounds = [market.array_round for market in markets if market.array_round is not None]
    if rounds:
        run_in_lockstep(rounds, markets[0].steps)  # steps counts finished rounds until step()
        for market in markets:
            if market.array_round is not None:
                market.step(array_round_done=True)
    shared = [market for market in markets if market.array_round is None]
    if not shared:
        return
    plans = [market.plan_round() for market in shared]
    batches = [AuctionBatch(plan.queries, plan.bidders, plan.seed) for plan in plans]
    outcomes = run_auction_groups([market.platform for market in shared], batches)
    check_count(
        shared[0].platform.kind,
        "run_auction_groups",
        outcomes,
        len(batches),
        "lists of outcomes",
        "batches (one per replicate)",
    )
    for market, plan, own in zip(shared, plans, outcomes, strict=True):
        market.step(plan, own)
