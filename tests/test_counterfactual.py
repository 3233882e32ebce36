"""Counterfactuals re-price a recorded round: at the actual report they reproduce it exactly."""

import math

import numpy as np
import pytest
import torch

from market_sim.mechanisms.token_auction import TokenAuctionRule, run_token_auction_step
from market_sim.mechanisms.token_auction_counterfactual import TokenAuctionCounterfactual
from market_sim.platform.base import Bidder, Report
from market_sim.platform.token_auction import TokenAuctionPlatform, sharpen

QUERY = "vacation in Hawaii"
CONTEXTS = [
    "Alpha Airlines: nonstop flights to Hawaii.",
    "Beta Resort: beachfront rooms on Maui.",
    "Gamma Cars: rent a convertible.",
]

RULES = [
    TokenAuctionRule("linear", "second_price", platform_weight=0.0),
    TokenAuctionRule("linear", "second_price", platform_weight=0.4),
    TokenAuctionRule("linear", "first_price", platform_weight=0.2),
    TokenAuctionRule("linear", "none"),
    TokenAuctionRule("log_linear", "second_price", platform_weight=0.3, integration_nodes=32),
]


def full_auction_outcome(step_logprobs, bids, exponents, rule):
    """Sum the full n-advertiser step outcome over the recorded steps (the referee's way)."""
    true = step_logprobs[:, 1:]
    reported = torch.cat([step_logprobs[:, :1], sharpen(true, exponents.expand(len(true), -1))], 1)
    step = run_token_auction_step(
        reported, true, bids.expand(len(true), -1), rule, torch.Generator().manual_seed(0)
    )
    return step.true_allocations.sum(0), step.payments.sum(0)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.aggregation}-{r.payment}")
def test_agent_versus_rest_equals_full_auction(rule):
    generator = torch.Generator().manual_seed(3)
    step_logprobs = torch.log_softmax(torch.randn(5, 4, 40, generator=generator) * 2, -1)
    bids = torch.tensor([0.7, 1.3, 0.0], dtype=torch.float64)
    exponents = torch.tensor([1.0, 2.0, 0.5])
    engine = TokenAuctionCounterfactual(step_logprobs, bids, exponents, rule)
    candidate_bids = torch.tensor([0.0, 0.3, 0.7, 1.3, 2.5], dtype=torch.float64)
    candidate_exponents = torch.tensor([1.0, 0.5, 1.0, 3.0, 1.0])
    for agent in range(3):
        result = engine.evaluate(agent, candidate_bids, candidate_exponents)
        for k in range(len(candidate_bids)):
            new_bids, new_exponents = bids.clone(), exponents.clone()
            new_bids[agent], new_exponents[agent] = candidate_bids[k], candidate_exponents[k]
            true_alloc, payments = full_auction_outcome(
                step_logprobs, new_bids, new_exponents, rule
            )
            assert float(result.true_allocations[k]) == pytest.approx(
                float(true_alloc[agent]), abs=1e-9
            )
            assert float(result.payments[k]) == pytest.approx(float(payments[agent]), abs=1e-9)


LOG_LINEAR_RULES = [
    TokenAuctionRule("log_linear", "second_price", platform_weight=0.3, integration_nodes=24),
    TokenAuctionRule("log_linear", "first_price", platform_weight=0.0),
    TokenAuctionRule("log_linear", "none", platform_weight=0.1),
]


@pytest.mark.parametrize("rule", LOG_LINEAR_RULES, ids=lambda r: r.payment)
def test_log_linear_share_evaluation_equals_the_two_party_auctions(rule):
    """The share-based log-linear path against the generic two-party auctions it replaces."""
    generator = torch.Generator().manual_seed(5)
    step_logprobs = torch.log_softmax(torch.randn(4, 3, 50, generator=generator) * 3, -1)
    engine = TokenAuctionCounterfactual(
        step_logprobs, torch.tensor([0.8, 1.1]), torch.tensor([1.0, 2.0]), rule
    )
    bids = torch.tensor([0.0, 1e-9, 0.4, 0.8, 0.8, 2.0, 1e3], dtype=torch.float64)
    exponents = torch.tensor([1.0, 0.5, 1.0, 1.0, 3.0, 0.25, 1.0])
    for agent in range(2):
        result = engine.evaluate(agent, bids, exponents)
        rest, rest_weight = engine.rest(agent)
        true_logprobs = engine.step_logprobs[:, agent + 1]
        sharpened = sharpen(true_logprobs.unsqueeze(1), exponents.unsqueeze(0)).double()
        true, reported, payments = engine._evaluate_chunk(
            rest, rest_weight, true_logprobs, sharpened, bids
        )
        # Same formulas; the logits r + t (f - r) and (B r + z f) / (B + z) round differently
        # (about 1e-16), which the sums over 4 steps and the quadrature keep below 1e-13.
        torch.testing.assert_close(result.reported_allocations, reported, rtol=0, atol=1e-13)
        torch.testing.assert_close(result.true_allocations, true, rtol=0, atol=1e-13)
        torch.testing.assert_close(result.payments, payments, rtol=1e-12, atol=1e-13)


def test_log_linear_share_blocks_do_not_change_the_numbers(monkeypatch):
    import market_sim.mechanisms.log_linear_shares as module

    step_logprobs = torch.log_softmax(
        torch.randn(3, 3, 20, generator=torch.Generator().manual_seed(6)) * 2, -1
    )
    rule = TokenAuctionRule("log_linear", integration_nodes=8)
    bids = torch.linspace(0, 2, 7, dtype=torch.float64)
    exponents = torch.tensor([1.0, 2.0, 1.0, 0.5, 2.0, 1.0, 3.0])

    def fresh_engine() -> TokenAuctionCounterfactual:  # a new engine: nothing memoized
        return TokenAuctionCounterfactual(
            step_logprobs, torch.tensor([1.0, 0.5]), torch.ones(2), rule
        )

    whole = fresh_engine().evaluate(0, bids, exponents)
    for block in (1, 3, 7):  # shares per pass: blocks straddle the quadrature/own-bid boundary
        # The 20 tokens are padded to 32 columns (EXP2_LANES) in a block.
        monkeypatch.setattr(module, "BLOCK_ELEMENTS", 32 * block)
        blocked = fresh_engine().evaluate(0, bids, exponents)
        assert torch.equal(blocked.payments, whole.payments)
        assert torch.equal(blocked.true_allocations, whole.true_allocations)
        assert torch.equal(blocked.reported_allocations, whole.reported_allocations)


def test_log_linear_counterfactual_payments_match_high_resolution_quadrature():
    step_logprobs = torch.log_softmax(
        torch.randn(3, 3, 40, generator=torch.Generator().manual_seed(8)) * 2, -1
    )
    bids = torch.tensor([0.9, 1.2], dtype=torch.float64)
    candidates = torch.tensor([0.3, 0.9, 1.8], dtype=torch.float64)
    exponents = torch.tensor([1.0, 2.0, 0.5])
    rule = TokenAuctionRule("log_linear", platform_weight=0.2, integration_nodes=64)
    fine = TokenAuctionRule("log_linear", platform_weight=0.2, integration_nodes=2048)
    result = TokenAuctionCounterfactual(step_logprobs, bids, torch.ones(2), rule).evaluate(
        0, candidates, exponents
    )
    for k in range(3):
        new_bids = bids.clone()
        new_bids[0] = candidates[k]
        _, reference = full_auction_outcome(
            step_logprobs, new_bids, torch.tensor([float(exponents[k]), 1.0]), fine
        )
        # The 64-node rule against 2048 nodes: the tolerance of the per-token convergence test
        # (tests/test_token_auction_math.py), relative to the bid, the payment's scale.
        assert abs(float(result.payments[k]) - float(reference[0])) <= 2e-3 * float(candidates[k])


def test_remembered_log_linear_candidates_equal_a_fresh_evaluation():
    step_logprobs = torch.log_softmax(
        torch.randn(3, 3, 25, generator=torch.Generator().manual_seed(9)), -1
    )
    rule = TokenAuctionRule("log_linear", platform_weight=0.1, integration_nodes=16)

    def fresh_engine() -> TokenAuctionCounterfactual:
        return TokenAuctionCounterfactual(
            step_logprobs, torch.tensor([0.6, 1.4]), torch.ones(2), rule
        )

    engine = fresh_engine()
    first = engine.evaluate(0, torch.tensor([0.5, 1.0, 0.5]), torch.tensor([1.0, 2.0, 1.0]))
    again = engine.evaluate(0, torch.tensor([1.0, 1.5, 0.5]), torch.tensor([2.0, 1.0, 1.0]))
    reference = fresh_engine()._evaluate_distinct(
        0, torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64), torch.tensor([1.0, 2.0, 1.0])
    )
    for name in ("true_allocations", "reported_allocations", "payments"):
        expected = getattr(reference, name)
        assert getattr(first, name).tolist() == expected[[0, 1, 0]].tolist()
        assert getattr(again, name).tolist() == expected[[1, 2, 0]].tolist()
    other = engine.evaluate(1, torch.tensor([0.5]), torch.tensor([1.0]))  # memo is per agent
    assert (
        other.payments.tolist()
        == fresh_engine()
        ._evaluate_distinct(1, torch.tensor([0.5], dtype=torch.float64), torch.tensor([1.0]))
        .payments.tolist()
    )


def test_counterfactual_refuses_bids_outside_its_domain():
    step_logprobs = torch.log_softmax(torch.randn(2, 3, 10), -1)
    rule = TokenAuctionRule("log_linear")
    with pytest.raises(ValueError, match="bids must be finite and >= 0"):
        TokenAuctionCounterfactual(step_logprobs, torch.tensor([1.0, -1.0]), torch.ones(2), rule)
    engine = TokenAuctionCounterfactual(
        step_logprobs, torch.tensor([1e308, 1e308], dtype=torch.float64), torch.ones(2), rule
    )
    with pytest.raises(ValueError, match="bids must be finite and >= 0"):
        engine.evaluate(0, torch.tensor([math.nan]), torch.ones(1))
    with pytest.raises(ValueError, match="weights sum past 1.8e308"):
        TokenAuctionCounterfactual(
            torch.log_softmax(torch.randn(2, 4, 10), -1),
            torch.tensor([1e308, 1e308, 1e308], dtype=torch.float64),
            torch.ones(3),
            rule,
        ).evaluate(0, torch.tensor([1.0]), torch.ones(1))
    with pytest.raises(ValueError, match="sharpening exponents must be finite and > 0"):
        engine.evaluate(0, torch.tensor([1.0]), torch.tensor([0.0]))


@pytest.mark.parametrize("aggregation", ["linear", "log_linear"])
def test_chunked_evaluation_equals_one_batch(monkeypatch, aggregation):
    import market_sim.mechanisms.token_auction_counterfactual as module

    step_logprobs = torch.log_softmax(
        torch.randn(4, 3, 30, generator=torch.Generator().manual_seed(1)), -1
    )
    engine = TokenAuctionCounterfactual(
        step_logprobs,
        torch.tensor([1.0, 0.5]),
        torch.ones(2),
        TokenAuctionRule(aggregation, integration_nodes=16),
    )
    bids = torch.linspace(0, 2, 9, dtype=torch.float64)
    exponents = torch.tensor([1.0, 2.0, 1.0, 0.5, 2.0, 1.0, 1.0, 3.0, 1.0])
    whole = engine.evaluate(1, bids, exponents)
    monkeypatch.setattr(module, "ELEMENT_BUDGET", 1)
    chunked = engine._evaluate_distinct(1, bids, exponents)  # past the memo
    torch.testing.assert_close(whole.payments, chunked.payments)
    torch.testing.assert_close(whole.true_allocations, chunked.true_allocations)


@pytest.mark.parametrize("aggregation", ["linear", "log_linear"])
def test_platform_counterfactual_reproduces_the_round(random_lm, aggregation):
    rule = TokenAuctionRule(aggregation=aggregation, platform_weight=0.2, integration_nodes=32)
    platform = TokenAuctionPlatform(random_lm, rule, max_new_tokens=6)
    reports = [Report(1.0), Report(0.5, 2.0), Report(1.5, 0.5)]
    bidders = [Bidder(c, r) for c, r in zip(CONTEXTS, reports, strict=True)]
    outcomes = platform.run_auctions([QUERY, QUERY], [bidders, bidders], seed=9)
    for outcome in outcomes:
        for agent, report in enumerate(reports):
            values = outcome.counterfactual.evaluate(agent, [report, Report(0.0)])
            assert values.allocations[0] == pytest.approx(outcome.allocations[agent], abs=1e-6)
            assert values.payments[0] == pytest.approx(outcome.payments[agent], abs=1e-6)
            assert values.payments[1] == 0.0
        utilities = outcome.counterfactual.evaluate(0, reports[:1]).utilities(2.0)
        assert utilities.shape == (1,)
        np.testing.assert_allclose(
            utilities, 2.0 * outcome.allocations[0] - outcome.payments[0], atol=1e-6
        )
