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
adapter. Regret (on the rounds ``[regret]`` asks for) is the generic estimator's search, run for
one advertiser's K auctions at once (:mod:`market_sim.incentives.regret_batch`, the same numbers
bit for bit) or, with ``regret.peaks > 1``, per (auction, advertiser) on the platform's
counterfactual.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from market_sim.config.bounds import SEED_MAX
from market_sim.incentives.regret import estimate_regret
from market_sim.incentives.regret_batch import estimate_bid_regret_rows
from market_sim.market.array_learners import (
    ArrayStrategy,
    BidderRound,
    CounterfactualUtilities,
    array_strategy,
)
from market_sim.market.queries import StaticQueryStream
from market_sim.market.strategies import StrategyOutputError
from market_sim.market.valuations import ValuationSource, draw_valuation
from market_sim.mechanisms.slot_auctions import SlotAuctionOutcome
from market_sim.mechanisms.slot_auctions_array import bidder_outcome, rank_slot_auction
from market_sim.platform.base import Report
from market_sim.platform.slot_auction import (
    SlotAuctionCounterfactual,
    SlotAuctionPlatform,
    slot_jump_bids,
)
from market_sim.results.records import AGENTS, REGRET_COLUMNS, ROUNDS, STRATEGY_PREFIX, RecordTable

if TYPE_CHECKING:
    from market_sim.market.model import MarketModel

SEED_BOUND = SEED_MAX
"""Round seeds are drawn below the scenario's seed bound, as on the generic path."""


def draw_valuations(source: ValuationSource, count: int, rng: np.random.Generator) -> np.ndarray:
    """``[K]`` valuations of one advertiser: one block draw for per-round distributions."""
    config = source.config
    if config.dist == "fixed" or config.redraw == "once":
        return np.full(count, source.valuation(rng))
    return draw_valuation(config, rng, count)


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


@dataclass(frozen=True)
class RoundDraws:
    """What a round drew besides the records it wrote (:meth:`ArraySlotRound.draw`).

    Attributes:
        row: The round's row in the record buffers.
        actions: ``[K, n]`` int64 grid actions (zeros for fixed strategies).
        priority: ``[K, n]`` tie-break ranks (a uniform permutation of the bidders per auction).
    """

    row: int
    actions: np.ndarray
    priority: np.ndarray


class RoundRecords:
    """Every round's arrays, written in place into buffers allocated for the scenario's rounds.

    Rounds are rows of preallocated ``[R, K, n]`` / ``[R, K]`` arrays (R = the rounds reserved,
    doubled when a market steps past them), so a round allocates nothing it keeps and the
    tables take the filled rows as views instead of concatenating per-round arrays.

    Args:
        rounds: Rounds to reserve at first (the scenario's).
        auctions: K, auctions per round.
        bidders: n, advertisers.

    Attributes:
        count: Rounds written so far.
        query_index: ``[R, K]`` int64 indices into the query pool.
        round_seeds: ``[R]`` int64 round seeds.
        valuations, bids, report_scales, allocations, payments: ``[R, K, n]`` float64
            (allocations and payments in ``slot_value`` units).
        slots_filled: ``[R, K]`` float64 bidders shown per auction.
        incentives: Round -> ``[len(REGRET_COLUMNS), K, n]`` regret columns, measured rounds only.
        states: ``[R]`` lists of the ``n`` start-of-round strategy states.
    """

    MATRICES = ("valuations", "bids", "report_scales", "allocations", "payments")
    """The ``[R, K, n]`` float64 buffers."""

    def __init__(self, rounds: int, auctions: int, bidders: int) -> None:
        self.count = 0
        self.auctions, self.bidders = auctions, bidders
        capacity = max(rounds, 1)
        self.query_index = np.empty((capacity, auctions), dtype=np.int64)
        self.round_seeds = np.empty(capacity, dtype=np.int64)
        self.slots_filled = np.empty((capacity, auctions))
        for name in self.MATRICES:
            setattr(self, name, np.empty((capacity, auctions, bidders)))
        self.incentives: dict[int, np.ndarray] = {}
        self.states: list[list[dict[str, float]]] = []

    BUFFERS = ("query_index", "round_seeds", "slots_filled", *MATRICES)
    """Every per-round buffer (rows ``[: count]`` written)."""

    def __getstate__(self) -> dict[str, Any]:
        """Its state for a checkpoint: the written rows of each buffer, not the reserved ones.

        The rows past ``count`` were never written (``np.empty``): pickling them would make a
        checkpoint as large as the whole run's records from round 0 on, holding stale memory.
        """
        state = dict(self.__dict__)
        for name in self.BUFFERS:
            state[name] = getattr(self, name)[: self.count].copy()
        state["capacity"] = len(self.round_seeds)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint's state, with buffers of the capacity it had."""
        capacity = state.pop("capacity")
        for name in self.BUFFERS:
            written = state[name]
            buffer = np.empty((capacity, *written.shape[1:]), dtype=written.dtype)
            buffer[: len(written)] = written
            state[name] = buffer
        self.__dict__.update(state)

    def next_round(self) -> int:
        """The row of the next round (buffers doubled when full)."""
        if self.count == len(self.round_seeds):
            for name in self.BUFFERS:
                full = getattr(self, name)
                setattr(self, name, np.concatenate([full, np.empty_like(full)]))
        self.count += 1
        return self.count - 1

    def filled(self, name: str) -> np.ndarray:
        """The written rounds of buffer ``name``, flattened to ``[R K, ...]`` (a view)."""
        array = getattr(self, name)[: self.count]
        return array.reshape(self.count * self.auctions, *array.shape[2:])


_SAID: set[str] = set()


def say_once(line: str) -> None:
    """Print ``line`` on stderr once per process (replicates would repeat it)."""
    if line not in _SAID:
        _SAID.add(line)
        print(line, file=sys.stderr)


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
        self.records = RoundRecords(model.scenario.rounds, self.auctions, len(strategies))

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
        slow = [
            f"{config.name!r} ({config.strategy.kind}"
            f"{', contextual' if config.strategy.params.get('contextual') else ''})"
            for config, strategy in zip(model.scenario.advertisers, strategies, strict=True)
            if strategy is None
        ]
        if slow:
            say_once(
                f"market-sim: warning: slow setting: advertiser {', '.join(slow)} has no array "
                f"learner, so the {model.scenario.auctions_per_round} auctions of each round "
                "run one at a time (the array round takes truthful, fixed, hedge, exp3, "
                "epsilon_greedy and ucb1, not contextual)"
            )
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
        """Run round ``round_index``: K auctions, learner updates, arrays for the records.

        The round's ``[K, n]`` arrays are rows of :attr:`records`, written in place.
        """
        draws, platform = self.draw(round_index), self.platform
        bids = self.records.bids[draws.row]
        rates, priority = platform.click_through_rates, draws.priority
        outcome = rank_slot_auction(bids, rates, platform.kind, priority)
        self.settle(round_index, draws, outcome)

    def draw(self, round_index: int) -> RoundDraws:
        """Every random draw of the round, in the documented order, and the replies it needs.

        Writes the round's queries, valuations, bids, report scales and seed into a new row of
        :attr:`records` and records the start-of-round strategy states.
        """
        model, rng, records = self.model, self.model.rng, self.records
        row = records.next_round()
        query_index = records.query_index[row]
        query_index[:] = self.draw_queries(rng)
        valuations, bids = records.valuations[row], records.bids[row]
        for i, agent in enumerate(model.agents):
            valuations[:, i] = draw_valuations(agent.valuation_source, self.auctions, rng)
        records.states.append([strategy.strategy.state() for strategy in self.strategies])
        actions = self.report(valuations, bids, records.report_scales[row], rng)
        if not bids.min() >= 0 or not np.isfinite(bids.max()):  # NaN fails both comparisons
            raise StrategyOutputError("a strategy produced a negative, infinite or NaN bid")
        bidders = len(self.strategies)
        priority = rng.permuted(np.broadcast_to(np.arange(bidders), bids.shape), axis=1)
        records.round_seeds[row] = round_seed = int(rng.integers(SEED_BOUND))
        self.cache_replies(query_index, round_seed)
        return RoundDraws(row, actions, priority)

    def settle(
        self,
        round_index: int,
        draws: RoundDraws,
        outcome: SlotAuctionOutcome,
        counterfactuals: Sequence[CounterfactualUtilities | None] | None = None,
    ) -> None:
        """Record the round's K auctions, measure regret where asked, and let every strategy learn.

        Args:
            round_index: The round (selects the rounds whose regret is measured).
            draws: The round's draws (:meth:`draw`).
            outcome: The K auctions of the round's bids (``[K, n]`` arrays, CTR units).
            counterfactuals: Per advertiser, its counterfactual utilities when computed outside
                (replicates in lockstep); None (for all or for one) computes them here.
        """
        platform, records, row = self.platform, self.records, draws.row
        valuations, bids = records.valuations[row], records.bids[row]
        allocations, payments = records.allocations[row], records.payments[row]
        np.multiply(outcome.allocations, platform.slot_value, out=allocations)
        np.multiply(outcome.payments, platform.slot_value, out=payments)
        count_shown(outcome.slots, out=records.slots_filled[row])
        incentives = self.measure_incentives(
            round_index, valuations, bids, records.report_scales[row], draws.priority
        )
        if incentives is not None:
            records.incentives[row] = incentives
        utilities = valuations * allocations - payments
        given = counterfactuals if counterfactuals is not None else [None] * len(self.strategies)
        for i, (strategy, counterfactual) in enumerate(zip(self.strategies, given, strict=True)):
            strategy.learn(
                BidderRound(
                    valuations=valuations[:, i],
                    actions=draws.actions[:, i],
                    utilities=utilities[:, i],
                    counterfactual_utilities=counterfactual
                    or self.counterfactual(i, valuations, bids, draws.priority),
                )
            )

    def report(
        self,
        valuations: np.ndarray,
        bids: np.ndarray,
        report_scales: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Every strategy's reports, advertiser after advertiser (their draws in that order).

        Args:
            valuations: ``[K, n]`` the round's valuations.
            bids: ``[K, n]`` written with the bids.
            report_scales: ``[K, n]`` written with the report distortions.
            rng: The model's generator.

        Returns:
            ``[K, n]`` int64 grid actions (zeros for fixed strategies).
        """
        actions = np.empty(bids.shape, dtype=np.int64)
        for i, strategy in enumerate(self.strategies):
            actions[:, i], bids[:, i], report_scales[:, i] = strategy.reports(valuations[:, i], rng)
        return actions

    def counterfactual(
        self, agent: int, valuations: np.ndarray, bids: np.ndarray, priority: np.ndarray
    ) -> CounterfactualUtilities:
        """``[K, A]`` candidate bids -> ``[K, A]`` utilities of ``agent``, the rest held fixed."""
        return functools.partial(
            counterfactual_utilities, self.platform, agent, valuations, bids, priority
        )

    def measure_incentives(
        self,
        round_index: int,
        valuations: np.ndarray,
        bids: np.ndarray,
        report_scales: np.ndarray,
        priority: np.ndarray,
    ) -> np.ndarray | None:
        """``[5, K, n]`` regret columns (:data:`REGRET_COLUMNS`), None on unmeasured rounds.

        On the rounds ``[regret]`` selects, every (auction, advertiser) is searched as the
        generic path searches it: with ``regret.peaks = 1``, one advertiser's K searches at once
        (:func:`~market_sim.incentives.regret_batch.estimate_bid_regret_rows`, the same
        numbers bit for bit); with more peaks, one search at a time on the platform's own
        counterfactual.
        """
        config = self.model.scenario.regret
        if not config.enabled or round_index % config.every != 0:
            return None
        count, bidders = bids.shape
        columns = np.empty((len(REGRET_COLUMNS), count, bidders))
        platform = self.platform
        if config.peaks == 1 and platform.report_space.distortion is None:
            for i in range(bidders):
                estimates = estimate_bid_regret_rows(
                    self.counterfactual(i, valuations, bids, priority),
                    valuations[:, i],
                    bids[:, i],
                    report_scales[:, i],
                    config,
                    jump_bids=slot_jump_bids(bids, i),
                )
                columns[:, :, i] = (
                    estimates.regret,
                    estimates.best_response_gain,
                    estimates.truthful_utility,
                    estimates.best_multiplier,
                    estimates.best_distortion,
                )
            return columns
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
                    jump_bids=engine.jump_bids(i),
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
        and (round, auction, advertiser) order. Columns come from the ``[R K, n]`` views of
        :attr:`records`; a query's strings (query, text, mentions) are stored once and gathered
        by the ``[R K]`` index of its reply.
        """
        records = self.records
        rounds, count = records.count, self.auctions
        seen = sorted(self.replies)
        lookup = np.zeros(len(self.items), dtype=np.int64)
        lookup[seen] = np.arange(len(seen))
        position = lookup.take(records.filled("query_index"))  # [R K] index into `replies`
        replies = [self.replies[q] for q in seen]
        n_tokens = np.array([r.n_tokens for r in replies], dtype=np.float64).take(position)
        stopped = np.array([r.stopped for r in replies], dtype=np.float64).take(position)
        user_value = n_tokens + stopped
        valuations, payments = records.filled("valuations"), records.filled("payments")
        values = valuations * records.filled("allocations")
        advertiser_value = column_sums(values)
        per_reply = pl.DataFrame(
            {
                "query": pl.Series([self.items[q] for q in seen], dtype=pl.String),
                "text": pl.Series([r.text for r in replies], dtype=pl.String),
                "brands_mentioned": pl.Series(
                    [r.mentioned for r in replies], dtype=pl.List(pl.String)
                ),
            }
        )[position]
        round_table = frame(
            ROUNDS,
            {
                "run_id": self.model.run_id,
                "round": np.repeat(np.arange(rounds, dtype=np.int64), count),
                "auction": np.tile(np.arange(count, dtype=np.int64), rounds),
                "query": per_reply["query"],
                "mechanism": self.platform.kind,
                "text": per_reply["text"],
                "revenue": column_sums(payments),
                "advertiser_value": advertiser_value,
                "user_value": user_value,
                "social_welfare": advertiser_value + user_value,
                "brands_mentioned": per_reply["brands_mentioned"],
                "round_seed": np.repeat(records.round_seeds[:rounds], count),
                "n_tokens": n_tokens,
                "stopped_at_eos": stopped,
                "slots_filled": records.filled("slots_filled"),
            },
        )
        return round_table, self.agent_table(position, replies, values)

    def agent_table(
        self, position: np.ndarray, replies: list[QueryReply], values: np.ndarray
    ) -> pl.DataFrame:
        """The agents table (rows auction-major).

        Args:
            position: ``[R K]`` each auction's index into ``replies``.
            replies: The distinct queries' replies.
            values: ``[R K, n]`` realized values ``v x``.
        """
        records = self.records
        names = [a.name for a in self.model.agents]
        rounds, count, bidders = records.count, self.auctions, len(names)
        mentions = np.array(
            [[name in r.mentioned for name in names] for r in replies], dtype=bool
        ).reshape(len(replies), bidders)
        allocations, payments = records.filled("allocations"), records.filled("payments")
        utilities = values - payments
        columns: dict[str, Any] = {
            "run_id": self.model.run_id,
            "round": np.repeat(np.arange(rounds, dtype=np.int64), count * bidders),
            "auction": np.tile(np.repeat(np.arange(count, dtype=np.int64), bidders), rounds),
            "agent": pl.Series(names, dtype=pl.String).gather(
                np.tile(np.arange(bidders), rounds * count)
            ),
            "valuation": records.filled("valuations").ravel(),
            "bid": records.filled("bids").ravel(),
            "report_scale": records.filled("report_scales").ravel(),
            "allocation": allocations.ravel(),
            "reported_allocation": allocations.ravel(),
            "value": values.ravel(),
            "payment": payments.ravel(),
            "utility": utilities.ravel(),
            **self.regret_columns(utilities),
            "mentioned": mentions.take(position, axis=0).ravel(),
        }
        for key, state in self.state_columns().items():
            columns[STRATEGY_PREFIX + key] = nullable_column(
                np.repeat(state, count, axis=0).ravel()
            )
        return frame(AGENTS, columns)

    def regret_columns(self, utilities: np.ndarray) -> dict[str, pl.Series]:
        """The :data:`REGRET_COLUMNS`, ``[R K n]`` each, null where not measured.

        On unmeasured rounds ``truthful_utility`` is the realized utility of an advertiser that
        reported truthfully (bid = valuation, distortion 1), as on the generic path.

        Args:
            utilities: ``[R K, n]`` realized utilities.
        """
        records = self.records
        shape = (records.count, self.auctions, records.bidders)
        bids, valuations = records.filled("bids"), records.filled("valuations")
        truthful = (bids == valuations) & (records.filled("report_scales") == 1.0)
        columns = {}
        for c, name in enumerate(REGRET_COLUMNS):
            fill_truthful = name == "truthful_utility" and bool(truthful.any())
            if not records.incentives and not fill_truthful:
                columns[name] = null_column(utilities.size)
                continue
            column = np.full(shape, np.nan)
            for row, incentives in records.incentives.items():
                column[row] = incentives[c]
            if fill_truthful:
                flat = column.reshape(utilities.shape)
                flat[:] = np.where(np.isnan(flat) & truthful, utilities, flat)
            columns[name] = nullable_column(column.ravel())
        return columns

    def state_columns(self) -> dict[str, np.ndarray]:
        """``[R, n]`` start-of-round strategy states per key (NaN where a strategy has none).

        Keys in order of first appearance (advertiser by advertiser), as the generic records.
        """
        states = self.records.states
        keys = list(dict.fromkeys(k for r in states[:1] for s in r for k in s))
        return {
            key: np.array(
                [[state.get(key, np.nan) for state in r] for r in states], dtype=np.float64
            ).reshape(len(states), len(self.strategies))
            for key in keys
        }


def counterfactual_utilities(
    platform: SlotAuctionPlatform,
    agent: int,
    valuations: np.ndarray,
    bids: np.ndarray,
    priority: np.ndarray,
    candidates: np.ndarray,
) -> np.ndarray:
    """``agent``'s utilities ``v x(b) - p(b)`` for candidate bids, the other bids held fixed.

    Args:
        platform: The slot-auction platform (rule, click-through rates, slot value).
        agent: The advertiser's column.
        valuations: ``[K, n]`` valuations.
        bids: ``[K, n]`` the round's bids.
        priority: ``[K, n]`` tie-break ranks.
        candidates: ``[K, A]`` the advertiser's candidate bids.

    Returns:
        ``[K, A]`` utilities in ``slot_value`` units. Each row depends on its own auction only,
        so rows of several rounds stacked give each round's rows bit for bit.
    """
    others = np.delete(np.arange(bids.shape[1]), agent)
    allocations, payments = bidder_outcome(
        bids[:, others],
        priority[:, others],
        priority[:, agent],
        candidates,
        platform.click_through_rates,
        platform.kind,
    )
    scale = platform.slot_value
    return valuations[:, agent, None] * (allocations * scale) - payments * scale


def column_sums(matrix: np.ndarray) -> np.ndarray:
    """``[rows]`` row sums of a ``[rows, n]`` matrix, added column by column from 0.

    Left to right, as Python's ``sum`` over advertisers on the generic path (same bits).
    """
    total = np.zeros(matrix.shape[0])
    for i in range(matrix.shape[1]):
        total += matrix[:, i]
    return total


def count_shown(slots: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[k]`` = number of bidders shown in auction k (``[K, n]`` slots, -1 = not shown).

    A column loop (n is small) of float adds, counted from 0 in bidder order.
    """
    out[:] = 0.0
    for i in range(slots.shape[1]):
        out += slots[:, i] >= 0
    return out


def null_column(length: int) -> pl.Series:
    """A Float64 column of ``length`` nulls (a measure taken on no row)."""
    return pl.repeat(None, length, dtype=pl.Float64, eager=True)


def nullable_column(values: np.ndarray) -> pl.Series:
    """A Float64 column with null where ``values`` is NaN (all-null columns built directly)."""
    missing = np.isnan(values)
    if missing.all():
        return null_column(len(values))
    return pl.Series(values, nan_to_null=bool(missing.any()))


def frame(table: RecordTable, columns: dict[str, Any]) -> pl.DataFrame:
    """The typed ``table`` (:meth:`RecordTable.conform`) from columns; a ``str`` is a constant.

    Constants are polars literals, broadcast instead of materialized row by row.
    """
    constants = {name: value for name, value in columns.items() if isinstance(value, str)}
    built = pl.DataFrame({k: v for k, v in columns.items() if k not in constants})
    built = built.with_columns(pl.lit(v, dtype=pl.String).alias(k) for k, v in constants.items())
    return table.conform(built)
