r"""Slot auctions as array operations over K auctions, without sorting (the no-LM hot path).

The rules are those of :mod:`market_sim.mechanisms.slot_auctions` (first price, uniform second
price, GSP, VCG over k slots with click-through rates; ties to the higher priority; a bid of 0
is never shown) and give the same numbers; only the evaluation differs. Ranks come from pairwise
comparisons instead of a sort, which for the few bidders of an ad auction is several times faster
than :func:`numpy.lexsort` along rows:

.. math::

    \text{rank}_i = \#\{\, j \ne i : b_j > b_i \ \text{or}\ (b_j = b_i \ \text{and}\ \pi_j > \pi_i)
    \,\} \qquad (O(K n^2) \text{ comparisons}).

:func:`bidder_outcome` gives one bidder's allocation and payment against the other bidders'
fixed bids and priorities for any number A of its own candidate bids, in closed form: with
:math:`o_{(1)} \ge o_{(2)} \ge \dots` the others' bids in rank order (zeros past the end) and
:math:`r` the number of others that beat bid :math:`b`, the bidder takes rank :math:`r`
(0-based), and the overall ranking's bids below it are the others' from :math:`o_{(r+1)}` on:

.. math::

    \text{first\_price: } c_r b, \quad \text{second\_price: } c_r o_{(k)}, \quad
    \text{gsp: } c_r o_{(r+1)}, \quad
    \text{vcg: } \sum_{l=r}^{k-1} (c_l - c_{l+1})\, o_{(l+1)}

(0-based slots, :math:`c_l = 0` for :math:`l \ge k`), shown only when :math:`b > 0`,
:math:`r < k` and :math:`c_r > 0`. The VCG sum is accumulated in the same order as the sorted
rule (from the last rank up), so both give the same floating-point numbers.

Shapes: K auctions, n bidders, A candidate bids per auction, k slots.
"""

from __future__ import annotations

import functools

import numpy as np

from market_sim.mechanisms.slot_auctions import SlotAuctionKind, SlotAuctionOutcome


def bidder_ranks(bids: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """0-based rank of every bidder (0 = highest bid), ties to the higher priority.

    One pass per bidder j adds 1 to every bidder that j beats (``O(K n^2)``; for the few
    bidders of an ad auction this is faster than a ``[K, n, n]`` reduction or a row sort).

    Args:
        bids: ``[K, n]`` bids.
        priority: ``[K, n]`` tie-break ranks, distinct within each auction.

    Returns:
        ``[K, n]`` int64 ranks, a permutation of ``0..n-1`` per auction.
    """
    ranks = np.zeros(bids.shape, dtype=np.int64)
    for j in range(bids.shape[1]):
        bid_j, priority_j = bids[:, j, None], priority[:, j, None]
        ranks += (bid_j > bids) | ((bid_j == bids) & (priority_j > priority))
    return ranks


@functools.lru_cache(maxsize=64)
def row_offsets(rows: int, width: int) -> np.ndarray:
    """``[K, 1]`` flat offset of each row of a C-contiguous ``[K, width]`` array (read-only)."""
    offsets = np.arange(rows, dtype=np.int64)[:, None] * width
    offsets.flags.writeable = False
    return offsets


def scatter_by_rank(values: np.ndarray, ranks: np.ndarray, width: int) -> np.ndarray:
    """``[K, width]`` zeros with ``values[k, i]`` at column ``ranks[k, i]`` (rank order)."""
    rows = values.shape[0]
    out = np.zeros((rows, width))
    out.ravel()[row_offsets(rows, width) + ranks] = values
    return out


def gather_by_rank(table: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """``[K, m]`` entries ``table[k, ranks[k, i]]`` (flat indexing; faster than take_along_axis)."""
    rows, width = table.shape
    return np.ascontiguousarray(table).ravel()[row_offsets(rows, width) + ranks]


def rates_by_rank(rates: np.ndarray, bidders: int) -> np.ndarray:
    """``[n]`` click-through rate of ranks ``0..n-1`` (0 past the k slots)."""
    padded = np.zeros(bidders)
    count = min(len(rates), bidders)
    padded[:count] = rates[:count]
    return padded


def vcg_tail_sums(lower_bids: np.ndarray, rates: np.ndarray) -> np.ndarray:
    r"""``[K, m]`` VCG price of each rank r: :math:`\sum_{l=r}^{m-1} (c_l - c_{l+1}) x_l`.

    Args:
        lower_bids: ``[K, m]`` the bid :math:`x_l` one rank below rank l.
        rates: ``[k]`` click-through rates.

    Summed from the last rank up, as :func:`~market_sim.mechanisms.slot_auctions.
    ranked_slot_auction` does, so the two agree to the last bit.
    """
    width = lower_bids.shape[1]
    rates_next = np.concatenate([rates, [0.0]])
    count = min(len(rates), width)
    drops = np.zeros(width)
    drops[:count] = rates_next[:count] - rates_next[1 : count + 1]
    terms = drops * lower_bids
    return np.flip(np.cumsum(np.flip(terms, -1), -1), -1)


def rank_slot_auction(
    bids: np.ndarray, rates: np.ndarray, kind: SlotAuctionKind, priority: np.ndarray
) -> SlotAuctionOutcome:
    """K slot auctions by pairwise ranks; equal to ``ranked_slot_auction`` on the same inputs.

    Args:
        bids: ``[K, n]`` float64 non-negative bids.
        rates: ``[k]`` validated click-through rates.
        kind: A valid slot auction kind.
        priority: ``[K, n]`` tie-break ranks, distinct within each auction.

    Returns:
        Slots, allocations and payments, ``[K, n]`` each.
    """
    auctions, bidders = bids.shape
    ranks = bidder_ranks(bids, priority)
    sorted_bids = scatter_by_rank(bids, ranks, bidders + len(rates) + 1)  # b_(1..n), zeros
    rank_rates = rates_by_rank(rates, bidders)
    if kind == "first_price":
        rank_prices = sorted_bids[:, :bidders]
    elif kind == "second_price":
        rank_prices = np.broadcast_to(sorted_bids[:, len(rates), None], (auctions, bidders))
    elif kind == "gsp":
        rank_prices = sorted_bids[:, 1 : bidders + 1]
    else:
        rank_prices = None
    if rank_prices is None:
        rank_payments = vcg_tail_sums(sorted_bids[:, 1 : bidders + 1], rates)
    else:
        rank_payments = rank_rates * rank_prices
    own_rates = rank_rates[ranks]
    shown = (bids > 0) & (own_rates > 0)
    payments = gather_by_rank(rank_payments, ranks)
    return SlotAuctionOutcome(
        slots=np.where(shown, ranks, -1),
        allocations=np.where(shown, own_rates, 0.0),
        payments=np.where(shown, payments, 0.0),
    )


def bidder_outcome(
    other_bids: np.ndarray,
    other_priority: np.ndarray,
    own_priority: np.ndarray,
    candidate_bids: np.ndarray,
    rates: np.ndarray,
    kind: SlotAuctionKind,
) -> tuple[np.ndarray, np.ndarray]:
    """One bidder's allocation and payment for A candidate bids, the others held fixed.

    Args:
        other_bids: ``[K, n-1]`` the other bidders' bids.
        other_priority: ``[K, n-1]`` their tie-break ranks.
        own_priority: ``[K]`` the bidder's tie-break rank.
        candidate_bids: ``[K, A]`` the bidder's candidate bids.
        rates: ``[k]`` validated click-through rates.
        kind: A valid slot auction kind.

    Returns:
        ``([K, A] allocations, [K, A] payments)`` (click-through rate units, as the rule).
    """
    bidders = other_bids.shape[1] + 1
    ranks = np.zeros(candidate_bids.shape, dtype=np.int64)  # [K, A] others that beat the bid
    for j in range(bidders - 1):
        bid_j = other_bids[:, j, None]
        wins_tie = (other_priority[:, j] > own_priority)[:, None]
        ranks += (bid_j > candidate_bids) | ((bid_j == candidate_bids) & wins_tie)
    other_ranks = bidder_ranks(other_bids, other_priority)
    lower = scatter_by_rank(other_bids, other_ranks, bidders + len(rates) + 1)  # o_(1..), 0s
    rank_rates = rates_by_rank(rates, bidders)
    own_rates = rank_rates[ranks]
    if kind == "first_price":
        payments = own_rates * candidate_bids
    elif kind == "second_price":
        payments = own_rates * lower[:, len(rates) - 1, None]
    elif kind == "gsp":
        payments = own_rates * gather_by_rank(lower, ranks)
    else:
        payments = gather_by_rank(vcg_tail_sums(lower[:, :bidders], rates), ranks)
    shown = (candidate_bids > 0) & (own_rates > 0)
    return np.where(shown, own_rates, 0.0), np.where(shown, payments, 0.0)
