"""Options of the mechanisms' rules and platforms, defined once and light to import.

Scenario validation needs these names (to list the allowed values of ``mechanism.aggregation``,
``mechanism.payment``, ...) but never the math, so they live apart from the torch modules that
implement the rules (:mod:`market_sim.mechanisms.token_auction`,
:mod:`market_sim.mechanisms.mosaic`) and the platforms, which import them from here. The affine
maximizer's rule options (divergence, normalization, payment, group distortion) and the ad-slot
kinds live in their own rule modules, which need only numpy.
"""

from __future__ import annotations

from typing import Literal, get_args

Aggregation = Literal["linear", "log_linear"]
"""How the token auction combines the advertisers' next-token distributions."""
PaymentRule = Literal["second_price", "first_price", "none"]
"""The token auction's payment rules (the first is the default)."""
Settlement = Literal["expected", "ex_post"]
"""Expected payments, or ex-post payments from stable sampling."""
MosaicPayment = Literal["mosaic", "none"]
"""MOSAIC's payment rules (the first is the default)."""
MosaicProposal = Literal["reference", "context_aware"]
"""Where MOSAIC's candidates come from: pi_ref (the query alone) or the query with every context."""
ReplyMode = Literal["sampled", "cached"]
"""The ad-slot auctions' unsponsored reply: sampled each auction, or one per query."""
PolicySpace = Literal["candidates", "fine_tuned"]
"""The affine maximizer's outcome space: a distribution over sampled replies, or fine-tuned
copies' weight interpolations."""

AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)
PROPOSALS: tuple[str, ...] = get_args(MosaicProposal)
REPLY_MODES: tuple[str, ...] = get_args(ReplyMode)
POLICY_SPACES: tuple[str, ...] = get_args(PolicySpace)
