"""What every platform mechanism takes and returns, whatever it does with the LM.

A *platform* runs one mechanism on the language model: it turns a query, the advertisers'
contexts and their reports into a reply plus allocations and payments. The market
(:mod:`market_sim.market`) sees only this interface, so sequence-level mechanisms and ad-slot
baselines plug in beside the token auction without changes to the model.

Value contract: an advertiser's value for a round is ``valuation * allocation``, where
``allocation`` is measured with its TRUE preferences (whatever it reported).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Report:
    """What an advertiser submits in one round.

    Attributes:
        bid: Non-negative bid (the token auction's weight b_i).
        report_scale: Distortion of the reported preference; 1.0 is truthful. For the token
            auction it is the sharpening exponent s (reported distribution proportional to p^s).
    """

    bid: float
    report_scale: float = 1.0


@dataclass(frozen=True)
class Bidder:
    """One advertiser as a platform sees it in a round.

    Attributes:
        context: The brand context (conditions the advertiser's preferred distribution).
        report: Its report for the round.
    """

    context: str
    report: Report


@dataclass(frozen=True)
class ReportBatch:
    """K candidate reports as arrays (what counterfactuals evaluate, without Python objects).

    Attributes:
        bid: ``[K]`` bids.
        report_scale: ``[K]`` report distortions.
    """

    bid: np.ndarray
    report_scale: np.ndarray

    @classmethod
    def of(cls, reports: ReportBatch | Sequence[Report]) -> ReportBatch:
        """A batch from a batch (returned as is) or from a sequence of reports."""
        if isinstance(reports, ReportBatch):
            return reports
        return cls(
            np.array([r.bid for r in reports], dtype=np.float64),
            np.array([r.report_scale for r in reports], dtype=np.float64),
        )

    def __len__(self) -> int:
        return int(self.bid.shape[0])

    def __getitem__(self, index: int) -> Report:
        return Report(float(self.bid[index]), float(self.report_scale[index]))


@dataclass(frozen=True)
class ReportSpace:
    """Which parts of a :class:`Report` a mechanism reads, and the deviations worth searching.

    Attributes:
        distortion: Name of what ``Report.report_scale`` means for this mechanism (``"sharpen"``
            for the token auction, e.g. ``"reward_scale"`` for a sequence mechanism), or None when
            the mechanism reads the bid only (ad-slot auctions); a run records it in
            ``summary.json`` as ``report_scale_meaning``.
        distortion_low: Smallest distortion a deviation search or learner grid should try.
        distortion_high: Largest distortion a deviation search or learner grid should try.
    """

    distortion: str | None = None
    distortion_low: float = 1.0
    distortion_high: float = 1.0


@dataclass(frozen=True)
class CounterfactualValues:
    """What one advertiser would have got under K alternative reports, the rest held fixed.

    Attributes:
        allocations: ``[K]`` allocation measured with the advertiser's TRUE preferences.
        payments: ``[K]`` payments.
    """

    allocations: np.ndarray
    payments: np.ndarray

    def utilities(self, valuation: float) -> np.ndarray:
        """``[K]`` quasi-linear utilities ``valuation * allocation - payment``."""
        return valuation * self.allocations - self.payments


class Counterfactual(Protocol):
    """Re-runs one round's mechanism for one advertiser under alternative reports.

    "Same randomness": every other advertiser's report and every random draw of the round
    (sampled candidates, generated prefix, tie-breaking order) stay as they were; only the
    advertiser's own report changes. Each mechanism documents what it holds fixed. This is
    the one interface through which learners get full-information feedback and through which
    the regret estimator (:mod:`market_sim.incentives`) searches deviations, for every mechanism.
    """

    def evaluate(self, agent: int, reports: ReportBatch | Sequence[Report]) -> CounterfactualValues:
        """Allocation and payment of advertiser ``agent`` under each of K reports.

        Args:
            agent: Index of the advertiser in the round's bidder list.
            reports: K alternative reports (a batch, or a sequence normalized with
                :meth:`ReportBatch.of`).

        Returns:
            ``[K]`` allocations (true preferences) and payments.
        """
        ...


class JumpBids(Protocol):
    """A counterfactual that knows where an advertiser's outcome can change (optional).

    For a mechanism under which one advertiser's utility is constant or falls with its bid
    between a few known bids (a ranked auction: the other bids are its rank thresholds), the
    regret search tries each such bid and the next float above it, which reaches the supremum
    of every piece (:func:`~market_sim.incentives.regret.jump_candidates`). A utility that rises
    within a piece has its supremum just below the next jump, which is not tried: such a
    mechanism should not name jump bids. Where a counterfactual has no ``jump_bids``, the search
    relies on its grid alone (:func:`~market_sim.platform.outcome_checks.checked_jump_bids`).
    """

    def jump_bids(self, agent: int) -> np.ndarray:
        """``[J]`` bids at which advertiser ``agent``'s allocation or payment may jump."""
        ...


@dataclass(frozen=True)
class AuctionOutcome:
    """Result of one auction (one round's reply).

    Attributes:
        text: The generated reply.
        token_ids: Its tokens.
        allocations: ``[n]`` influence measured with TRUE preferences (value = valuation x it),
            in the mechanism's own unit: the token auction sums ``1 - TV`` over the reply's
            steps (up to ``max_new_tokens + 1``), MOSAIC and the affine maximizer give a
            reply's expected relevance (at most 1), an ad slot its click-through rate times
            ``slot_value``. Values, payments and welfare compare across mechanisms only where
            the units agree; a plugin states its unit in its docs.
        reported_allocations: ``[n]`` influence measured with the REPORTED preferences.
        payments: ``[n]`` payments charged.
        user_value: The user's value of the reply, in the same unit: the token auction sums
            the user's ``1 - TV(q_t, p_0,t)`` over the steps; an ad-slot baseline counts the
            unsponsored reply's decoding steps (an unsteered reply, in the token auction's
            unit); MOSAIC and the affine maximizer give minus their regularizer (a KL or
            divergence from the reference policy, scaled by tau). 0 for a mechanism without
            a user side.
        extras: Mechanism-specific scalars for the round record: a plugin names each
            ``extra_<name>`` (a float column of ``rounds.parquet``); a name the market computes
            (``revenue``, ...) is refused.
        counterfactual: Re-evaluates this round for one advertiser under other reports (see
            :class:`Counterfactual`); None only for platforms that cannot, which then support
            neither full-information learners nor regret measurement.
    """

    text: str
    token_ids: list[int]
    allocations: np.ndarray
    reported_allocations: np.ndarray
    payments: np.ndarray
    user_value: float
    extras: dict[str, float] = field(default_factory=dict)
    counterfactual: Counterfactual | None = None


class Platform(Protocol):
    """A mechanism run on a language model.

    Attributes:
        kind: The scenario's ``mechanism.kind``.
        report_space: Which report fields the mechanism reads.

    Optionally ``counterfactual_is_realized`` (taken as True when absent): False where an
    outcome's counterfactual values a report differently from how the round settled it (the
    ex-post token auction charges a sampled critical bid, its counterfactual the expectation).
    The market then records ``truthful_utility`` from the counterfactual only, never from a
    truthful advertiser's realized utility, so that one column means one quantity.
    """

    kind: str
    report_space: ReportSpace

    def run_auctions(
        self, queries: Sequence[str], bidders: Sequence[Sequence[Bidder]], seed: int
    ) -> list[AuctionOutcome]:
        """Run A independent auctions in one batch.

        Args:
            queries: A user queries.
            bidders: A lists of the same n bidders' contexts and reports.
            seed: Seeds every random draw of the batch.

        Returns:
            A outcomes, in order.
        """
        ...


@dataclass(frozen=True)
class AuctionBatch:
    """The arguments of one :meth:`Platform.run_auctions` call (one replicate's round).

    Attributes:
        queries: A user queries.
        bidders: A lists of the same n bidders.
        seed: Seeds every random draw of the batch.
    """

    queries: Sequence[str]
    bidders: Sequence[Sequence[Bidder]]
    seed: int


def run_auction_groups(
    platforms: Sequence[Platform], batches: Sequence[AuctionBatch]
) -> list[list[AuctionOutcome]]:
    """Run R batches, batch r on platform r, sharing the LM forward where the platform can.

    Platforms of one kind built from one scenario may share a decode when they define
    ``run_auction_groups`` and keep no state between rounds (the token auction); the others
    (e.g. ad slots with their reply cache) run their batches one after another.

    Returns:
        R lists of outcomes, each equal to ``platforms[r].run_auctions(*batches[r])``.
    """
    shared = getattr(platforms[0], "run_auction_groups", None) if platforms else None
    if shared is not None and len({type(p) for p in platforms}) == 1:
        return shared(batches)
    return [
        platform.run_auctions(batch.queries, batch.bidders, batch.seed)
        for platform, batch in zip(platforms, batches, strict=True)
    ]


def check_batch(queries: Sequence[str], bidders: Sequence[Sequence[Bidder]]) -> None:
    """The batch convention of :meth:`Platform.run_auctions`: one list of bidders per query.

    Raises:
        ValueError: The two lengths differ.
    """
    if len(queries) != len(bidders):
        raise ValueError("one list of bidders per query is required")
