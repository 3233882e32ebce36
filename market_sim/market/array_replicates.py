r"""R replicate array markets in lockstep: one ``[R K, n]`` auction call per round.

Replicates of one scenario (:func:`market_sim.run.run_replicates`) on the vectorized no-LM path
(:mod:`market_sim.market.array_round`) share every array operation that does not touch a
replicate's own state:

1. each replicate draws its round with its own generator, in the order of a separate run
   (:meth:`~market_sim.market.array_round.ArraySlotRound.draw`), so its draws are a separate
   run's;
2. the ``R`` rounds' bids ``[R K, n]`` go through one
   :func:`~market_sim.mechanisms.slot_auctions_array.rank_slot_auction` call;
3. per advertiser, the counterfactual utilities that full-information learners read (Hedge:
   ``[R K, A]``, every replicate's grid bids) come from one
   :func:`~market_sim.market.array_round.counterfactual_utilities` call;
4. each replicate settles its ``K`` rows: records, regret where asked, its learners' updates.

Every operation in (2) and (3) works row by row (an auction's ranks, prices and
counterfactuals depend on that auction's bids only), so stacking changes no bit: each
replicate's records equal a separate run's exactly (tested). Replicates that cannot be stacked
(different mechanisms, K or bidder counts) run one after another. Memory: the stacked
utilities of every Hedge advertiser, ``n x [R K, A]`` float64, are held until every replicate
has settled (16 MB at R = 16, K = 1000, A = 31, n = 4).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from market_sim.market.array_learners import CounterfactualUtilities
from market_sim.market.array_round import ArraySlotRound, RoundDraws, counterfactual_utilities
from market_sim.mechanisms.slot_auctions import SlotAuctionOutcome
from market_sim.mechanisms.slot_auctions_array import rank_slot_auction


def stackable(rounds: Sequence[ArraySlotRound]) -> bool:
    """Whether the replicates' auctions can share array calls: same rule, rates, value, K, n."""
    first = rounds[0]
    return all(
        other.platform.kind == first.platform.kind
        and other.platform.slot_value == first.platform.slot_value
        and np.array_equal(other.platform.click_through_rates, first.platform.click_through_rates)
        and other.auctions == first.auctions
        and len(other.strategies) == len(first.strategies)
        for other in rounds[1:]
    )


def run_in_lockstep(rounds: Sequence[ArraySlotRound], round_index: int) -> None:
    """Run round ``round_index`` of every replicate, auctions and counterfactuals stacked.

    Args:
        rounds: The replicates' array rounds (one per market), in replicate order.
        round_index: The round being run (the same in every replicate).
    """
    if not rounds:
        return
    if len(rounds) == 1 or not stackable(rounds):
        for array_round in rounds:
            array_round.run(round_index)
        return
    draws = [array_round.draw(round_index) for array_round in rounds]
    valuations = stacked(rounds, draws, "valuations")
    bids = stacked(rounds, draws, "bids")
    priority = np.concatenate([draw.priority for draw in draws])
    platform = rounds[0].platform
    outcome = rank_slot_auction(bids, platform.click_through_rates, platform.kind, priority)
    shared = [
        shared_counterfactuals(rounds, agent, valuations, bids, priority)
        for agent in range(bids.shape[1])
    ]
    count = rounds[0].auctions
    for replicate, (array_round, draw) in enumerate(zip(rounds, draws, strict=True)):
        part = slice(replicate * count, (replicate + 1) * count)
        own = SlotAuctionOutcome(
            slots=outcome.slots[part],
            allocations=outcome.allocations[part],
            payments=outcome.payments[part],
        )
        counterfactuals = [
            None if per_agent is None else per_agent[replicate] for per_agent in shared
        ]
        array_round.settle(round_index, draw, own, counterfactuals)


def stacked(rounds: Sequence[ArraySlotRound], draws: Sequence[RoundDraws], name: str) -> np.ndarray:
    """``[R K, n]``: the round's rows of record buffer ``name``, replicate after replicate."""
    pairs = zip(rounds, draws, strict=True)
    return np.concatenate([getattr(replicate.records, name)[draw.row] for replicate, draw in pairs])


def shared_counterfactuals(
    rounds: Sequence[ArraySlotRound],
    agent: int,
    valuations: np.ndarray,
    bids: np.ndarray,
    priority: np.ndarray,
) -> list[CounterfactualUtilities] | None:
    """Per replicate, ``agent``'s counterfactual utilities precomputed in one stacked call.

    Each replicate's strategy names the ``[K, A]`` bids its update will ask for
    (``candidate_bids``); the ``[R K, A]`` utilities of all of them are computed at once and
    replicate r's callable returns its ``K`` rows when asked for exactly those bids (and
    computes any other bids directly).

    Returns:
        R callables, or None when some replicate's strategy reads no counterfactual or the
        replicates' candidate grids differ in size.
    """
    count = rounds[0].auctions
    candidates = []
    for replicate, array_round in enumerate(rounds):
        own_values = valuations[replicate * count : (replicate + 1) * count, agent]
        bids_of_replicate = array_round.strategies[agent].candidate_bids(own_values)
        if bids_of_replicate is None:
            return None
        candidates.append(bids_of_replicate)
    if len({block.shape for block in candidates}) != 1:
        return None
    platform = rounds[0].platform
    utilities = counterfactual_utilities(
        platform, agent, valuations, bids, priority, np.concatenate(candidates)
    )
    return [
        precomputed(
            candidates[replicate],
            utilities[replicate * count : (replicate + 1) * count],
            rounds[replicate].counterfactual(
                agent,
                valuations[replicate * count : (replicate + 1) * count],
                bids[replicate * count : (replicate + 1) * count],
                priority[replicate * count : (replicate + 1) * count],
            ),
        )
        for replicate in range(len(rounds))
    ]


def precomputed(
    expected: np.ndarray, utilities: np.ndarray, direct: CounterfactualUtilities
) -> CounterfactualUtilities:
    """A counterfactual: ``utilities`` for the ``expected`` bids, ``direct`` for any others."""

    def utilities_of(candidates: np.ndarray) -> np.ndarray:
        if candidates.shape == expected.shape and np.array_equal(candidates, expected):
            return utilities
        return direct(candidates)

    return utilities_of
