"""Mechanism kind -> platform factory. New mechanisms register here; the market does not change."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from market_sim.lm.fine_tune import FineTuneConfig
from market_sim.lm.model import LanguageModel
from market_sim.mechanisms.token_auction import TokenAuctionRule
from market_sim.platform.affine_maximizer import AffineMaximizerPlatform
from market_sim.platform.base import Platform
from market_sim.platform.fine_tuned_affine import FineTunedAffineMaximizerPlatform
from market_sim.platform.mosaic import MosaicPlatform
from market_sim.platform.slot_auction import SlotAuctionPlatform
from market_sim.platform.token_auction import TokenAuctionPlatform
from market_sim.scenario.schema import SLOT_AUCTION_KINDS, MechanismConfig


def build_token_auction(
    config: MechanismConfig, lm: LanguageModel, queries: Sequence[str] = ()
) -> TokenAuctionPlatform:
    """A token-auction platform from the scenario's mechanism table."""
    rule = TokenAuctionRule(
        aggregation=config.aggregation,
        payment=config.payment,
        settlement=config.settlement,
        platform_weight=config.platform_weight,
        integration_nodes=config.integration_nodes,
    )
    return TokenAuctionPlatform(lm, rule, config.max_new_tokens, config.temperature)


def build_slot_auction(
    config: MechanismConfig, lm: LanguageModel, queries: Sequence[str] = ()
) -> SlotAuctionPlatform:
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


def build_mosaic(
    config: MechanismConfig, lm: LanguageModel, queries: Sequence[str] = ()
) -> MosaicPlatform:
    """A MOSAIC-style sampling auction from the scenario's mechanism table."""
    return MosaicPlatform(
        lm,
        candidates=config.candidates,
        tau=config.tau,
        proposal=config.proposal,
        payment=config.payment,  # type: ignore[arg-type]
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        relevance_temperature=config.relevance_temperature,
    )


def build_affine_maximizer(
    config: MechanismConfig, lm: LanguageModel, queries: Sequence[str] = ()
) -> Platform:
    """An affine maximizer over sampled replies, or over a grid of fine-tuned LMs."""
    if config.policy_space == "fine_tuned":
        return FineTunedAffineMaximizerPlatform(
            lm,
            queries,
            divergence=config.divergence,  # type: ignore[arg-type]
            regularization=config.regularization,
            payment=config.payment,  # type: ignore[arg-type]
            group_distortion=config.group_distortion,  # type: ignore[arg-type]
            fine_tune=FineTuneConfig(
                samples_per_prompt=config.fine_tune_samples,
                beta=config.fine_tune_beta,
                steps=config.fine_tune_steps,
                learning_rate=config.fine_tune_learning_rate,
                max_new_tokens=config.max_new_tokens,
                temperature=config.temperature,
            ),
            grid_resolution=config.grid_resolution,
            grid_samples=config.grid_samples,
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            relevance_temperature=config.relevance_temperature,
        )
    return AffineMaximizerPlatform(
        lm,
        candidates=config.candidates,
        divergence=config.divergence,  # type: ignore[arg-type]
        regularization=config.regularization,
        payment=config.payment,  # type: ignore[arg-type]
        group_distortion=config.group_distortion,  # type: ignore[arg-type]
        normalization=config.normalization,  # type: ignore[arg-type]
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        relevance_temperature=config.relevance_temperature,
    )


PlatformFactory = Callable[[MechanismConfig, LanguageModel, Sequence[str]], Platform]

PLATFORM_FACTORIES: dict[str, PlatformFactory] = {
    "token_auction": build_token_auction,
    "mosaic": build_mosaic,
    "affine_maximizer": build_affine_maximizer,
    **{kind: build_slot_auction for kind in SLOT_AUCTION_KINDS},
}


def build_platform(
    config: MechanismConfig, lm: LanguageModel, queries: Sequence[str] = ()
) -> Platform:
    """Build the platform for ``config.kind``.

    Args:
        config: The mechanism table.
        lm: The platform language model.
        queries: The scenario's query pool (platforms that prepare per pool read it: the
            fine-tuned affine maximizer trains on it).

    Raises:
        ValueError: No platform is registered for the kind.
    """
    if config.kind not in PLATFORM_FACTORIES:
        allowed = ", ".join(PLATFORM_FACTORIES)
        raise ValueError(f"mechanism.kind: {config.kind!r} has no platform; allowed: {allowed}")
    return PLATFORM_FACTORIES[config.kind](config, lm, queries)
