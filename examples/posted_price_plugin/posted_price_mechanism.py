"""A posted-price mechanism as a market-sim plugin: config, platform, counterfactual, plugin.

The rule: the platform posts a price ``p`` for one unit of ad influence. Every advertiser whose
bid reaches ``p`` accepts; the ``k`` accepting advertisers share the unit equally (allocation
``1 / k`` each) and each pays ``p`` times its share. No language model is called: the reply is
empty and the user side is left out (``user_value = 0``). Allocations are in this mechanism's own
unit, a share of one unit (an ad slot's is its click-through rate times ``slot_value``, a token
auction's a sum over the reply's tokens), so compare its welfare with other kinds knowing that.

Incentives: with the others' bids fixed and ``k`` of them accepting, accepting is worth
``(v - p) / (k + 1)`` to an advertiser of value ``v`` and declining 0, so bidding ``v`` (accept
exactly when ``v >= p``) is a best response to every profile: truthful bidding is dominant and
the regret of truthful bidding is 0, which the regret estimator should find.

Installed as a package (``pip install -e examples/posted_price_plugin`` beside market-sim), the
``market_sim.mechanisms`` entry point in ``pyproject.toml`` registers :data:`PLUGIN` in every
``market-sim`` process, sweep workers included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from market_sim.config.settings import amount, setting
from market_sim.platform.base import (
    AuctionOutcome,
    Bidder,
    CounterfactualValues,
    Report,
    ReportBatch,
    ReportSpace,
)
from market_sim.plugins import MechanismConfig, MechanismPlugin


@dataclass(frozen=True)
class PostedPriceConfig(MechanismConfig):
    """``[mechanism]`` of ``kind = "posted_price"``: every key declared once, with its doc.

    Attributes:
        kind: ``"posted_price"``.
        price: The posted price ``p`` of the whole unit (``mechanism.price``).
    """

    kind: str = "posted_price"
    price: float = setting(amount(default=0.5), "The posted price of the whole unit.")


def posted_price_shares(bids: np.ndarray, price: float) -> np.ndarray:
    """``[n]`` allocations: ``1 / k`` to each of the ``k`` bidders with ``bid >= price``, else 0."""
    accepted = bids >= price
    return accepted / max(int(accepted.sum()), 1)


@dataclass(frozen=True)
class PostedPriceCounterfactual:
    """One auction re-priced for one advertiser under K other bids, the others' bids fixed.

    Attributes:
        bids: ``[n]`` the auction's bids as submitted.
        price: The posted price.
    """

    bids: np.ndarray
    price: float

    def evaluate(self, agent: int, reports: ReportBatch | Sequence[Report]) -> CounterfactualValues:
        """``[K]`` allocations ``accept / (k_others + 1)`` and payments ``price x allocation``."""
        batch = ReportBatch.of(reports)
        others_accepting = int(np.delete(self.bids >= self.price, agent).sum())
        allocations = (batch.bid >= self.price) / (others_accepting + 1.0)
        return CounterfactualValues(allocations, self.price * allocations)

    def jump_bids(self, agent: int) -> np.ndarray:
        """``[1]`` the price, the only bid where the outcome changes (optional: the regret search).

        See ``JumpBids`` in ``market_sim.platform.base``.
        """
        return np.array([self.price])


class PostedPricePlatform:
    """Runs the posted price: no LM call, an empty reply, the unit shared by the acceptors."""

    report_space = ReportSpace(None)  # reads bids only

    def __init__(self, config: PostedPriceConfig) -> None:
        self.kind = config.kind
        self.price = config.price

    def run_auctions(
        self, queries: Sequence[str], bidders: Sequence[Sequence[Bidder]], seed: int
    ) -> list[AuctionOutcome]:
        """One outcome per query; nothing is random, so ``seed`` is unused."""
        outcomes = []
        for auction_bidders in bidders:
            bids = np.array([bidder.report.bid for bidder in auction_bidders], dtype=np.float64)
            shares = posted_price_shares(bids, self.price)
            outcomes.append(
                AuctionOutcome(
                    text="",
                    token_ids=[],
                    allocations=shares,
                    reported_allocations=shares,
                    payments=self.price * shares,
                    user_value=0.0,
                    counterfactual=PostedPriceCounterfactual(bids, self.price),
                )
            )
        return outcomes


PLUGIN = MechanismPlugin(
    name="posted_price",
    kinds=("posted_price",),
    title="the posted price",
    summary="A posted price shared by the bidders who accept it.",
    config_type=PostedPriceConfig,
    build=lambda config, lm, queries: PostedPricePlatform(config),
    report_space=lambda config: PostedPricePlatform.report_space,
    decodes_per_auction=False,  # no LM call per auction: no run-length warning
)
"""What the ``market_sim.mechanisms`` entry point loads (or a script passes to
``register_mechanism``)."""
