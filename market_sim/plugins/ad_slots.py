"""Plugin: the classic ad-slot auctions (first price, second price, GSP, VCG) beside the reply.

The auction rules are in :mod:`market_sim.mechanisms.slot_auctions`; the unsponsored reply and
the counterfactual in :mod:`market_sim.platform.slot_auction`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from market_sim.config.fields import (
    Choice,
    FloatList,
    FloatRange,
    ScenarioError,
    child_key,
    item_key,
)
from market_sim.config.settings import amount, setting
from market_sim.mechanisms.options import REPLY_MODES, ReplyMode
from market_sim.mechanisms.slot_auctions import SLOT_AUCTION_KINDS
from market_sim.platform.report_spaces import BIDS_ONLY
from market_sim.plugins.base import MechanismConfig, MechanismPlugin

if TYPE_CHECKING:
    from market_sim.lm.model import LanguageModel
    from market_sim.platform.slot_auction import SlotAuctionPlatform


@dataclass(frozen=True)
class AdSlotsConfig(MechanismConfig):
    """The ad-slot auctions' keys (``kind`` = first_price, second_price, gsp or vcg)."""

    kind: str = "second_price"
    click_through_rates: tuple[float, ...] = setting(
        FloatList(FloatRange(min=0.0, max=1.0, exclusive_min=True), min_items=1, default=(1.0,)),
        "Non-increasing click-through rates of slots 1..k, each in (0, 1] (a slot nobody "
        "clicks is refused: it would lower the uniform price).",
    )
    reply: ReplyMode = setting(
        Choice(REPLY_MODES, default="sampled"),
        "The unsponsored reply: sampled each auction, or cached (one per query).",
    )
    slot_value: float = setting(
        amount(default=1.0, exclusive_min=True),
        "Allocation units of a click-through rate of 1 (1 = value per click).",
    )


def check_click_through_rates(values: Mapping[str, Any], key: str) -> None:
    """Slot 1 comes first: the rates must not increase."""
    rates = values["click_through_rates"]
    for index in range(1, len(rates)):
        if rates[index] > rates[index - 1]:
            raise ScenarioError(
                item_key(child_key(key, "click_through_rates"), index),
                f"click-through rates must be non-increasing (slot 1 first), got {list(rates)}",
            )


def build_ad_slots(
    config: AdSlotsConfig, lm: LanguageModel, queries: Sequence[str] = ()
) -> SlotAuctionPlatform:
    """An ad-slot auction (``config.kind`` names it) beside the unsponsored reply."""
    from market_sim.platform.slot_auction import SlotAuctionPlatform

    return SlotAuctionPlatform(
        lm,
        config.kind,  # type: ignore[arg-type]  # one of the plugin's kinds
        config.click_through_rates,
        config.max_new_tokens,
        config.temperature,
        config.reply,
        config.slot_value,
    )


AD_SLOTS = MechanismPlugin(
    name="ad_slots",
    kinds=SLOT_AUCTION_KINDS,
    title="the ad-slot auction",
    summary="Today's ad auctions: k slots sold by bid beside the unsponsored reply (the kind "
    "names the auction).",
    config_type=AdSlotsConfig,
    build=build_ad_slots,
    report_space=lambda config: BIDS_ONLY,
    check=check_click_through_rates,
    decodes_per_auction=False,
)
