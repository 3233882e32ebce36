"""Mechanism kind -> platform factory. New mechanisms register here; the market does not change."""

from __future__ import annotations

from collections.abc import Callable

from market_sim.lm.model import LanguageModel
from market_sim.mechanisms.token_auction import TokenAuctionRule
from market_sim.platform.base import Platform
from market_sim.platform.slot_auction import SlotAuctionPlatform
from market_sim.platform.token_auction import TokenAuctionPlatform
from market_sim.scenario.schema import SLOT_AUCTION_KINDS, MechanismConfig


def build_token_auction(config: MechanismConfig, lm: LanguageModel) -> TokenAuctionPlatform:
    """A token-auction platform from the scenario's mechanism table."""
    rule = TokenAuctionRule(
        aggregation=config.aggregation,
        payment=config.payment,
        settlement=config.settlement,
        platform_weight=config.platform_weight,
        integration_nodes=config.integration_nodes,
    )
    return TokenAuctionPlatform(lm, rule, config.max_new_tokens, config.temperature)


def build_slot_auction(config: MechanismConfig, lm: LanguageModel) -> SlotAuctionPlatform:
    """An ad-slot baseline (``config.kind`` names the auction) beside the unsponsored reply."""
    return SlotAuctionPlatform(
        lm,
        config.kind,  # type: ignore[arg-type]
        config.click_through_rates,
        config.max_new_tokens,
        config.temperature,
        config.reply,
        config.slot_value,
    )


PLATFORM_FACTORIES: dict[str, Callable[[MechanismConfig, LanguageModel], Platform]] = {
    "token_auction": build_token_auction,
    **{kind: build_slot_auction for kind in SLOT_AUCTION_KINDS},
}


def build_platform(config: MechanismConfig, lm: LanguageModel) -> Platform:
    """Build the platform for ``config.kind``.

    Raises:
        ValueError: No platform is registered for the kind.
    """
    if config.kind not in PLATFORM_FACTORIES:
        allowed = ", ".join(PLATFORM_FACTORIES)
        raise ValueError(f"mechanism.kind: {config.kind!r} has no platform; allowed: {allowed}")
    return PLATFORM_FACTORIES[config.kind](config, lm)
