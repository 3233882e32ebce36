"""Plugin: the token auction (every next token drawn from the bid-weighted aggregate).

The rule and its payments are in :mod:`market_sim.mechanisms.token_auction`, the batched decode
and its counterfactual in :mod:`market_sim.platform.token_auction`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

from market_sim.config.fields import Choice, IntRange, ScenarioError, child_key, show
from market_sim.config.settings import amount, setting
from market_sim.mechanisms.options import Aggregation, PaymentRule, Settlement
from market_sim.platform.report_spaces import SHARPEN
from market_sim.plugins.base import MechanismConfig, MechanismPlugin

if TYPE_CHECKING:
    from market_sim.lm.model import LanguageModel
    from market_sim.platform.token_auction import TokenAuctionPlatform


@dataclass(frozen=True)
class TokenAuctionConfig(MechanismConfig):
    """The token auction's keys (``[mechanism]`` with ``kind = "token_auction"``)."""

    kind: str = "token_auction"
    aggregation: Aggregation = setting(
        Choice(get_args(Aggregation), default="linear"),
        "How the advertisers' next-token distributions are combined.",
    )
    payment: PaymentRule = setting(
        Choice(get_args(PaymentRule), default="second_price"),
        "Payment rule: the critical bid (second_price), the bid (first_price), or none.",
    )
    settlement: Settlement = setting(
        Choice(get_args(Settlement), default="expected"),
        "expected payments, or ex_post payments from stable sampling (linear second price).",
    )
    platform_weight: float = setting(
        amount(default=0.0),
        "Weight b0 of the user's unsponsored distribution in the aggregate (0: none).",
    )
    integration_nodes: int = setting(
        IntRange(min=8, max=4096, default=64),
        "Quadrature nodes per unit of ln(1 + z / B) for log-linear second-price payments.",
    )


def check_settlement(values: Mapping[str, Any], key: str) -> None:
    """Ex-post settlement needs linear aggregation and second-price payments."""
    if values["settlement"] != "ex_post":
        return
    if values["aggregation"] == "linear" and values["payment"] == "second_price":
        return
    raise ScenarioError(
        child_key(key, "settlement"),
        f"'ex_post' requires {child_key(key, 'aggregation')} = 'linear' and "
        f"{child_key(key, 'payment')} = 'second_price', got aggregation "
        f"{show(values['aggregation'])} and payment {show(values['payment'])}; use settlement = "
        "'expected'",
    )


def build_token_auction(
    config: TokenAuctionConfig, lm: LanguageModel, queries: Sequence[str] = ()
) -> TokenAuctionPlatform:
    """A token-auction platform from its config (torch is imported here, not at validation)."""
    from market_sim.mechanisms.token_auction import TokenAuctionRule
    from market_sim.platform.token_auction import TokenAuctionPlatform

    rule = TokenAuctionRule(
        aggregation=config.aggregation,
        payment=config.payment,
        settlement=config.settlement,
        platform_weight=config.platform_weight,
        integration_nodes=config.integration_nodes,
    )
    return TokenAuctionPlatform(lm, rule, config.max_new_tokens, config.temperature)


TOKEN_AUCTION = MechanismPlugin(
    name="token_auction",
    kinds=("token_auction",),
    title="the token auction",
    summary="Each next token is drawn from the bid-weighted aggregate of the advertisers' "
    "distributions; second-price payments are critical bids.",
    config_type=TokenAuctionConfig,
    build=build_token_auction,
    report_space=lambda config: SHARPEN,
    check=check_settlement,
)
