"""The token-auction platform on an LM: every recorded number can be recomputed by a referee."""

import numpy as np
import pytest
import torch

from market_sim.mechanisms.token_auction import (
    TokenAuctionRule,
    aggregate,
    linear_second_price_payments,
    normalized_weights,
    numerical_second_price_payments,
    participant_weights,
)
from market_sim.platform.base import Bidder, Report
from market_sim.platform.token_auction import TokenAuctionPlatform, sharpen
from market_sim.prompting import build_prompt

QUERY = "vacation in Hawaii"
CONTEXTS = ["Alpha Airlines: nonstop flights to Hawaii.", "Beta Resort: beachfront rooms on Maui."]


def recompute_round(lm, tokens, bids, scales, rule):
    """Recompute allocations and payments from scratch: uncached, one prefix at a time."""
    prompts = [build_prompt(QUERY)] + [build_prompt(QUERY, [c]) for c in CONTEXTS]
    encoded = [lm.encode(p) for p in prompts]
    raw = participant_weights(torch.tensor([bids], dtype=torch.float64), rule.platform_weight)
    true_total = np.zeros(2)
    payment_total = np.zeros(2)
    user_total = 0.0
    for step in range(len(tokens)):
        logprobs = lm.next_token_logprobs([ids + tokens[:step] for ids in encoded]).double()
        reported = torch.cat(
            [logprobs[:1], sharpen(logprobs[None, 1:], torch.tensor([scales]))[0].double()]
        )[None]
        q = aggregate(reported, normalized_weights(raw), rule.aggregation)[0]
        true_total += (1 - 0.5 * (q - logprobs[1:].exp()).abs().sum(-1)).numpy()
        user_total += float(1 - 0.5 * (q - logprobs[0].exp()).abs().sum())
        if rule.aggregation == "linear":
            payment_total += linear_second_price_payments(reported.exp(), raw)[0].numpy()
        else:
            payment_total += numerical_second_price_payments(
                reported, raw, rule.aggregation, rule.integration_nodes
            )[0].numpy()
    return true_total, payment_total, user_total


@pytest.mark.parametrize("aggregation", ["linear", "log_linear"])
def test_recorded_round_is_recomputable(random_lm, aggregation):
    rule = TokenAuctionRule(aggregation=aggregation, platform_weight=0.3, integration_nodes=32)
    platform = TokenAuctionPlatform(random_lm, rule, max_new_tokens=8)
    bids, scales = [1.0, 0.6], [1.0, 2.0]
    bidders = [
        Bidder(context, Report(bid=bid, report_scale=scale))
        for context, bid, scale in zip(CONTEXTS, bids, scales, strict=True)
    ]
    outcomes = platform.run_auctions([QUERY, QUERY], [bidders, bidders], seed=5)
    for outcome in outcomes:
        tokens = list(outcome.token_ids)
        if outcome.extras["stopped_at_eos"]:
            tokens.append(random_lm.eos_token_id)  # the EOS token is auctioned and paid for too
        true_total, payment_total, user_total = recompute_round(
            random_lm, tokens, bids, scales, rule
        )
        np.testing.assert_allclose(outcome.allocations, true_total, atol=1e-4)
        np.testing.assert_allclose(outcome.payments, payment_total, atol=1e-4)
        assert outcome.user_value == pytest.approx(user_total, abs=1e-4)


def test_same_seed_same_reply_and_sharpening_changes_reports(random_lm):
    platform = TokenAuctionPlatform(random_lm, TokenAuctionRule(), max_new_tokens=6)
    truthful = [Bidder(c, Report(bid=1.0)) for c in CONTEXTS]
    first = platform.run_auctions([QUERY], [truthful], seed=11)[0]
    again = platform.run_auctions([QUERY], [truthful], seed=11)[0]
    assert first.token_ids == again.token_ids
    np.testing.assert_array_equal(first.payments, again.payments)
    np.testing.assert_allclose(first.allocations, first.reported_allocations)
    sharpened = [Bidder(CONTEXTS[0], Report(bid=1.0, report_scale=4.0)), truthful[1]]
    distorted = platform.run_auctions([QUERY], [sharpened], seed=11)[0]
    gap = abs(distorted.allocations[0] - distorted.reported_allocations[0])
    assert gap > 1e-6  # values use the true distribution, payments the reported one
