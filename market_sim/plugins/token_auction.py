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


RECORD_BYTES = 2 * 4
"""Bytes per recorded float32 probability: the step records and their per-auction gather."""


def token_auction_memory(config: TokenAuctionConfig, advertisers: int, vocabulary: int) -> int:
    r"""Bytes one auction keeps until its round settles: its step distributions.

    Every step of the reply records the ``[n + 1, V]`` float32 distributions (user first) that
    the counterfactuals of learners and of the regret search price; they are gathered per
    auction once the decode ends (twice the records at the peak, see
    :func:`market_sim.platform.token_auction.logprobs_by_auction`):

    .. math:: \text{bytes} = 2 \cdot 4 \cdot T \cdot (n + 1) \cdot V, \qquad
              T = \text{max\_new\_tokens}.

    Left out, so that the estimate errs low: once a learner or the regret search prices the
    auction, its counterfactual caches one ``[S, V]`` float64 "rest" distribution per advertiser
    it priced (up to :math:`8 T V n` more), and a step's float64 working set adds to the peak;
    replies that end before T record fewer steps. Measured peak growth (maximum resident set of
    one round, K against K = 1): bundled LM, ``learning_token_auction.toml``, K = 1,024:
    0.966 GB against 0.921 GB estimated; SmolLM2-135M (V = 49,152),
    ``smollm2_hawaii_learning.toml``, K = 16: 1.147 GB against 1.007 GB.
    """
    return RECORD_BYTES * config.max_new_tokens * (advertisers + 1) * vocabulary


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
    auction_memory=token_auction_memory,
)
