"""Second-price quadrature on the competing weight's ladder: the rule, its accuracy, its sharing.

The log-linear second-price payment :math:`b x(b) - \\int_0^b x(z) dz` used to be integrated by
64 Gauss-Legendre nodes on panels graded toward 0 and scaled to each bid (re-implemented here as
:func:`previous_graded_rule_payments`). It is now integrated on a ladder of panels at fixed
multiples of the competing weight B, which every bid against the same B shares. These tests pin
the new rule against the previous one and against a high-precision reference, and check that the
counterfactual's shared, remembered ladder gives exactly the numbers of a fresh evaluation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from market_sim.mechanisms.ladder_quadrature import (
    GAUSS_NODES,
    GAUSS_NODES_PER_PANEL,
    GAUSS_WEIGHTS,
    LADDER_TOP,
    ladder_edges,
    ladder_panel_rule,
    ladder_panels_per_unit,
    ladder_remainder_rule,
    partial_panel_weights,
)
from market_sim.mechanisms.token_auction import (
    TokenAuctionRule,
    allocation_curve,
    numerical_second_price_payments,
    participant_weights,
)
from market_sim.mechanisms.token_auction_counterfactual import TokenAuctionCounterfactual


def previous_graded_rule_payments(
    logprobs: torch.Tensor, raw_weights: torch.Tensor, nodes: int
) -> torch.Tensor:
    """The rule before the ladder: nodes b * u_k on panels with edges (k / P)^2 of [0, 1]."""
    panels = max(1, -(-nodes // GAUSS_NODES_PER_PANEL))
    base_nodes, base_weights = np.polynomial.legendre.leggauss(GAUSS_NODES_PER_PANEL)
    edges = (np.arange(panels + 1) / panels) ** 2
    unit_nodes = (edges[:-1, None] + np.diff(edges)[:, None] * (base_nodes + 1) / 2).ravel()
    unit_weights = (np.diff(edges)[:, None] * base_weights / 2).ravel()
    bids = raw_weights[:, 1:]
    integral = torch.zeros_like(bids)
    for start in range(0, len(unit_nodes), 512):
        chunk = slice(start, start + 512)
        grid = bids.unsqueeze(-1) * bids.new_tensor(unit_nodes[chunk])
        curve = allocation_curve(logprobs, raw_weights, grid, "log_linear")
        integral = integral + (curve * bids.new_tensor(unit_weights[chunk])).sum(-1)
    at_bid = allocation_curve(logprobs, raw_weights, bids.unsqueeze(-1), "log_linear")[..., 0]
    full_charge = bids * at_bid
    return (full_charge - bids * integral).clamp_min(0).minimum(full_charge)


def peaked_instance(seed: int, auctions: int, vocab: int = 300) -> torch.Tensor:
    """``[A, 3, V]`` log-probabilities as peaked as a small LM's (logits of scale 3)."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(auctions, 3, vocab, generator=generator, dtype=torch.float64) * 3
    return torch.log_softmax(logits, -1)


BID_RATIOS = [0.005, 0.05, 0.13, 0.3, 0.77, 1.0, 2.2, 6.0, 40.0, 300.0]
"""b / B for agent 1 against B = 1: in the ladder's first panel (a Gauss panel of its own), in
its halved panels and above them (the remainder interpolated on the bid's panel), beyond its top
(the graded tail)."""


@pytest.fixture(scope="module")
def three_rules():
    """Agent 1 (of 2) at each ratio, ``[A, R]`` each: new rule, previous rule, references at
    2048 nodes of each rule, and the charge ceiling b x(b)."""
    logprobs = peaked_instance(11, auctions=4)
    rows = []
    for ratio in BID_RATIOS:
        bids = torch.tensor([[ratio, 0.7]] * 4, dtype=torch.float64)
        raw = participant_weights(bids, 0.3)  # B = 0.3 + 0.7 = 1 for agent 1
        at_bid = allocation_curve(logprobs, raw, raw[:, 1:, None], "log_linear")[:, 0, 0]
        rows.append(
            (
                numerical_second_price_payments(logprobs, raw, "log_linear", nodes=64)[:, 0],
                previous_graded_rule_payments(logprobs, raw, nodes=64)[:, 0],
                # 1024 nodes per pass: a reference of 8k-16k nodes in 16-node passes is slow.
                numerical_second_price_payments(
                    logprobs, raw, "log_linear", nodes=2048, node_chunk=1024
                )[:, 0],
                previous_graded_rule_payments(logprobs, raw, nodes=2048)[:, 0],
                ratio * at_bid,
            )
        )
    return [torch.stack(column, dim=1) for column in zip(*rows, strict=True)]


def test_the_two_high_precision_references_agree(three_rules):
    _, _, ladder_fine, graded_fine, _ = three_rules
    # Two different rules at 2048 nodes converge to the same integral, like h^2 at the kinks of
    # the TV (|q_v - p_v| changes slope where q_v crosses p_v). Measured: 2.5e-6 of the payment
    # at b = 0.005 B, where the payment (of order b^2) is smallest; 5e-6 bounds that.
    torch.testing.assert_close(ladder_fine, graded_fine, rtol=5e-6, atol=0)


def test_ladder_payments_match_the_reference_as_closely_as_the_previous_rule(three_rules):
    ladder, graded, reference, _, ceiling = three_rules
    # Errors relative to the charge ceiling b x(b), the scale on which a regret search compares
    # utilities. Measured on this instance, worst over the ratios: 6.4e-5 for the ladder (b =
    # 0.77 B; 4.8e-5 at b = B when each remainder had a Gauss panel of its own), 2.9e-5 for the
    # previous rule (b = B); both lose it to the kinks of the TV. 1e-4 bounds both; a wrong
    # panel or weight moves payments by percents.
    assert float(((ladder - reference) / ceiling).abs().max()) <= 1e-4
    assert float(((graded - reference) / ceiling).abs().max()) <= 1e-4
    # The two 64-node rules then lie within 2e-4 of b x(b) of each other; relative to the
    # payment itself they differ by up to 7.4e-4 (measured, at b = 300 B, where the previous
    # rule, scaled to the bid, is the less accurate one).


@pytest.mark.parametrize(
    ("seed", "logit_scale", "vocab"), [(21, 1.0, 300), (22, 6.0, 1000), (23, 3.0, 1562)]
)
def test_ladder_accuracy_on_flatter_and_more_peaked_instances(seed, logit_scale, vocab):
    """The 64-node ladder against its 2048-node reference, 14 ratios, other distributions."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 3, vocab, generator=generator, dtype=torch.float64) * logit_scale
    logprobs = torch.log_softmax(logits, -1)
    ratios = [0.011, 0.05, 0.13, 0.3, 0.51, 0.77, 1.0, 1.4, 2.2, 3.3, 6.0, 12.0, 25.0, 50.0]
    bids = torch.tensor([[ratio, 0.7] for ratio in ratios], dtype=torch.float64)  # B = 1
    raw = participant_weights(bids, 0.3)
    logprobs = logprobs[torch.arange(len(ratios)) % 4]  # [14, 3, V]
    ceiling = bids[:, 0] * allocation_curve(logprobs, raw, raw[:, 1:, None], "log_linear")[:, 0, 0]
    payments = numerical_second_price_payments(logprobs, raw, "log_linear", nodes=64)[:, 0]
    reference = numerical_second_price_payments(
        logprobs, raw, "log_linear", nodes=2048, node_chunk=1024
    )[:, 0]
    # Measured, worst over the ratios, relative to b x(b): 5.9e-7 (logit scale 1), 2.5e-4
    # (scale 6, at b = 0.3 B: a whole panel's error at the TV's kinks, the same when each
    # remainder had a Gauss panel of its own), 9.1e-6 (scale 3, V = 1,562). 5e-4 bounds them.
    assert float(((payments - reference) / ceiling).abs().max()) <= 5e-4


@pytest.mark.parametrize("ratio", [0.0, 1e-9, 0.05, 0.3, 1.0, 53.0, 60.0, 1e6, 1e300])
def test_ladder_and_remainder_weights_integrate_constants_exactly(ratio):
    competing = torch.tensor([1.0, 2.0**-40, 3.5], dtype=torch.float64)
    bids = competing * ratio
    per_unit = 8
    remainder = ladder_remainder_rule(bids, competing, per_unit)
    whole, nodes, weights = remainder.whole, remainder.nodes, remainder.weights
    _, ladder_weights = ladder_panel_rule(per_unit, remainder.ladder_panels())
    node_weights = remainder.node_weights(torch.from_numpy(ladder_weights), competing)
    total = node_weights.sum((-1, -2)) + weights.sum(-1)
    # sum of weights = b: the rule integrates x = 1 exactly, up to the rounding of ~70 terms.
    torch.testing.assert_close(total, bids, rtol=1e-13, atol=0)
    assert torch.all((nodes >= 0) & (nodes <= bids.unsqueeze(-1) * (1 + 1e-15)))
    edges = ladder_edges(per_unit)
    assert edges[-1] == pytest.approx(math.expm1(LADDER_TOP))
    # Whole panels lie below b: their top edge B u_J is at most b.
    assert torch.all(competing * torch.as_tensor(edges)[whole] <= bids * (1 + 1e-15))


@pytest.mark.parametrize("upper", [-1.0, -0.93, -0.2, 0.0, 0.41, 0.999, 1.0])
def test_partial_panel_weights_integrate_polynomials_of_degree_below_g_exactly(upper):
    """W_k(X) integrate the interpolant at the Gauss nodes: exact up to degree G - 1."""
    position = torch.tensor(upper, dtype=torch.float64)
    weights = partial_panel_weights(position)  # [G]
    nodes = torch.from_numpy(GAUSS_NODES)
    for degree in range(GAUSS_NODES_PER_PANEL):
        exact = (upper ** (degree + 1) - (-1.0) ** (degree + 1)) / (degree + 1)
        # Sums of 8 terms of size <= 1 with Legendre recurrences of 9 steps: rounding of a few
        # 1e-16; 1e-14 absolute leaves margin (a wrong coefficient is off by 1e-2 or more).
        assert float((weights * nodes**degree).sum()) == pytest.approx(exact, abs=1e-14)
    if upper == 1.0:  # the whole panel: the Gauss weights themselves
        torch.testing.assert_close(weights, torch.from_numpy(GAUSS_WEIGHTS), rtol=0, atol=1e-15)
    if upper == -1.0:
        assert torch.all(weights.abs() <= 1e-16)
    # Degree G is not integrated exactly in general (the rule is interpolatory, not Gauss):
    # the test above is not vacuous for lack of a polynomial it could miss. (At X = 0 it is, by
    # symmetry: each half of the panel carries half of the whole Gauss rule's zero error.)
    if upper not in (-1.0, 0.0, 1.0):
        exact = (upper ** (GAUSS_NODES_PER_PANEL + 1) + 1.0) / (GAUSS_NODES_PER_PANEL + 1)
        value = float((weights * nodes**GAUSS_NODES_PER_PANEL).sum())
        assert abs(value - exact) > 1e-6


def test_bids_inside_the_ladder_read_ladder_nodes_only():
    """Only bids in the first panel or above the top get nodes of their own; b = 0 gets none."""
    per_unit = 8
    edges = ladder_edges(per_unit)
    competing = torch.ones(4, dtype=torch.float64)
    inside = torch.tensor([edges[1] * 1.5, 0.3, 1.0, 50.0], dtype=torch.float64)
    remainder = ladder_remainder_rule(inside, competing, per_unit)
    assert remainder.nodes.shape == (4, 0)
    assert torch.all((remainder.panel_weights != 0).any(-1))
    # Panel J is read: one panel more than the whole panels below the largest bid.
    assert remainder.ladder_panels() == int(remainder.whole.max()) + 1
    mixed = torch.tensor([0.0, edges[1] / 2, 0.3, 80.0], dtype=torch.float64)
    remainder = ladder_remainder_rule(mixed, competing, per_unit)
    own = (remainder.weights != 0).any(-1)
    assert own.tolist() == [False, True, False, True]  # b = 0 and b inside the ladder: none
    reads_panel = (remainder.panel_weights != 0).any(-1)
    assert reads_panel.tolist() == [False, False, True, False]


def test_counterfactual_prices_a_bid_inside_the_ladder_by_one_allocation(monkeypatch):
    """Once an exponent's ladder is kept, K more bids below its top cost K allocations a step."""
    import market_sim.mechanisms.token_auction_counterfactual as counterfactual_module

    step_logprobs = peaked_instance(15, auctions=2, vocab=90).float()
    rule = TokenAuctionRule("log_linear", platform_weight=0.3)
    engine = TokenAuctionCounterfactual(
        step_logprobs, torch.tensor([0.9, 0.7]), torch.ones(2), rule
    )
    evaluated: list[int] = []
    kernel = counterfactual_module.log_linear_share_allocations

    def counting_kernel(rest, report, shares, *args):
        evaluated.append(shares.shape[1])
        return kernel(rest, report, shares, *args)

    monkeypatch.setattr(counterfactual_module, "log_linear_share_allocations", counting_kernel)
    engine.evaluate(0, torch.tensor([2.0], dtype=torch.float64), torch.ones(1))
    first = evaluated.pop()
    bids = torch.tensor([0.1, 0.5, 1.3, 1.9], dtype=torch.float64)  # B = 1: below 2.0's panel
    later = engine.evaluate(0, bids, torch.ones(4))
    assert evaluated == [4]  # the four bids' own x(b), nothing else
    assert first > 8 * 10  # the ladder up to 2 B: panels of 8 nodes each
    fresh = TokenAuctionCounterfactual(step_logprobs, torch.tensor([0.9, 0.7]), torch.ones(2), rule)
    torch.testing.assert_close(
        later.payments, fresh.evaluate(0, bids, torch.ones(4)).payments, rtol=1e-13, atol=0
    )


@pytest.mark.parametrize(
    "ratio",
    [
        float(ladder_edges(8)[1]),  # the first panel's top: a bid's own panel, then interpolated
        float(ladder_edges(8)[3]),  # between halved panels
        float(np.expm1(5 / 8)),
        float(np.expm1(2.0)),
        math.expm1(4.0),  # the ladder's top: interpolated, then the graded tail
    ],
)
@pytest.mark.parametrize("competing", [1.0, 3.7e-5])
def test_payment_is_continuous_across_a_ladder_edge(ratio, competing):
    """Crossing an edge swaps one remainder rule for the next panel's, continuously."""
    logprobs = peaked_instance(12, auctions=2)
    payments = []
    for factor in (1 - 1e-9, 1 + 1e-9):
        bids = torch.tensor([[ratio * competing * factor, competing]] * 2, dtype=torch.float64)
        raw = participant_weights(bids, 0.0)  # B = competing for agent 1
        payment = numerical_second_price_payments(logprobs, raw, "log_linear")[:, 0]
        payments.append(payment / competing)  # degree one in the weights
    # dpay/db = b x'(b) is of order 1, so a 2e-9 relative step moves the payment by ~1e-8
    # (a jump of the rule would show the quadrature error, ~1e-6 of the payment).
    torch.testing.assert_close(payments[0], payments[1], rtol=5e-8, atol=0)


def test_a_subnormal_competing_weight_places_the_bid_in_its_panel():
    """b / B was computed against B clamped to the smallest normal float: with B = 1e-310 the
    bid landed in a panel far below its own, and an interpolated remainder stops at that
    panel's top, so the weights summed to 0.3% of b."""
    competing = torch.tensor([1e-310, 1.0], dtype=torch.float64)
    bids = 3.0 * competing
    remainder = ladder_remainder_rule(bids, competing, 8)
    assert remainder.whole[0] == remainder.whole[1]
    _, ladder_weights = ladder_panel_rule(8, remainder.ladder_panels())
    total = remainder.node_weights(torch.from_numpy(ladder_weights), competing).sum((-1, -2))
    # sum of weights = b (constants integrate exactly); subnormals carry fewer digits: 1e-9.
    torch.testing.assert_close(total, bids, rtol=1e-9, atol=0)
    rule = TokenAuctionRule("log_linear", platform_weight=1e-310)
    step_logprobs = peaked_instance(16, auctions=1, vocab=60).float()
    engine = TokenAuctionCounterfactual(
        step_logprobs, torch.tensor([0.0, 0.0]), torch.ones(2), rule
    )
    candidates = torch.tensor([3e-310, 5e-309], dtype=torch.float64)
    counterfactual = engine.evaluate(0, candidates, torch.ones(2)).payments
    raw = participant_weights(torch.stack([candidates, torch.zeros(2)], 1), 1e-310)
    realized = torch.stack(
        [
            numerical_second_price_payments(
                step_logprobs[0:1].double(), raw[k : k + 1], "log_linear"
            )[0, 0]
            for k in range(2)
        ]
    )
    # The realized rule rescales the weights by a power of two first, the counterfactual does
    # not: subnormal arithmetic keeps about 6 of 16 digits at 1e-310.
    torch.testing.assert_close(counterfactual, realized, rtol=1e-6, atol=0)


def test_counterfactual_matches_the_auction_rule_at_every_ratio():
    """The counterfactual's shared ladder against the realized payment of the same bid."""
    logprobs = peaked_instance(13, auctions=1, vocab=120)[0]
    step_logprobs = torch.stack([logprobs, logprobs.roll(7, -1)]).float()
    rule = TokenAuctionRule("log_linear", platform_weight=0.3)
    own_bids = torch.tensor([0.9, 0.7], dtype=torch.float64)
    engine = TokenAuctionCounterfactual(step_logprobs, own_bids, torch.ones(2), rule)
    candidates = torch.tensor(BID_RATIOS, dtype=torch.float64)
    result = engine.evaluate(0, candidates, torch.ones(len(candidates)))
    for k, bid in enumerate(BID_RATIOS):
        raw = participant_weights(torch.tensor([[bid, 0.7]] * 2, dtype=torch.float64), 0.3)
        expected = numerical_second_price_payments(step_logprobs.double(), raw, "log_linear")
        # Same rule and nodes; the logits r + t (f - r) and (B r + z f) / (B + z), and the
        # order of the sums (panel by panel here, node by node there), round differently.
        assert float(result.payments[k]) == pytest.approx(float(expected[:, 0].sum()), rel=1e-12)


def test_kept_ladder_gives_the_numbers_of_a_fresh_evaluation():
    """A ladder extended call by call equals one evaluated at once, bit for bit."""
    step_logprobs = peaked_instance(14, auctions=3, vocab=80).float()
    rule = TokenAuctionRule("log_linear", platform_weight=0.2, integration_nodes=32)

    def fresh_engine() -> TokenAuctionCounterfactual:
        return TokenAuctionCounterfactual(
            step_logprobs, torch.tensor([0.8, 1.1]), torch.ones(2), rule
        )

    bids = [0.2, 3.0, 1.0, 80.0, 0.5]
    exponents = [2.0, 2.0, 2.0, 2.0, 0.5]
    engine = fresh_engine()
    one_by_one = [
        engine.evaluate(
            1, torch.tensor([bid], dtype=torch.float64), torch.tensor([exponent])
        ).payments.item()
        for bid, exponent in zip(bids, exponents, strict=True)
    ]
    at_once = (
        fresh_engine()
        ._evaluate_distinct(1, torch.tensor(bids, dtype=torch.float64), torch.tensor(exponents))
        .payments.tolist()
    )
    assert one_by_one == at_once
    assert all(payment > 0 for payment in at_once)


def ladder_payments_by_allocation_curve(
    logprobs: torch.Tensor, raw_weights: torch.Tensor, nodes: int, node_chunk: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ladder rule's payments with every x(z) from :func:`allocation_curve` (a softmax of
    the mixed logits (sum_j w_j f_j + z f_i) / (B + z)), ``node_chunk`` nodes per call (how
    the payments were computed before the share kernel), and the charge ceilings b x(b); both
    ``[A, n]``."""
    bids = raw_weights[:, 1:]
    competing = raw_weights.sum(-1, keepdim=True) - bids
    per_unit = ladder_panels_per_unit(nodes)
    remainder = ladder_remainder_rule(bids, competing, per_unit)
    ladder_nodes, ladder_weights = ladder_panel_rule(per_unit, remainder.ladder_panels())
    scale = competing[..., None, None]
    grid = torch.cat([(scale * bids.new_tensor(ladder_nodes)).flatten(-2), remainder.nodes], -1)
    ladder_quadrature = remainder.node_weights(bids.new_tensor(ladder_weights), competing)
    weights = torch.cat([ladder_quadrature.flatten(-2), remainder.weights], -1)
    integral = torch.zeros_like(bids)
    for start in range(0, grid.shape[-1], node_chunk):
        chunk = slice(start, start + node_chunk)
        curve = allocation_curve(logprobs, raw_weights, grid[..., chunk], "log_linear")
        integral = integral + (curve * weights[..., chunk]).sum(-1)
    at_bid = allocation_curve(logprobs, raw_weights, bids.unsqueeze(-1), "log_linear")[..., 0]
    full_charge = bids * at_bid
    payments = (full_charge - integral).clamp_min(0).minimum(full_charge)
    return torch.where(competing > 0, payments, torch.zeros_like(payments)), full_charge


@pytest.mark.parametrize("seed", range(6))
def test_share_kernel_payments_equal_the_allocation_curve_quadrature(seed):
    generator = torch.Generator().manual_seed(seed)
    auctions, agents, vocab = 3, 1 + seed % 3, 37
    logprobs = torch.log_softmax(
        torch.randn(auctions, agents + 1, vocab, generator=generator, dtype=torch.float64) * 3, -1
    )
    logprobs[:, 1:, : vocab // 4] = -math.inf  # tokens an advertiser vetoes (floored)
    # Weights over six decades, one advertiser alone (B = 0 when the user's weight is 0 too)
    # and bids far above the ladder's top (its tail panels).
    raw = 10.0 ** (6 * torch.rand(auctions, agents + 1, generator=generator) - 3).double()
    raw[0, 0] = 0.0
    raw[0, 2:] = 0.0
    raw[1, 1] = 500.0 * raw[1].sum()
    expected, ceiling = ladder_payments_by_allocation_curve(logprobs, raw, nodes=64)
    actual = numerical_second_price_payments(logprobs, raw, "log_linear", nodes=64)
    # Same quadrature, logits formed as r + t (f - r) instead of (sum_j w_j f_j + z f_i) / (B + z)
    # and exponentiated base 2: float64 rounding of each x (about 1e-15), summed over ~100 nodes
    # and relative to the charge ceiling b x(b). 300 random instances over 16 decades of
    # weights differed by at most 1.4e-13 of b x(b); 1e-11 leaves margin for other CPUs.
    assert torch.all((actual - expected).abs() <= 1e-11 * ceiling)
    # Advertiser 0 of auction 0 faces a user weight of 0 and no other bid: B = 0, no payment.
    assert actual[0, 0] == 0.0


def test_no_auction_gives_no_payment():
    """An empty batch (A = 0) prices to an empty ``[0, n]`` tensor, not an error."""
    logprobs = peaked_instance(3, auctions=1)[:0]  # [0, 3, V]
    raw = participant_weights(torch.zeros((0, 2), dtype=torch.float64), 0.3)
    payments = numerical_second_price_payments(logprobs, raw, "log_linear", nodes=64)
    assert payments.shape == (0, 2)
