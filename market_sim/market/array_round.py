r"""A market round of K ad-slot auctions as array operations (the vectorized no-LM path).

When the platform's auctions need no LM call (ad slots beside a cached reply: one ``generate``
per distinct query, ever), the per-auction Python of the generic round is all that is left, so
:class:`~market_sim.market.model.MarketModel` hands such rounds to :class:`ArraySlotRound`:

1. queries ``[K]``, valuations ``[K, n]``, actions and reports ``[K, n]``, tie-break ``[K, n]``;
2. the K auctions at once (:func:`~market_sim.mechanisms.slot_auctions_array.rank_slot_auction`);
3. learner updates over ``[K]`` (:mod:`market_sim.market.array_learners`), the counterfactual of
   every learner in closed form (:func:`~market_sim.mechanisms.slot_auctions_array.bidder_outcome`);
4. records kept as arrays and turned into the same two tables as the generic path (same
   columns, same order, one row per auction and per (auction, advertiser)).

The rules, the learners' semantics (policy fixed within a round, one action per auction, one
update per round) and every record equal the generic path's given the same draws. The **order of
the random draws** differs: the generic path draws auction by auction (query, then each
advertiser's valuation and action), the platform one permutation per auction; this path draws
each quantity as one block per round from the model's generator:

1. ``[K]`` query indices (``order = "sample"``; ``cycle`` draws nothing);
2. per advertiser, ``[K]`` valuations (per-round distributions only);
3. per advertiser, its strategy's block (Hedge and EXP3: ``[K]`` uniforms; epsilon-greedy:
   ``[K]`` uniforms then ``[K]`` action indices; fixed and UCB1: nothing);
4. ``[K, n]`` tie-break: a uniformly random permutation of the bidders per auction;
5. one round seed (the LM's seed for the replies of queries not yet cached).

Every quantity has the same distribution as on the generic path (queries i.i.d. from the pool
or cycling, valuations i.i.d. from their distributions, actions i.i.d. from the start-of-round
policy, uniform tie-break permutations), and all are independent as there, so the two paths are
equal in distribution; a run is deterministic in its seed and K. With the same seed the two
paths give different draws, hence different numbers, which is why the model takes this path only
for K > 1 (K = 1 keeps every existing result) and only where every strategy has an array
adapter. Regret (on the rounds ``[regret]`` asks for) reuses the generic estimator per (auction,
advertiser) on the platform's counterfactual.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from market_sim.config.bounds import SEED_MAX
from market_sim.incentives.regret import estimate_regret
from market_sim.market.array_learners import (
    ArrayStrategy,
    BidderRound,
    CounterfactualUtilities,
    array_strategy,
)
from market_sim.market.queries import StaticQueryStream
from market_sim.market.valuations import ValuationSource
from market_sim.mechanisms.slot_auctions_array import bidder_outcome, rank_slot_auction
from market_sim.platform.base import Report
from market_sim.platform.slot_auction import SlotAuctionCounterfactual, SlotAuctionPlatform
from market_sim.records import AGENTS, REGRET_COLUMNS, ROUNDS, STRATEGY_PREFIX, RecordTable

if TYPE_CHECKING:
    from market_sim.market.model import MarketModel

SEED_BOUND = SEED_MAX
"""Round seeds are drawn below the scenario's seed bound, as on the generic path."""


def draw_valuations(source: ValuationSource, count: int, rng: np.random.Generator) -> np.ndarray:
    """``[K]`` valuations of one advertiser: one block draw for per-round distributions."""
    config = source.config
    if config.dist == "fixed" or config.redraw == "once":
        return np.full(count, source.valuation(rng))
    if config.dist == "uniform":
        return rng.uniform(config.low, config.high, size=count)
    if config.dist == "lognormal":
        return rng.lognormal(config.mean, config.sigma, size=count)
    raise ValueError(f"valuation dist {config.dist!r} unknown; allowed: fixed, uniform, lognormal")


@dataclass(frozen=True)
class QueryReply:
    """What the records need of one distinct query's cached reply.

    Attributes:
        text: The decoded reply.
        n_tokens: Its token count.
        stopped: 1.0 when it stopped at EOS.
        mentioned: Names of the advertisers it mentions, in advertiser order.
    """

    text: str
    n_tokens: float
    stopped: float
    mentioned: list[str]


@dataclass
class RoundArrays:
    """One round's arrays (K auctions, n advertisers), kept until the tables are built."""

    query_index: np.ndarray  # [K] int
    round_seed: int
    valuations: np.ndarray  # [K, n]
    bids: np.ndarray  # [K, n]
    report_scales: np.ndarray  # [K, n]
    allocations: np.ndarray  # [K, n] (slot_value units)
    payments: np.ndarray  # [K, n]
    slots_filled: np.ndarray  # [K]
    incentives: np.ndarray | None  # [len(REGRET_COLUMNS), K, n] on regret rounds, else None
    states: list[dict[str, float]]  # [n] start-of-round strategy states


class ArraySlotRound:
    """Runs the market's rounds of K slot auctions as array operations.

    Build it with :meth:`for_model`, which returns None where the path does not apply.

    Args:
        model: The market (scenario, generator, advertisers, query stream, platform).
        platform: The slot-auction platform with a cached reply.
        strategies: One array adapter per advertiser, in advertiser order.
    """

    def __init__(
        self,
        model: MarketModel,
        platform: SlotAuctionPlatform,
        strategies: list[ArrayStrategy],
    ) -> None:
        self.model = model
        self.platform = platform
        self.strategies = strategies
        self.auctions = model.scenario.auctions_per_round
        self.items = list(model.query_stream.items)
        self.order = model.query_stream.order
        self.served = 0
        self.replies: dict[int, QueryReply] = {}
        self.rounds: list[RoundArrays] = []

    @classmethod
    def for_model(cls, model: MarketModel) -> ArraySlotRound | None:
        """The array round of a market, or None when a round must take the generic path.

        It applies when K > 1, the platform is a slot auction with a cached reply (no LM call
        per auction), the queries come from the static pool and every advertiser's strategy
        has an array adapter (fixed, truthful, Hedge, EXP3, epsilon-greedy, UCB1).
        """
        platform = model.platform
        if model.scenario.auctions_per_round <= 1:
            return None
        if not isinstance(platform, SlotAuctionPlatform) or platform.needs_lm_per_auction:
            return None
        if not isinstance(model.query_stream, StaticQueryStream):
            return None
        strategies = [array_strategy(a.strategy) for a in model.agents]
        if any(strategy is None for strategy in strategies):
            return None
        return cls(model, platform, strategies)  # type: ignore[arg-type]

    def draw_queries(self, rng: np.random.Generator) -> np.ndarray:
        """``[K]`` indices into the query pool (cycle: no draw; sample: one block)."""
        if self.order == "cycle":
            indices = (self.served + np.arange(self.auctions)) % len(self.items)
        else:
            indices = rng.integers(len(self.items), size=self.auctions)
        self.served += self.auctions
        return indices

    def cache_replies(self, query_index: np.ndarray, seed: int) -> None:
        """Generate (one batch) and remember the replies of queries seen for the first time."""
        if len(self.replies) == len(self.items):
            return
        new = [int(q) for q in np.unique(query_index) if int(q) not in self.replies]
        if not new:
            return
        platform = self.platform
        tokens = platform.replies([self.items[q] for q in new], seed)
        for q, reply in zip(new, tokens, strict=True):
            text = platform.lm.decode(reply).strip()
            self.replies[q] = QueryReply(
                text=text,
                n_tokens=float(len(reply)),
                stopped=float(len(reply) < platform.max_new_tokens),
                mentioned=[a.name for a in self.model.agents if a.mentioned_in(text)],
            )

    def run(self, round_index: int) -> None:
        """Run round ``round_index``: K auctions, learner updates, arrays for the records."""
        model, platform, rng = self.model, self.platform, self.model.rng
        count, bidders = self.auctions, len(self.strategies)
        query_index = self.draw_queries(rng)
        valuations = np.stack(
            [draw_valuations(a.valuation_source, count, rng) for a in model.agents], axis=1
        )
        states = [strategy.strategy.state() for strategy in self.strategies]
        drawn = [
            strategy.reports(valuations[:, i], rng) for i, strategy in enumerate(self.strategies)
        ]
        actions = np.stack([d[0] for d in drawn], axis=1)
        bids = np.stack([d[1] for d in drawn], axis=1)
        report_scales = np.stack([d[2] for d in drawn], axis=1)
        if bids.min() < 0:
            raise ValueError("a strategy produced a negative bid")
        priority = rng.permuted(np.broadcast_to(np.arange(bidders), (count, bidders)), axis=1)
        round_seed = int(rng.integers(SEED_BOUND))
        self.cache_replies(query_index, round_seed)
        rates, kind, scale = platform.click_through_rates, platform.kind, platform.slot_value
        outcome = rank_slot_auction(bids, rates, kind, priority)
        allocations = outcome.allocations * scale
        payments = outcome.payments * scale
        utilities = valuations * allocations - payments
        incentives = self.measure_incentives(round_index, valuations, bids, report_scales, priority)
        for i, strategy in enumerate(self.strategies):
            strategy.learn(
                BidderRound(
                    valuations=valuations[:, i],
                    actions=actions[:, i],
                    utilities=utilities[:, i],
                    counterfactual_utilities=self.counterfactual(i, valuations, bids, priority),
                )
            )
        self.rounds.append(
            RoundArrays(
                query_index=query_index,
                round_seed=round_seed,
                valuations=valuations,
                bids=bids,
                report_scales=report_scales,
                allocations=allocations,
                payments=payments,
                slots_filled=slots_filled(outcome.slots),
                incentives=incentives,
                states=states,
            )
        )

    def counterfactual(
        self, agent: int, valuations: np.ndarray, bids: np.ndarray, priority: np.ndarray
    ) -> CounterfactualUtilities:
        """``[K, A]`` candidate bids -> ``[K, A]`` utilities of ``agent``, the rest held fixed."""
        platform = self.platform

        def utilities(candidates: np.ndarray) -> np.ndarray:
            others = np.delete(np.arange(bids.shape[1]), agent)
            other_bids, other_priority = bids[:, others], priority[:, others]
            own_priority, own_values = priority[:, agent], valuations[:, agent, None]
            allocations, payments = bidder_outcome(
                other_bids,
                other_priority,
                own_priority,
                candidates,
                platform.click_through_rates,
                platform.kind,
            )
            scale = platform.slot_value
            return own_values * (allocations * scale) - payments * scale

        return utilities

    def measure_incentives(
        self,
        round_index: int,
        valuations: np.ndarray,
        bids: np.ndarray,
        report_scales: np.ndarray,
        priority: np.ndarray,
    ) -> np.ndarray | None:
        """``[5, K, n]`` regret columns (:data:`REGRET_COLUMNS`), None on unmeasured rounds.

        On the rounds ``[regret]`` selects, the generic estimator searches every (auction,
        advertiser) on the platform's own counterfactual, exactly as the generic path does.
        """
        config = self.model.scenario.regret
        if not config.enabled or round_index % config.every != 0:
            return None
        count, bidders = bids.shape
        columns = np.empty((len(REGRET_COLUMNS), count, bidders))
        platform = self.platform
        for k in range(count):
            engine = SlotAuctionCounterfactual(
                bids[k],
                priority[k],
                platform.click_through_rates,
                platform.kind,
                platform.slot_value,
            )
            for i in range(bidders):
                estimate = estimate_regret(
                    functools.partial(engine.evaluate, i),
                    float(valuations[k, i]),
                    Report(float(bids[k, i]), float(report_scales[k, i])),
                    platform.report_space,
                    config,
                )
                columns[:, k, i] = (
                    estimate.regret,
                    estimate.best_response_gain,
                    estimate.truthful_utility,
                    estimate.best_multiplier,
                    estimate.best_distortion,
                )
        return columns

    def tables(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The rounds table (one row per auction) and the agents table (per auction, advertiser).

        Same columns, order and dtypes as the generic path's records; rows in (round, auction)
        and (round, auction, advertiser) order.
        """
        model = self.model
        names = [a.name for a in model.agents]
        rounds, count, bidders = len(self.rounds), self.auctions, len(names)
        rows = rounds * count

        def stacked(field: str) -> np.ndarray:
            return np.concatenate([getattr(r, field) for r in self.rounds])

        query_index = stacked("query_index") if rounds else np.zeros(0, dtype=np.int64)
        seen = sorted(self.replies)
        lookup = np.zeros(len(self.items), dtype=np.int64)
        lookup[seen] = np.arange(len(seen))
        position = lookup[query_index]
        replies = [self.replies[q] for q in seen]
        n_tokens = np.array([r.n_tokens for r in replies])[position]
        stopped = np.array([r.stopped for r in replies])[position]
        user_value = n_tokens + stopped
        if rounds:
            allocations, payments = stacked("allocations"), stacked("payments")
            valuations = stacked("valuations")
        else:
            allocations = payments = valuations = np.zeros((0, bidders))
        values = valuations * allocations
        revenue, advertiser_value = np.zeros(rows), np.zeros(rows)
        for i in range(bidders):  # left to right, as Python's sum on the generic path
            revenue += payments[:, i]
            advertiser_value += values[:, i]
        round_column = np.repeat(np.arange(rounds, dtype=np.int64), count)
        auction_column = np.tile(np.arange(count, dtype=np.int64), rounds)
        round_table = frame(
            ROUNDS,
            {
                "run_id": model.run_id,
                "round": round_column,
                "auction": auction_column,
                "query": pl.Series([self.items[q] for q in seen], dtype=pl.String).gather(position),
                "mechanism": self.platform.kind,
                "text": pl.Series([r.text for r in replies], dtype=pl.String).gather(position),
                "revenue": revenue,
                "advertiser_value": advertiser_value,
                "user_value": user_value,
                "social_welfare": advertiser_value + user_value,
                "brands_mentioned": pl.Series(
                    [r.mentioned for r in replies], dtype=pl.List(pl.String)
                ).gather(position),
                "round_seed": np.repeat(
                    np.array([r.round_seed for r in self.rounds], dtype=np.int64), count
                ),
                "n_tokens": n_tokens,
                "stopped_at_eos": stopped,
                "slots_filled": stacked("slots_filled") if rounds else np.zeros(0),
            },
        )
        return round_table, self.agent_table(position, replies, valuations, allocations, payments)

    def agent_table(
        self,
        position: np.ndarray,
        replies: list[QueryReply],
        valuations: np.ndarray,
        allocations: np.ndarray,
        payments: np.ndarray,
    ) -> pl.DataFrame:
        """The agents table from the stacked ``[R K, n]`` arrays (rows auction-major)."""
        model = self.model
        names = [a.name for a in model.agents]
        rounds, count, bidders = len(self.rounds), self.auctions, len(names)
        mentions = np.array(
            [[name in r.mentioned for name in names] for r in replies], dtype=bool
        ).reshape(len(replies), bidders)
        values = valuations * allocations
        if rounds:
            bids = np.concatenate([r.bids for r in self.rounds])
            scales = np.concatenate([r.report_scales for r in self.rounds])
        else:
            bids = scales = np.zeros((0, bidders))
        unmeasured = np.full((len(REGRET_COLUMNS), count, bidders), np.nan)
        incentives = np.concatenate(
            [unmeasured if r.incentives is None else r.incentives for r in self.rounds]
            or [unmeasured[:, :0]],
            axis=1,
        )
        # Unmeasured rounds: truthful_utility is the realized utility of a truthful report.
        truthful = (bids == valuations) & (scales == 1.0)
        incentives[2] = np.where(
            np.isnan(incentives[2]) & truthful, values - payments, incentives[2]
        )
        columns: dict[str, Any] = {
            "run_id": model.run_id,
            "round": np.repeat(np.arange(rounds, dtype=np.int64), count * bidders),
            "auction": np.tile(np.repeat(np.arange(count, dtype=np.int64), bidders), rounds),
            "agent": pl.Series(names, dtype=pl.String).gather(
                np.tile(np.arange(bidders), rounds * count)
            ),
            "valuation": valuations.ravel(),
            "bid": bids.ravel(),
            "report_scale": scales.ravel(),
            "allocation": allocations.ravel(),
            "reported_allocation": allocations.ravel(),
            "value": values.ravel(),
            "payment": payments.ravel(),
            "utility": (values - payments).ravel(),
        }
        for name, column in zip(REGRET_COLUMNS, incentives, strict=True):
            columns[name] = nullable_column(column.ravel())
        columns["mentioned"] = mentions[position].ravel()
        for key, state in self.state_columns().items():
            columns[STRATEGY_PREFIX + key] = nullable_column(
                np.repeat(state, count, axis=0).ravel()
            )
        return frame(AGENTS, columns)

    def state_columns(self) -> dict[str, np.ndarray]:
        """``[R, n]`` start-of-round strategy states per key (NaN where a strategy has none).

        Keys in order of first appearance (advertiser by advertiser), as the generic records.
        """
        keys = list(dict.fromkeys(k for r in self.rounds[:1] for s in r.states for k in s))
        return {
            key: np.array(
                [[state.get(key, np.nan) for state in r.states] for r in self.rounds],
                dtype=np.float64,
            ).reshape(len(self.rounds), len(self.strategies))
            for key in keys
        }


def slots_filled(slots: np.ndarray) -> np.ndarray:
    """``[K]`` number of bidders shown per auction (a column loop: n is small)."""
    filled = np.zeros(slots.shape[0])
    for i in range(slots.shape[1]):
        filled += slots[:, i] >= 0
    return filled


def nullable_column(values: np.ndarray) -> pl.Series:
    """A Float64 column with null where ``values`` is NaN (all-null columns built directly)."""
    missing = np.isnan(values)
    if missing.all():
        return pl.repeat(None, len(values), dtype=pl.Float64, eager=True)
    return pl.Series(values, nan_to_null=bool(missing.any()))


def frame(table: RecordTable, columns: dict[str, Any]) -> pl.DataFrame:
    """The typed ``table`` (:meth:`RecordTable.conform`) from columns; a ``str`` is a constant.

    Constants are polars literals, broadcast instead of materialized row by row.
    """
    constants = {name: value for name, value in columns.items() if isinstance(value, str)}
    built = pl.DataFrame({k: v for k, v in columns.items() if k not in constants})
    built = built.with_columns(pl.lit(v, dtype=pl.String).alias(k) for k, v in constants.items())
    return table.conform(built)
