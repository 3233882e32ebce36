"""Token auction (docs/design.md, section 3.1): closed forms, quadrature, stable sampling, DSIC."""

import math

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings

from market_sim.mechanisms.token_auction import (
    PROB_FLOOR,
    SERIES_RATIO_BELOW,
    SamplingSegments,
    TokenAuctionRule,
    aggregate,
    allocation_curve,
    allocations,
    ex_post_second_price_payments,
    linear_second_price_payments,
    myerson_ownership_payment,
    normalized_weights,
    numerical_second_price_payments,
    participant_weights,
    run_token_auction_step,
    scale_by_power_of_two,
    sharpen,
    stable_sampling_critical_bids,
    stable_sampling_owner,
    token_auction_step,
)


def random_logprobs(generator: torch.Generator, shape, sharpness: float = 2.0) -> torch.Tensor:
    logits = sharpness * torch.randn(*shape, generator=generator, dtype=torch.float64)
    return torch.log_softmax(logits, dim=-1)


def random_instance(seed: int, auctions=6, agents=3, vocab=17, platform_weight=0.0):
    generator = torch.Generator().manual_seed(seed)
    logprobs = random_logprobs(generator, (auctions, agents + 1, vocab))
    bids = torch.rand(auctions, agents, generator=generator, dtype=torch.float64) * 2
    return logprobs, participant_weights(bids, platform_weight)


def utility_at_bid(logprobs, raw_weights, agent, bid, valuation, aggregation, payment):
    """Utility v * x_i(b) - pay_i(b) of advertiser `agent` (0-based) bidding `bid`."""
    weights = raw_weights.clone()
    weights[:, agent + 1] = bid
    allocation = allocation_curve(logprobs, weights, weights[:, 1:, None], aggregation)[..., 0]
    if payment == "second_price":
        if aggregation == "linear":
            pay = linear_second_price_payments(logprobs.exp(), weights)
        else:
            pay = numerical_second_price_payments(logprobs, weights, aggregation, nodes=256)
    else:
        pay = weights[:, 1:] * allocation
    return valuation * allocation[:, agent] - pay[:, agent]


def test_hand_computed_two_point_example():
    # p1 = (1, 0), p2 = (0, 1), b1 = b2 = 1: q = (1/2, 1/2), x_1 = 1/2, T_1 = 1, B = 1,
    # pay_1 = 1 * (1/2 - 1 + ln 2) = ln 2 - 1/2.
    probs = torch.tensor([[[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    raw = participant_weights(torch.tensor([[1.0, 1.0]], dtype=torch.float64), 0.0)
    pay = linear_second_price_payments(probs, raw)
    assert pay[0, 0].item() == pytest.approx(math.log(2) - 0.5, abs=1e-12)
    assert pay[0, 1].item() == pytest.approx(math.log(2) - 0.5, abs=1e-12)
    q = aggregate(probs.log(), normalized_weights(raw), "linear")
    assert q[0].tolist() == pytest.approx([0.5, 0.5])


@pytest.mark.parametrize("platform_weight", [0.0, 0.7])
def test_closed_form_equals_numerical_integral_linear(platform_weight):
    logprobs, raw = random_instance(1, platform_weight=platform_weight)
    closed = linear_second_price_payments(logprobs.exp(), raw)
    numeric = numerical_second_price_payments(logprobs, raw, "linear", nodes=64)
    torch.testing.assert_close(numeric, closed, rtol=1e-7, atol=1e-10)


def test_ex_post_mean_matches_closed_form():
    logprobs, raw = random_instance(2, auctions=1, agents=3, platform_weight=0.3)
    count = 200_000
    probs = logprobs.exp().expand(count, -1, -1)
    weights = raw.expand(count, -1)
    generator = torch.Generator().manual_seed(0)
    uniforms = torch.rand(count, generator=generator, dtype=torch.float64)
    owners = stable_sampling_owner(weights, uniforms)
    ex_post = ex_post_second_price_payments(probs, weights, uniforms, owners)
    closed = linear_second_price_payments(logprobs.exp(), raw)[0]
    standard_error = ex_post.std(0) / math.sqrt(count)
    assert torch.all((ex_post.mean(0) - closed).abs() < 5 * standard_error + 1e-12)


def test_ex_post_mean_on_a_fine_grid_is_exact():
    logprobs, raw = random_instance(3, auctions=1, agents=2)
    count = 400_000
    uniforms = (torch.arange(count, dtype=torch.float64) + 0.5) / count
    weights = raw.expand(count, -1)
    owners = stable_sampling_owner(weights, uniforms)
    ex_post = ex_post_second_price_payments(
        logprobs.exp().expand(count, -1, -1), weights, uniforms, owners
    )
    closed = linear_second_price_payments(logprobs.exp(), raw)[0]
    torch.testing.assert_close(ex_post.mean(0), closed, rtol=1e-3, atol=1e-6)


def test_stable_sampling_owner_frequencies_match_weights():
    raw = torch.tensor([[0.5, 1.0, 2.0, 0.5]], dtype=torch.float64).expand(100_000, -1)
    uniforms = torch.rand(100_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    owners = stable_sampling_owner(raw, uniforms)
    frequencies = torch.bincount(owners, minlength=4).double() / 100_000
    torch.testing.assert_close(frequencies, raw[0] / raw[0].sum(), atol=0.01, rtol=0)


def test_critical_bid_is_the_ownership_threshold():
    generator = torch.Generator().manual_seed(4)
    for _ in range(200):
        raw = torch.rand(1, 4, generator=generator, dtype=torch.float64) + 0.05
        u = torch.rand(1, generator=generator, dtype=torch.float64).clamp(0.01, 0.99)
        owner = stable_sampling_owner(raw, u).item()
        if owner == 0:
            continue
        critical = stable_sampling_critical_bids(raw, u)[0, owner - 1].item()
        above, below = raw.clone(), raw.clone()
        above[0, owner] = critical * (1 + 1e-9) + 1e-12
        below[0, owner] = critical * (1 - 1e-6)
        assert stable_sampling_owner(above, u).item() == owner
        if critical > 1e-9:
            assert stable_sampling_owner(below, u).item() != owner


@pytest.mark.parametrize("platform_weight", [0.0, 0.5])
def test_linear_second_price_has_no_profitable_bid_deviation(platform_weight):
    grid = np.concatenate([np.linspace(0.0, 4.0, 81), [1e-3, 1e-2]])
    for seed in range(5):
        logprobs, raw = random_instance(
            10 + seed, auctions=4, agents=3, platform_weight=platform_weight
        )
        for agent in range(3):
            valuation = raw[:, agent + 1].clone()
            truthful = utility_at_bid(
                logprobs, raw, agent, valuation, valuation, "linear", "second_price"
            )
            assert torch.all(truthful >= -1e-12)
            for bid in grid:
                deviated = utility_at_bid(
                    logprobs,
                    raw,
                    agent,
                    torch.full_like(valuation, bid),
                    valuation,
                    "linear",
                    "second_price",
                )
                assert torch.all(deviated <= truthful + 1e-10), (seed, agent, bid)


def test_first_price_deviation_is_profitable():
    logprobs, raw = random_instance(20, auctions=1, agents=2)
    valuation = raw[:, 1].clone()
    truthful = utility_at_bid(logprobs, raw, 0, valuation, valuation, "linear", "first_price")
    shaded = utility_at_bid(logprobs, raw, 0, valuation * 0.5, valuation, "linear", "first_price")
    assert truthful.item() == pytest.approx(0.0, abs=1e-12)
    assert shaded.item() > 1e-3


@pytest.mark.parametrize("aggregation", ["linear", "log_linear"])
@pytest.mark.parametrize("platform_weight", [0.0, 0.4])
def test_payment_bounds_per_token(aggregation, platform_weight):
    logprobs, raw = random_instance(5, auctions=8, agents=4, platform_weight=platform_weight)
    allocation = allocation_curve(logprobs, raw, raw[:, 1:, None], aggregation)[..., 0]
    if aggregation == "linear":
        pay = linear_second_price_payments(logprobs.exp(), raw)
    else:
        pay = numerical_second_price_payments(logprobs, raw, aggregation)
    assert torch.all(pay >= 0)
    assert torch.all(pay <= raw[:, 1:] * allocation + 1e-12)


def test_log_linear_quadrature_converges():
    logprobs, raw = random_instance(6, auctions=4, agents=3, platform_weight=0.2)
    coarse = numerical_second_price_payments(logprobs, raw, "log_linear", nodes=64)
    fine = numerical_second_price_payments(logprobs, raw, "log_linear", nodes=2048)
    torch.testing.assert_close(coarse, fine, rtol=2e-3, atol=1e-5)


def test_allocation_curve_at_own_bid_equals_direct_allocation():
    logprobs, raw = random_instance(7, platform_weight=0.3)
    for aggregation in ("linear", "log_linear"):
        q = aggregate(logprobs, normalized_weights(raw), aggregation)
        direct = 1 - 0.5 * (q[:, None] - logprobs[:, 1:].exp()).abs().sum(-1)
        curve = allocation_curve(logprobs, raw, raw[:, 1:, None], aggregation)[..., 0]
        torch.testing.assert_close(curve, direct)


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    zero_share=st.floats(0.0, 0.95),
    agents=st.integers(1, 5),
    vocab=st.integers(2, 40),
    platform_weight=st.sampled_from([0.0, 0.5]),
    zero_bids=st.booleans(),
)
def test_log_linear_never_produces_nan_or_inf(
    seed, zero_share, agents, vocab, platform_weight, zero_bids
):
    generator = torch.Generator().manual_seed(seed)
    probs = torch.rand(2, agents + 1, vocab, generator=generator, dtype=torch.float64)
    probs = probs * (torch.rand(probs.shape, generator=generator, dtype=torch.float64) > zero_share)
    probs[..., 0] += (probs.sum(-1) == 0).double()  # keep every row a distribution
    logprobs = (probs / probs.sum(-1, keepdim=True)).log()  # contains -inf
    bids = torch.rand(2, agents, generator=generator, dtype=torch.float64) * (not zero_bids)
    raw = participant_weights(bids, platform_weight)
    q = aggregate(logprobs, normalized_weights(raw), "log_linear")
    assert torch.isfinite(q).all()
    torch.testing.assert_close(q.sum(-1), torch.ones(2, dtype=torch.float64))
    pay = numerical_second_price_payments(logprobs, raw, "log_linear", nodes=16)
    assert torch.isfinite(pay).all() and torch.all(pay >= 0)
    rule = TokenAuctionRule(
        aggregation="log_linear", platform_weight=platform_weight, integration_nodes=16
    )
    step = run_token_auction_step(logprobs, logprobs[:, 1:], bids, rule, generator)
    for tensor in (step.reported_allocations, step.true_allocations, step.payments):
        assert torch.isfinite(tensor).all()


def test_all_zero_bids_show_the_user_distribution_and_charge_nothing():
    logprobs, _ = random_instance(8, auctions=2, agents=2)
    bids = torch.zeros(2, 2, dtype=torch.float64)
    for aggregation in ("linear", "log_linear"):
        rule = TokenAuctionRule(aggregation=aggregation)
        step = run_token_auction_step(logprobs, logprobs[:, 1:], bids, rule)
        torch.testing.assert_close(step.user_allocations, torch.ones(2, dtype=torch.float64))
        assert torch.all(step.payments == 0)


@pytest.mark.parametrize("payment", ["first_price", "none"])
def test_first_price_and_no_payment_variants(payment):
    logprobs, raw = random_instance(9, auctions=3, agents=2)
    bids = raw[:, 1:]
    step = run_token_auction_step(
        logprobs, logprobs[:, 1:], bids, TokenAuctionRule(payment=payment)
    )
    expected = bids * step.reported_allocations if payment == "first_price" else 0 * bids
    torch.testing.assert_close(step.payments, expected)


def test_sampled_tokens_follow_the_aggregate():
    logprobs, raw = random_instance(11, auctions=1, agents=2, vocab=5)
    count = 40_000
    bids = raw[:, 1:].expand(count, -1)
    expanded = logprobs.expand(count, -1, -1)
    q = aggregate(logprobs, normalized_weights(raw), "linear")[0]
    for settlement in ("expected", "ex_post"):
        generator = torch.Generator().manual_seed(3)
        rule = TokenAuctionRule(settlement=settlement)
        step = run_token_auction_step(expanded, expanded[:, 1:], bids, rule, generator)
        frequencies = torch.bincount(step.tokens, minlength=5).double() / count
        torch.testing.assert_close(frequencies, q, atol=0.012, rtol=0)


def test_rule_validation_names_the_problem():
    with pytest.raises(ValueError, match="ex_post settlement needs linear"):
        TokenAuctionRule(aggregation="log_linear", settlement="ex_post")
    with pytest.raises(ValueError, match="aggregation must be"):
        TokenAuctionRule(aggregation="geometric")
    with pytest.raises(ValueError, match="platform_weight must be finite and >= 0"):
        TokenAuctionRule(platform_weight=-1.0)


# --- Numbers at the edges: the domain is finite non-negative bids at every float64 scale. ---


def test_power_of_two_scaling_is_exact_over_the_whole_exponent_range():
    values = torch.tensor([1.0, 0.7, 3.0e-300, 5.0e-324, 1.5e308], dtype=torch.float64)
    for exponent in (-1074, -1030, -600, -1, 0, 1, 600, 1023):
        scaled = scale_by_power_of_two(values, torch.tensor(exponent))
        expected = [
            math.ldexp(v, exponent) if math.frexp(v)[1] + exponent <= 1024 else math.inf
            for v in values.tolist()
        ]
        assert scaled.tolist() == expected, exponent


def test_ownership_payment_matches_high_precision_at_every_ratio():
    import mpmath

    mpmath.mp.dps = 50
    ratios = np.concatenate([np.logspace(-15, 3, 73), [SERIES_RATIO_BELOW * (1 - 1e-9)]])
    for competing in (1.0, 1e-300, 1e300):
        bids = torch.tensor(ratios * competing, dtype=torch.float64)
        computed = myerson_ownership_payment(bids, torch.tensor(competing, dtype=torch.float64))
        for ratio, value in zip(ratios, computed.tolist(), strict=True):
            r = mpmath.mpf(float(ratio))
            exact = competing * float(mpmath.log1p(r) - r / (1 + r))
            # Series branch: < 1e-15 relative; closed form just above the switch loses
            # about 2 eps / r = 4.4e-13 to cancellation, hence 1e-12.
            assert value == pytest.approx(exact, rel=1e-12, abs=0), (competing, ratio)


def test_weights_are_exact_at_every_scale():
    raw = torch.tensor(
        [[0.0, 1e-310], [0.0, 5e-324], [0.0, 1e308], [1e308, 1e308], [0.0, 0.0]],
        dtype=torch.float64,
    )
    weights = normalized_weights(raw)
    expected = [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
    assert weights.tolist() == expected


def test_lone_subnormal_bidder_gets_the_whole_allocation():
    logprobs, _ = random_instance(30, auctions=1, agents=1)
    for bid in (1e-300, 1e-310, 5e-324):
        step = run_token_auction_step(
            logprobs, None, torch.tensor([[bid]], dtype=torch.float64), TokenAuctionRule()
        )
        assert step.reported_allocations.item() == 1.0
        assert step.payments.item() == 0.0  # no competition: the critical bid is 0


@pytest.mark.parametrize("bid_scale", [1e150, 1.4e154, 1e200, 1e307, 8e307])
def test_second_price_payments_scale_with_the_bids_through_overflow(bid_scale):
    # Degree-one homogeneity on both sides of where bid * competing used to overflow (1.3e154).
    logprobs, raw = random_instance(31, auctions=3, agents=3, platform_weight=0.3)
    unit = linear_second_price_payments(logprobs.exp(), raw)
    large = linear_second_price_payments(logprobs.exp(), raw * bid_scale)
    assert torch.isfinite(large).all() and torch.all(large > 0)
    # Scaling by a non-power-of-two moves each input by half an ulp: 1e-12 relative is ample.
    torch.testing.assert_close(large / bid_scale, unit, rtol=1e-12, atol=0)


@pytest.mark.parametrize("bid_scale", [1e-150, 1e-300, 1e300, 3.9e307])
def test_log_linear_payments_scale_with_the_bids(bid_scale):
    logprobs, raw = random_instance(32, auctions=2, agents=2, platform_weight=0.2)
    unit = numerical_second_price_payments(logprobs, raw, "log_linear", nodes=16)
    scaled = numerical_second_price_payments(logprobs, raw * bid_scale, "log_linear", nodes=16)
    assert torch.isfinite(scaled).all() and torch.all(scaled > 0)
    # Same quadrature rule at every scale; the remaining difference is input rounding.
    torch.testing.assert_close(scaled / bid_scale, unit, rtol=1e-10, atol=0)


def test_allocations_are_clamped_to_the_unit_interval():
    # Disjoint distributions, one of which sums to 1 + 2^-51 (one rounding of a softmax): the
    # TV is 1 + 2^-52, so 1 - TV < 0 unclamped. Every partial sum (1.5, 1 + 2^-51, 2 + 2^-51)
    # is a float64, so this holds whatever order the CPU's kernel adds in (a random pair that
    # rounded up only with AVX-512's order gave exactly 0 with AVX2's).
    q = torch.tensor([0.5, 0.5 + 2.0**-51, 0.0], dtype=torch.float64)
    p = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    assert (1 - 0.5 * (q - p).abs().sum()).item() == -(2.0**-52)  # negative unclamped
    assert allocations(q[None], p[None, None]).item() == 0.0


@pytest.mark.parametrize("aggregation", ["linear", "log_linear"])
@pytest.mark.parametrize("bid", [1e300, 1e308])
def test_huge_equal_bids_split_the_auction(aggregation, bid):
    logprobs, _ = random_instance(33, auctions=2, agents=2, vocab=9)
    rule = TokenAuctionRule(aggregation=aggregation, integration_nodes=16)
    bids = torch.full((2, 2), bid, dtype=torch.float64)
    step = run_token_auction_step(logprobs, None, bids, rule, torch.Generator().manual_seed(0))
    reference = run_token_auction_step(logprobs, None, torch.ones(2, 2, dtype=torch.float64), rule)
    torch.testing.assert_close(step.reported_allocations, reference.reported_allocations)
    # Payments are homogeneous of degree one: bid x (payments at unit bids).
    torch.testing.assert_close(step.payments / bid, reference.payments, rtol=1e-12, atol=0)
    if aggregation == "linear":
        ex_post = TokenAuctionRule(settlement="ex_post")
        step = run_token_auction_step(logprobs, None, bids, ex_post, torch.Generator())
        assert torch.isfinite(step.payments).all() and torch.all(step.owners >= 1)


@pytest.mark.parametrize("exponent", [1e3, 1e100, 1e308])
def test_extreme_sharpening_tends_to_the_most_likely_token(exponent):
    logprobs = torch.log(torch.tensor([[0.05, 0.15, 0.5, 0.3], [0.1, 0.1, 0.1, 0.7]]))
    logprobs = logprobs.double()
    sharpened = sharpen(logprobs, torch.full((2,), exponent, dtype=torch.float64))
    assert not torch.isnan(sharpened).any()
    torch.testing.assert_close(sharpened.exp(), torch.eye(4, dtype=torch.float64)[[2, 3]])


def test_ordinary_sharpening_is_the_direct_formula_bit_for_bit():
    logprobs = random_logprobs(torch.Generator().manual_seed(34), (6, 11))
    exponents = torch.tensor([0.25, 0.5, 1.0, 2.0, 4.0, 1e-300], dtype=torch.float64)
    direct = torch.log_softmax(logprobs * exponents[:, None], dim=-1)
    direct[2] = logprobs[2]
    assert torch.equal(sharpen(logprobs, exponents), direct)


def test_inputs_outside_the_domain_are_refused_with_the_reason():
    logprobs, _ = random_instance(35, auctions=1, agents=2)
    for bad in (-1.0, math.nan, math.inf):
        bids = torch.tensor([[1.0, bad]], dtype=torch.float64)
        with pytest.raises(ValueError, match="bids must be finite and >= 0"):
            run_token_auction_step(logprobs, None, bids, TokenAuctionRule())
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="sharpening exponents must be finite and > 0"):
            sharpen(logprobs[0], torch.tensor([1.0, 1.0, bad], dtype=torch.float64))
    with pytest.raises(ValueError, match="platform_weight must be finite and >= 0"):
        TokenAuctionRule(platform_weight=math.inf)
    with pytest.raises(ValueError, match="integration_nodes must be >= 1"):
        TokenAuctionRule(integration_nodes=0)


RULE_KINDS = [
    ("linear", "second_price", "expected"),
    ("linear", "first_price", "expected"),
    ("linear", "second_price", "ex_post"),
    ("log_linear", "second_price", "expected"),
    ("log_linear", "first_price", "expected"),
]


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    agents=st.integers(1, 4),
    vocab=st.integers(2, 12),
    decades=st.lists(st.one_of(st.floats(-310, 308), st.just(-math.inf)), min_size=4, max_size=4),
    platform_decade=st.one_of(st.floats(-310, 308), st.just(-math.inf)),
    kind=st.sampled_from(RULE_KINDS),
    scale_decade=st.integers(-300, 300),
)
def test_payments_are_finite_bounded_and_homogeneous_at_every_scale(
    seed, agents, vocab, decades, platform_decade, kind, scale_decade
):
    aggregation, payment, settlement = kind
    bids = torch.tensor([[10.0**d for d in decades[:agents]]], dtype=torch.float64)  # -inf: 0
    platform_weight = 10.0**platform_decade
    logprobs = random_logprobs(torch.Generator().manual_seed(seed), (1, agents + 1, vocab))
    rule = TokenAuctionRule(aggregation, payment, settlement, platform_weight, 16)
    step = run_token_auction_step(logprobs, None, bids, rule, torch.Generator().manual_seed(0))
    weights = normalized_weights(participant_weights(bids, platform_weight))
    assert torch.isfinite(step.payments).all()
    assert torch.all((step.reported_allocations >= 0) & (step.reported_allocations <= 1))
    assert torch.all(step.payments >= 0)
    ceiling = bids if settlement == "ex_post" else bids * step.reported_allocations
    assert torch.all(step.payments <= ceiling)
    # m = agents + 1 terms, each rounded once: the sum is 1 within m ulps.
    assert abs(weights.sum().item() - 1.0) <= (agents + 1) * 2.3e-16
    if settlement == "ex_post":
        return
    # Homogeneity: scale every weight (the platform's too) by c; keep all of them in the
    # normal range, where scaling by a non-power-of-two costs half an ulp per input.
    every = torch.cat([bids.flatten(), bids.new_tensor([platform_weight])])
    positive = every[every > 0]
    if positive.numel() == 0:
        return
    low, high = math.log10(positive.min().item()), math.log10(positive.max().item())
    c = 10.0 ** min(max(scale_decade, -307 - low), 307 - high)
    if not (positive.min().item() >= 1e-300 and c * positive.min().item() >= 1e-300):
        return  # subnormal inputs lose digits when scaled: homogeneity is not testable there
    # The payments are computed in units of the largest weight (divided by a power of two near
    # it), where a weight under 2.2e-308 of it is subnormal: its quadrature nodes and weights
    # keep a few digits only (found: a bid 1e-314 of the largest paid 1.5e-33 at one scale and
    # 0 at another, 1.6e-9 of its b x). Not testable to 1e-9 there either.
    assume(positive.min().item() >= 1e-300 * positive.max().item())
    scaled_rule = TokenAuctionRule(aggregation, payment, settlement, platform_weight * c, 16)
    scaled = run_token_auction_step(logprobs, None, bids * c, scaled_rule)
    # Relative to each bidder's own charge ceiling b x: a payment tiny next to it (b << B)
    # carries the rounding of the competing weight's scaling.
    tolerance = 1e-9 * (bids * step.reported_allocations) + 1e-300
    assert torch.all((scaled.payments / c - step.payments).abs() <= tolerance)


@pytest.mark.parametrize("rest_weight", [1e-6, 1e-10, 1e-13, 1e-16, 1e-300])
def test_linear_payment_against_a_tiny_rest_keeps_its_relative_accuracy(rest_weight):
    """q_{-i} is built from the others' terms, not as the total minus i's term.

    Advertiser 1 (bid 1) faces only advertiser 2 (weight B; the user's weight is 0), so
    q_{-1} = p_2, T = TV(p_2, p_1) = 0.5 and pay = T (B ln(1 + 1/B) - B / (1 + B)). The old
    subtraction lost about eps / B of relative accuracy (2e-4 at B = 1e-13, and 0 instead of
    1.8e-15 at B = 1e-16). Tolerance 1e-12 relative: a few float64 roundings in the TV and in
    log1p, with no cancellation left.
    """
    probs = torch.tensor([[[0.5, 0.5], [0.7, 0.3], [0.2, 0.8]]], dtype=torch.float64)
    raw = torch.tensor([[0.0, 1.0, rest_weight]], dtype=torch.float64)
    paid = float(linear_second_price_payments(probs, raw)[0, 0])
    ownership = rest_weight * math.log1p(1 / rest_weight) - rest_weight / (1 + rest_weight)
    assert paid == pytest.approx(0.5 * ownership, rel=1e-12)


def test_linear_payment_rule_mixes_no_host_tensor_into_device_work():
    """On a GPU, an index tensor made on the host costs a blocking copy (a host synchronisation)
    per call: the rule runs once per decode step. Traced on the 'meta' device (shapes only),
    no operation may take a CPU tensor next to a device one (``leave_one_out`` used to index
    with host ``arange``s)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    from market_sim.mechanisms.token_auction import competing_aggregate_linear

    class HostTensorsNextToDevice(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.mixed: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            tensors = [t for t in tree_flatten((args, kwargs or {}))[0] if torch.is_tensor(t)]
            if {t.device.type for t in tensors} >= {"cpu", "meta"}:
                self.mixed.append(str(func))
            return func(*args, **(kwargs or {}))

    probs = torch.empty(3, 4, 7, dtype=torch.float64, device="meta")
    weights = torch.empty(3, 4, dtype=torch.float64, device="meta")
    with HostTensorsNextToDevice() as trace:
        competing_aggregate_linear(probs, weights)
        linear_second_price_payments(probs, weights)
    assert trace.mixed == []


# ------------------------------------------------------------ log-linear: what its payments rest on


def random_logprobs_with_zeros(seed: int, auctions: int, agents: int, vocab: int) -> torch.Tensor:
    """Random distributions in which about a third of the entries are exactly zero (-inf)."""
    generator = torch.Generator().manual_seed(seed)
    logprobs = random_logprobs(generator, (auctions, agents + 1, vocab), sharpness=3.0)
    zeros = torch.rand(logprobs.shape, generator=generator, dtype=torch.float64) < 1 / 3
    zeros[..., 0] = False  # at least one possible token per row
    return torch.log_softmax(logprobs.masked_fill(zeros, -math.inf), dim=-1)


@pytest.mark.parametrize("platform_weight", [0.0, 0.4])
def test_log_linear_allocation_rises_with_the_bid(platform_weight):
    """Myerson's payment is truthful only for a monotone allocation: x_i(z) must not fall as z
    rises, under the floored log-linear rule too, zero probabilities included."""
    bids = torch.cat([torch.zeros(1), torch.logspace(-6, 4, 400)]).double()
    for seed in range(6):
        logprobs = random_logprobs_with_zeros(seed, auctions=5, agents=3, vocab=40)
        generator = torch.Generator().manual_seed(100 + seed)
        raw = participant_weights(
            torch.rand(5, 3, generator=generator, dtype=torch.float64) * 2, platform_weight
        )
        grid = bids.expand(5, 3, -1)
        curve = allocation_curve(logprobs, raw, grid, "log_linear")  # [A, n, bids]
        steps = curve.diff(dim=-1)
        # an allocation is a 1 - TV of float64 sums over 40 tokens: rounding moves it by ~1e-15
        assert steps.min().item() >= -1e-13, (seed, steps.min().item())
        assert (curve[..., -1] - curve[..., 0]).min().item() >= 0


def independent_second_price_payments(
    logprobs, raw, points: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """``[n]`` payments b x(b) - integral_0^b x(z) dz of auction 0, and ``[n]`` b x(b).

    Gauss-Legendre in u = ln(1 + z / B_i), independent of the ladder: dz = B_i e^u du,
    ``points`` nodes on [0, ln(1 + b_i / B_i)], every advertiser in one allocation pass. At
    1,000 points it agrees with 4,000 to 1e-7 of b x on these instances (at most 9.5e-8).
    """
    bids = raw[0, 1:].numpy()
    competing = raw[0].sum().item() - bids  # [n]
    nodes, weights = np.polynomial.legendre.leggauss(points)
    top = np.log1p(bids / competing)  # [n]
    u = (nodes[None, :] + 1) * top[:, None] / 2  # [n, points]
    grid = torch.from_numpy(competing[:, None] * np.expm1(u))[None]  # [1, n, points]
    x = allocation_curve(logprobs, raw, grid, "log_linear")[0].numpy()
    jacobian = top[:, None] / 2 * competing[:, None] * np.exp(u)
    integral = (weights[None, :] * jacobian * x).sum(-1)
    at_bid = allocation_curve(logprobs, raw, raw[:, 1:, None], "log_linear")[0, :, 0].numpy()
    return bids * at_bid - integral, bids * at_bid


@pytest.mark.parametrize("seed", range(8))
def test_log_linear_payment_matches_an_independent_integral(seed):
    """The ladder quadrature against a plain one, before any clamping: the clamp to [0, b x]
    in the payment functions could otherwise hide a wrong integral."""
    logprobs = random_logprobs_with_zeros(seed, auctions=1, agents=3, vocab=30)
    generator = torch.Generator().manual_seed(200 + seed)
    raw = participant_weights(torch.rand(1, 3, generator=generator, dtype=torch.float64) * 2, 0.3)
    payments = numerical_second_price_payments(logprobs, raw, "log_linear")[0].numpy()  # 64 nodes
    reference, full_charge = independent_second_price_payments(logprobs, raw)
    # the true payment lies strictly inside [0, b x] for these bids: a clamp did not set it
    assert np.all((reference > 0) & (reference < full_charge))
    # documented accuracy of the 64-node ladder: about 1e-4 of b x (README); 2e-4 margin
    assert np.all(np.abs(payments - reference) <= 2e-4 * full_charge)


def log_linear_utility(logprobs, raw_weights, agent, bid, valuation) -> torch.Tensor:
    """``[A]`` utility v x_i(b) - pay_i(b), log-linear second price at the platform's 64 nodes."""
    weights = raw_weights.clone()
    weights[:, agent + 1] = bid
    allocation = allocation_curve(logprobs, weights, weights[:, 1:, None], "log_linear")
    pay = numerical_second_price_payments(logprobs, weights, "log_linear")
    return valuation * allocation[:, agent, 0] - pay[:, agent]


@pytest.mark.parametrize("platform_weight", [0.0, 0.5])
def test_log_linear_second_price_has_no_profitable_bid_deviation(platform_weight):
    """Truthful bidding is a best response per token up to the quadrature's error: with the
    platform's default 64 nodes the largest gain found is below 1e-6 of the valuation, where a
    wrong payment rule gains percents (first price: test_first_price_deviation_is_profitable)."""
    grid = np.concatenate([np.linspace(0.0, 4.0, 81), [1e-3, 1e-2]])
    for seed in range(4):
        logprobs, raw = random_instance(
            30 + seed, auctions=4, agents=3, platform_weight=platform_weight
        )
        for agent in range(3):
            valuation = raw[:, agent + 1].clone()
            truthful = log_linear_utility(logprobs, raw, agent, valuation, valuation)
            for bid in grid:
                deviated = torch.full_like(valuation, bid)
                gain = log_linear_utility(logprobs, raw, agent, deviated, valuation) - truthful
                assert torch.all(gain <= 1e-6 * valuation), (seed, agent, bid, gain.max().item())


# ------------------------------------------- the claims are per token: one bid for a whole reply


def test_truthful_bidding_is_per_token_not_for_the_whole_reply():
    """One bid covers every token of a reply, and the sampled token decides the next step's
    distributions. The counterfactual (and so regret and learners' feedback) holds the realized
    prefix fixed, so it measures the per-token game, in which truthful bidding is optimal; over
    a two-token reply a higher bid can pay, by steering the reply to a prefix after which the
    advertiser's allocation is cheap. Linear aggregation, second price, b0 = 1, value v = 1:

    step 1: the user wants token B, the advertiser token A (disjoint distributions);
    after A: user and advertiser agree (allocation 1, payment 0, whatever the bid);
    after B: they disagree again as in step 1.
    """
    rule = TokenAuctionRule(aggregation="linear", platform_weight=1.0)
    conflict = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]], dtype=torch.float64).log()
    agreement = torch.tensor([[[0.5, 0.5], [0.5, 0.5]]], dtype=torch.float64).log()
    value = 1.0

    def step(logprobs: torch.Tensor, bid: float) -> tuple[float, torch.Tensor]:
        bids = torch.tensor([[bid]], dtype=torch.float64)
        outcome = run_token_auction_step(logprobs, None, bids, rule)
        weights = normalized_weights(participant_weights(bids, rule.platform_weight))
        next_token = aggregate(logprobs, weights, "linear")[0]  # q over {A, B}
        utility = value * outcome.reported_allocations[0, 0] - outcome.payments[0, 0]
        return utility.item(), next_token

    def reply_utility(bid: float) -> float:
        first, q = step(conflict, bid)
        after_a, _ = step(agreement, bid)
        after_b, _ = step(conflict, bid)
        return first + q[0].item() * after_a + q[1].item() * after_b

    bids = np.linspace(0.25, 3.0, 56)  # step 0.05: holds 1.0 and 1.5
    per_token = [step(conflict, bid)[0] for bid in bids]
    # the per-token game: truthful (bid = value) is the best bid, to rounding
    assert max(per_token) <= step(conflict, value)[0] + 1e-12
    # the whole reply: bidding 1.5 beats truthful by about 0.037 (0.9972 against 0.9603)
    truthful, higher = reply_utility(value), reply_utility(1.5)
    assert higher - truthful > 0.03, (truthful, higher)


@pytest.mark.parametrize("advertiser_weight", [0.01, 0.5, 0.99])
def test_log_linear_probability_floor_is_a_penalty_not_a_veto(advertiser_weight):
    """A token the advertiser gives probability 0 keeps the factor PROB_FLOOR^lambda against
    one it gives probability 1: q(B) / q(A) = (0.5 / 0.5)^(1 - lambda) PROB_FLOOR^lambda."""
    logprobs = torch.tensor([[[0.5, 0.5], [1.0, 0.0]]], dtype=torch.float64).log()  # user, ad
    weights = torch.tensor([[1 - advertiser_weight, advertiser_weight]], dtype=torch.float64)
    q = aggregate(logprobs, weights, "log_linear")[0]
    expected = PROB_FLOOR**advertiser_weight  # 0.759 at lambda = 0.01, 1.3e-12 at 0.99
    # both sides are a few float64 operations from exact: 1e-12 relative covers their rounding
    assert math.isclose((q[1] / q[0]).item(), expected, rel_tol=1e-12)


@pytest.mark.parametrize(
    ("aggregation", "settlement"),
    [("linear", "expected"), ("linear", "ex_post"), ("log_linear", "expected")],
)
def test_a_step_over_blocks_equals_a_step_per_block(aggregation, settlement):
    """Replicates priced in one call: each block's tokens, allocations and payments are what a
    step over its rows alone gives with its generator, bit for bit."""
    generator = torch.Generator().manual_seed(7)
    logprobs = torch.log_softmax(torch.randn(7, 3, 40, generator=generator), -1)
    bids = torch.rand(7, 2, generator=generator, dtype=torch.float64) * 2
    rule = TokenAuctionRule(aggregation=aggregation, platform_weight=0.4, settlement=settlement)
    counts, seeds = (3, 4), (11, 12)
    together = token_auction_step(
        logprobs,
        None,
        bids,
        rule,
        SamplingSegments(counts, [torch.Generator().manual_seed(s) for s in seeds]),
    )
    start = 0
    for count, seed in zip(counts, seeds, strict=True):
        rows = slice(start, start + count)
        alone = run_token_auction_step(
            logprobs[rows], None, bids[rows], rule, torch.Generator().manual_seed(seed)
        )
        assert torch.equal(together.tokens[rows], alone.tokens)
        assert torch.equal(together.owners[rows], alone.owners)
        assert torch.equal(together.payments[rows], alone.payments)
        assert torch.equal(together.true_allocations[rows], alone.true_allocations)
        assert torch.equal(together.reported_allocations[rows], alone.reported_allocations)
        assert torch.equal(together.user_allocations[rows], alone.user_allocations)
        start += count


def test_a_truthful_block_priced_beside_a_sharpened_one_is_unchanged():
    """The platform sharpens every row once any block's reports are sharpened: rows with
    exponent 1 must come out as a truthful block's step alone (true_logprobs None), bit for
    bit, and the sharpened block as its own step."""
    generator = torch.Generator().manual_seed(3)
    logprobs = torch.log_softmax(torch.randn(5, 3, 60, generator=generator), -1).float()
    bids = torch.rand(5, 2, generator=generator, dtype=torch.float64) + 0.2
    exponents = torch.tensor([[1.0, 1.0]] * 2 + [[2.0, 1.0]] * 3)
    rule = TokenAuctionRule(aggregation="linear", platform_weight=0.3)
    true_logprobs = logprobs[:, 1:]
    reported = torch.cat([logprobs[:, :1], sharpen(true_logprobs, exponents)], dim=1)
    together = token_auction_step(
        reported,
        true_logprobs,
        bids,
        rule,
        SamplingSegments((2, 3), [torch.Generator().manual_seed(s) for s in (1, 2)]),
    )
    truthful = run_token_auction_step(
        logprobs[:2], None, bids[:2], rule, torch.Generator().manual_seed(1)
    )
    sharpened = run_token_auction_step(
        reported[2:], true_logprobs[2:], bids[2:], rule, torch.Generator().manual_seed(2)
    )
    for name in ("tokens", "payments", "reported_allocations", "true_allocations"):
        assert torch.equal(getattr(together, name)[:2], getattr(truthful, name)), name
        assert torch.equal(getattr(together, name)[2:], getattr(sharpened, name)), name
    # the sharpened block's values use the true distributions, not the reports
    assert not torch.equal(together.true_allocations[2:], together.reported_allocations[2:])


def test_sampling_blocks_must_cover_the_step():
    logprobs = torch.log_softmax(torch.randn(3, 2, 5), -1)
    bids = torch.ones(3, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="cover 2 rows of a step of 3"):
        token_auction_step(logprobs, None, bids, TokenAuctionRule(), SamplingSegments((2,), [None]))
    with pytest.raises(ValueError, match="2 counts"):
        SamplingSegments((1, 2), [None])
