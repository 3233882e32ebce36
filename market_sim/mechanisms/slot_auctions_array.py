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


def pairwise_ranks(bid_rows: np.ndarray, priority_rows: np.ndarray) -> np.ndarray:
    """0-based rank of every bidder (0 = highest bid), ties to the higher priority.

    One contiguous ``[K]`` comparison per ordered pair (i, j) of bidders adds 1 to bidder i's
    rank where j beats it (``O(K n^2)``; for the few bidders of an ad auction this is faster than
    a row sort or a ``[K, n, n]`` reduction, and far faster than broadcasting along the short
    bidder axis).

    Args:
        bid_rows: ``[n, K]`` bids, bidder-major.
        priority_rows: ``[n, K]`` tie-break ranks, distinct within each auction.

    Returns:
        ``[n, K]`` int64 ranks, a permutation of ``0..n-1`` per auction.
    """
    bidders = bid_rows.shape[0]
    ranks = np.zeros(bid_rows.shape, dtype=np.int64)
    for i in range(bidders):
        bid_i, priority_i = bid_rows[i], priority_rows[i]
        for j in range(bidders):
            if j != i:
                bid_j = bid_rows[j]
                ranks[i] += (bid_j > bid_i) | ((bid_j == bid_i) & (priority_rows[j] > priority_i))
    return ranks


def bidder_ranks(bids: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """:func:`pairwise_ranks` of auction-major ``[K, n]`` bids and priorities, as ``[K, n]``."""
    return pairwise_ranks(np.ascontiguousarray(bids.T), np.ascontiguousarray(priority.T)).T


@functools.lru_cache(maxsize=64)
def row_offsets(rows: int, width: int) -> np.ndarray:
    """``[K, 1]`` flat offset of each row of a C-contiguous ``[K, width]`` array (read-only)."""
    offsets = np.arange(rows, dtype=np.int64)[:, None] * width
    offsets.flags.writeable = False
    return offsets


@functools.lru_cache(maxsize=64)
def column_indices(columns: int) -> np.ndarray:
    """``[K]`` = ``0..K-1``, the flat offset of each column in row 0 (read-only)."""
    indices = np.arange(columns, dtype=np.int64)
    indices.flags.writeable = False
    return indices


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


def vcg_tail_sums(lower_bids: np.ndarray, rates: np.ndarray, axis: int = -1) -> np.ndarray:
    r"""VCG price of each rank r: :math:`\sum_{l=r}^{m-1} (c_l - c_{l+1}) x_l`.

    Args:
        lower_bids: ``[K, m]`` (``axis = -1``) or ``[m, K]`` (``axis = 0``): the bid
            :math:`x_l` one rank below rank l, ranks along ``axis``.
        rates: ``[k]`` click-through rates.
        axis: The rank axis.

    Returns:
        The prices, shaped as ``lower_bids``. Summed from the last rank up, as
        :func:`~market_sim.mechanisms.slot_auctions.ranked_slot_auction` does, so the two agree
        to the last bit (an accumulation is sequential along either axis).
    """
    width = lower_bids.shape[axis]
    rates_next = np.concatenate([rates, [0.0]])
    count = min(len(rates), width)
    drops = np.zeros(width)
    drops[:count] = rates_next[:count] - rates_next[1 : count + 1]
    terms = (drops if axis == -1 else drops[:, None]) * lower_bids
    return np.flip(np.cumsum(np.flip(terms, axis), axis), axis)


def rank_slot_auction(
    bids: np.ndarray, rates: np.ndarray, kind: SlotAuctionKind, priority: np.ndarray
) -> SlotAuctionOutcome:
    """K slot auctions by pairwise ranks; equal to ``ranked_slot_auction`` on the same inputs.

    Evaluated bidder-major (``[n, K]`` and ``[width, K]`` rows of K contiguous auctions, so every
    operation runs along K rather than along the few bidders); the outcome's ``[K, n]`` arrays
    are transposed views.

    Args:
        bids: ``[K, n]`` float64 non-negative bids.
        rates: ``[k]`` validated click-through rates.
        kind: A valid slot auction kind.
        priority: ``[K, n]`` tie-break ranks, distinct within each auction.

    Returns:
        Slots, allocations and payments, ``[K, n]`` each.
    """
    auctions, bidders = bids.shape
    bid_rows = np.ascontiguousarray(bids.T)  # [n, K]
    ranks = pairwise_ranks(bid_rows, np.ascontiguousarray(priority.T))  # [n, K]
    flat_ranks = ranks * auctions + column_indices(auctions)  # [n, K] into a [width, K] ravel
    sorted_bids = np.zeros((bidders + len(rates) + 1, auctions))  # b_(1..n), zeros below
    sorted_bids.ravel()[flat_ranks] = bid_rows
    rank_rates = rates_by_rank(rates, bidders)
    if kind == "first_price":
        rank_payments = rank_rates[:, None] * sorted_bids[:bidders]
    elif kind == "second_price":
        rank_payments = rank_rates[:, None] * sorted_bids[len(rates)]
    elif kind == "gsp":
        rank_payments = rank_rates[:, None] * sorted_bids[1 : bidders + 1]
    else:
        rank_payments = vcg_tail_sums(sorted_bids[1 : bidders + 1], rates, axis=0)
    own_rates = rank_rates.take(ranks)  # [n, K]; take: faster than fancy indexing
    payments = rank_payments.take(flat_ranks)
    hidden = ~((bid_rows > 0) & (own_rates > 0))  # not shown: slot -1, no allocation, no payment
    for fresh, value in ((ranks, -1), (own_rates, 0.0), (payments, 0.0)):
        np.putmask(fresh, hidden, value)
    return SlotAuctionOutcome(slots=ranks.T, allocations=own_rates.T, payments=payments.T)


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
