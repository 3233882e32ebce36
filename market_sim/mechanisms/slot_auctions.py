r"""Classic ad-slot auctions over k slots with click-through rates (docs/design.md, section 3.5).

Pure numpy, vectorized over R independent auctions (rounds, or candidate reports of one round).
Bidders are ranked by bid; ties go to the higher ``priority`` (a random permutation per round, so
that no bidder is favoured systematically and a counterfactual can reuse the same draw). The top
:math:`k` ranked bidders with positive bids take slots :math:`1..k` with click-through rates
:math:`c_1 \ge c_2 \ge \dots \ge c_k`; slot :math:`j`'s occupant gets allocation :math:`c_j`
(its value is :math:`v\,c_j`) and pays the per-click price times :math:`c_j` (the expected
payment of pay-per-click). With :math:`b_{(j)}` the j-th highest bid (0 where missing):

.. math::

    \text{first\_price:}\quad & p_{(j)} = c_j\, b_{(j)} \\
    \text{second\_price:}\quad & p_{(j)} = c_j\, b_{(k+1)}
        \quad\text{(uniform price: every winner pays the highest losing bid)} \\
    \text{gsp:}\quad & p_{(j)} = c_j\, b_{(j+1)} \\
    \text{vcg:}\quad & p_{(j)} = \sum_{l=j}^{k} (c_l - c_{l+1})\, b_{(l+1)}, \quad c_{k+1} = 0 .

With one slot, second price, GSP and VCG coincide (Vickrey). With several slots only VCG is
truthful: under the uniform price a winner can climb to a better slot for free, and under GSP
shading towards a lower slot can pay; the regret estimator measures both. A bid of exactly 0 never
wins a slot (an advertiser that does not bid is not shown).

Units: allocation is an expected click (or view) count, so a valuation is a value per click;
the token auction's allocation counts fully steered tokens. Both are "valuation units", and the
scenario's click-through rates set the exchange rate between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

SlotAuctionKind = Literal["first_price", "second_price", "gsp", "vcg"]
SLOT_AUCTION_KINDS: tuple[str, ...] = ("first_price", "second_price", "gsp", "vcg")


@dataclass(frozen=True)
class SlotAuctionOutcome:
    """R slot auctions.

    Attributes:
        slots: ``[R, n]`` slot index 0..k-1 of each bidder, -1 when not shown.
        allocations: ``[R, n]`` click-through rate of the bidder's slot (0 when not shown).
        payments: ``[R, n]`` expected payments (per-click price x click-through rate).
    """

    slots: np.ndarray
    allocations: np.ndarray
    payments: np.ndarray


def check_click_through_rates(click_through_rates: np.ndarray) -> np.ndarray:
    """Validate and return ``[k]`` click-through rates (non-increasing, in (0, 1], k >= 1).

    A rate of 0 is refused: nobody in such a slot is shown, yet it would count among the k
    slots, so the uniform price b_(k+1) would fall below the highest bid not shown (values
    (3, 2, 1), rates (1, 0): the winner would pay 1, and the second bidder would gain by
    overbidding, while with rates (1) it pays 2 as Vickrey). A rate of 0 (a slot nobody clicks)
    is therefore refused.

    Raises:
        ValueError: Naming the violated condition.
    """
    rates = np.asarray(click_through_rates, dtype=np.float64)
    if rates.ndim != 1 or rates.size == 0:
        raise ValueError("click_through_rates must be a non-empty list")
    if not np.all((rates > 0) & (rates <= 1)):
        raise ValueError("click_through_rates must lie in (0, 1]: leave out a slot nobody clicks")
    if np.any(np.diff(rates) > 0):
        raise ValueError("click_through_rates must be non-increasing (slot 1 first)")
    return rates


def rank_bidders(bids: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """Bidder indices from highest to lowest bid, ties broken by higher priority.

    Args:
        bids: ``[R, n]``.
        priority: ``[R, n]`` or ``[n]`` distinct tie-break ranks (higher wins).

    Returns:
        ``[R, n]`` int indices.
    """
    priority = np.broadcast_to(priority, bids.shape)
    return np.lexsort((-priority, -bids), axis=-1)


def slot_auction(
    bids: np.ndarray,
    click_through_rates: np.ndarray,
    kind: SlotAuctionKind,
    priority: np.ndarray | None = None,
) -> SlotAuctionOutcome:
    """Run R slot auctions at once (formulas in the module docstring).

    Args:
        bids: ``[R, n]`` non-negative bids (per click).
        click_through_rates: ``[k]`` non-increasing rates of slots 1..k.
        kind: ``first_price``, ``second_price``, ``gsp`` or ``vcg``.
        priority: ``[R, n]`` or ``[n]`` tie-break ranks (default: lower index wins).

    Returns:
        Slots, allocations and payments, ``[R, n]`` each.
    """
    bids = np.asarray(bids, dtype=np.float64)
    if bids.ndim != 2:
        raise ValueError(f"bids must be [R, n], got shape {bids.shape}")
    if not np.all((bids >= 0) & (bids < np.inf)):  # NaN fails both
        raise ValueError("bids must be finite and non-negative")
    if kind not in SLOT_AUCTION_KINDS:
        raise ValueError(f"kind must be one of {', '.join(SLOT_AUCTION_KINDS)}, got {kind!r}")
    rates = check_click_through_rates(click_through_rates)
    if priority is None:
        priority = -np.arange(bids.shape[1], dtype=np.float64)
    return ranked_slot_auction(bids, rates, kind, np.asarray(priority, dtype=np.float64))


def ranked_slot_auction(
    bids: np.ndarray, rates: np.ndarray, kind: SlotAuctionKind, priority: np.ndarray
) -> SlotAuctionOutcome:
    """:func:`slot_auction` without input checks (for validated inputs in hot loops).

    Args:
        bids: ``[R, n]`` float64 non-negative bids.
        rates: ``[k]`` validated click-through rates.
        kind: A valid slot auction kind.
        priority: ``[R, n]`` or ``[n]`` float64 tie-break ranks.
    """
    rounds, bidders = bids.shape
    order = rank_bidders(bids, priority)
    rows = np.arange(rounds)[:, None]
    sorted_bids = bids[rows, order]
    # b_(1..n) padded with zeros so that b_(j+1) and b_(k+1) always exist.
    padded = np.concatenate([sorted_bids, np.zeros((rounds, len(rates) + 1))], axis=-1)
    slot_count = min(len(rates), bidders)
    rank_rates = np.zeros((rounds, bidders))
    rank_rates[:, :slot_count] = rates[:slot_count]
    shown = (sorted_bids > 0) & (rank_rates > 0)
    ranks = np.arange(bidders)
    next_bids = padded[:, 1 : bidders + 1]
    if kind == "first_price":
        price = sorted_bids
    elif kind == "second_price":
        price = np.broadcast_to(padded[:, len(rates) : len(rates) + 1], sorted_bids.shape)
    elif kind == "gsp":
        price = next_bids
    else:
        price = None
    if price is not None:
        rank_payments = rank_rates * price
    else:
        # VCG: sum_{l >= j} (c_l - c_{l+1}) b_(l+1), as a reversed cumulative sum over ranks.
        rates_next = np.concatenate([rates, [0.0]])
        drops = np.zeros(bidders)
        drops[:slot_count] = rates_next[:slot_count] - rates_next[1 : slot_count + 1]
        terms = drops * next_bids
        rank_payments = np.flip(np.cumsum(np.flip(terms, -1), -1), -1)
    rank_payments = np.where(shown, rank_payments, 0.0)
    rank_alloc = np.where(shown, rank_rates, 0.0)
    rank_slots = np.where(shown, ranks, -1)
    inverse = np.empty_like(order)
    inverse[rows, order] = ranks  # rank of each bidder
    return SlotAuctionOutcome(
        slots=rank_slots[rows, inverse],
        allocations=rank_alloc[rows, inverse],
        payments=rank_payments[rows, inverse],
    )
