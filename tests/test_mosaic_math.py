"""MOSAIC math (docs/design.md, section 3.2): payments, truthfulness, IR, convergence to pi*."""

import math

import numpy as np
import pytest
import torch

from market_sim.mechanisms.mosaic import (
    deviation_outcomes,
    importance_log_weights,
    log_partition,
    run_mosaic,
    selection_probabilities,
)
from market_sim.mechanisms.mosaic_output_distribution import (
    convergence_curve,
    expected_output_distribution,
    kl_divergence,
    target_distribution,
    total_variation,
)
from market_sim.mechanisms.relevance import relevance_scores

torch.set_num_threads(1)

SCALES = torch.cat([torch.linspace(0.0, 4.0, 81), torch.tensor([1e-3, 0.999, 1.001, 10.0])])


def scaled_report_utilities(true, reported, log_weights, tau, scales, payment="mosaic"):
    """``[A, n, K]``: advertiser i's true utility when it reports ``scales[k] * true[:, i]``.

    The others keep ``reported``; computed with :func:`deviation_outcomes`, the platform's
    counterfactual, as utility = E_q[r_i] - pay.
    """
    scales = torch.as_tensor(scales, dtype=torch.float64)
    utilities = []
    for agent in range(true.shape[-2]):
        others = reported.sum(-2) - reported[..., agent, :]  # [A, M]
        own = true[..., agent, :]  # [A, M]
        deviations = scales[:, None] * own.unsqueeze(-2)  # [A, K, M]
        outcome = deviation_outcomes(others, deviations, log_weights, tau, payment)
        values = (outcome.probabilities * own.unsqueeze(-2)).sum(-1)
        utilities.append(values - outcome.payments)
    return torch.stack(utilities, -2)


def random_auctions(seed: int, auctions=8, agents=3, candidates=6, reward_scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    true = reward_scale * torch.rand(
        auctions, agents, candidates, generator=generator, dtype=torch.float64
    )
    ref = torch.log_softmax(
        torch.randn(auctions, candidates, generator=generator, dtype=torch.float64), -1
    )
    gen = torch.log_softmax(
        torch.randn(auctions, candidates, generator=generator, dtype=torch.float64), -1
    )
    return true, importance_log_weights(ref, gen)


def test_hand_computed_two_candidates_two_advertisers():
    # pi_ref = (1/2, 1/2), pi_gen = (1/4, 3/4): l = (log 2, log 2/3); tau = 1,
    # r_1 = (2, 0), r_2 = (0, 1): R = (2, 1), exp(S) = (2 e^2, 2e/3), q = (3e, 1) / (3e + 1),
    # U(R) = log(e^2 + e/3), U(R - r_1) = log(1 + e/3), U(R - r_2) = log(e^2 + 1/3).
    e = math.e
    log_weights = importance_log_weights(
        torch.tensor([math.log(0.5), math.log(0.5)], dtype=torch.float64),
        torch.tensor([math.log(0.25), math.log(0.75)], dtype=torch.float64),
    )
    reported = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    outcome = run_mosaic(reported, log_weights, tau=1.0)
    q1, q2 = 3 * e / (3 * e + 1), 1 / (3 * e + 1)
    assert outcome.probabilities.tolist() == pytest.approx([q1, q2], abs=1e-14)
    u_all = math.log(e**2 + e / 3)
    assert outcome.log_partition.item() == pytest.approx(u_all, abs=1e-14)
    pay1 = 2 * q1 - u_all + math.log(1 + e / 3)
    pay2 = q2 - u_all + math.log(e**2 + 1 / 3)
    assert outcome.payments.tolist() == pytest.approx([pay1, pay2], abs=1e-13)
    assert outcome.payments.tolist() == pytest.approx([0.31092, 0.03769], abs=1e-4)
    # Truthful utility = U(R) - U(R_-i).
    assert outcome.utilities.tolist() == pytest.approx(
        [u_all - math.log(1 + e / 3), u_all - math.log(e**2 + 1 / 3)], abs=1e-13
    )


def test_with_pi_gen_equal_pi_ref_and_one_candidate_nobody_pays():
    # M = 1: the reply is fixed, q = 1, U(R) = R(y_1), U(R - r_i) = R(y_1) - r_i(y_1): pay = 0.
    reported = torch.tensor([[[0.7], [0.2]]], dtype=torch.float64)
    outcome = run_mosaic(reported, torch.zeros(1, 1, dtype=torch.float64), tau=0.3)
    torch.testing.assert_close(outcome.payments, torch.zeros(1, 2, dtype=torch.float64))
    torch.testing.assert_close(outcome.utilities, reported[..., 0])


@pytest.mark.parametrize("tau", [0.05, 0.5, 3.0])
def test_payments_and_utilities_bounds(tau):
    true, log_weights = random_auctions(1, auctions=32, agents=4, candidates=9)
    outcome = run_mosaic(true, log_weights, tau)
    assert torch.all(outcome.payments >= -1e-12)
    assert torch.all(outcome.payments <= outcome.reported_values + 1e-12)
    expected = outcome.log_partition[:, None] - outcome.log_partition_without
    torch.testing.assert_close(outcome.utilities, expected, rtol=0, atol=1e-12)
    assert torch.all(outcome.utilities >= -1e-12)


@pytest.mark.parametrize("tau", [0.1, 1.0])
def test_truthful_scale_is_optimal_on_a_grid(tau):
    for seed in range(10):
        true, log_weights = random_auctions(100 + seed, auctions=8, agents=3, candidates=7)
        # Others report scaled versions of their truth: truthfulness must not depend on that.
        other_scales = 0.5 + torch.rand(
            true.shape[:2], generator=torch.Generator().manual_seed(seed)
        )
        reported = true * other_scales.double()[..., None]
        utilities = scaled_report_utilities(true, reported, log_weights, tau, SCALES)
        truthful = scaled_report_utilities(true, reported, log_weights, tau, [1.0])[..., 0]
        assert torch.all(utilities <= truthful[..., None] + 1e-11), seed
        assert torch.all(truthful >= -1e-12)


def test_arbitrary_misreports_never_beat_truth():
    generator = torch.Generator().manual_seed(7)
    true, log_weights = random_auctions(7, auctions=4, agents=3, candidates=5)
    truthful = run_mosaic(true, log_weights, 0.4).utilities
    for _ in range(300):
        lie = true.clone()
        agent = int(torch.randint(3, (1,), generator=generator))
        lie[:, agent] = 3 * torch.rand(4, 5, generator=generator, dtype=torch.float64)
        utilities = run_mosaic(lie, log_weights, 0.4, true_rewards=true).utilities
        assert torch.all(utilities[:, agent] <= truthful[:, agent] + 1e-12)


def test_without_payments_exaggeration_is_profitable():
    true, log_weights = random_auctions(3, auctions=16, agents=3, candidates=6)
    gains = scaled_report_utilities(true, true, log_weights, 0.5, [1.0, 3.0], payment="none")
    assert torch.all(gains[..., 1] >= gains[..., 0] - 1e-12)
    assert (gains[..., 1] - gains[..., 0]).mean() > 1e-2


def test_deviation_outcomes_match_a_direct_run():
    true, log_weights = random_auctions(4, auctions=5, agents=3, candidates=6)
    reported = true * torch.tensor([1.3, 0.6, 1.0], dtype=torch.float64)[:, None]
    scales = torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64)
    fast = scaled_report_utilities(true, reported, log_weights, 0.7, scales)
    for agent in range(3):
        for k, scale in enumerate(scales):
            lie = reported.clone()
            lie[:, agent] = scale * true[:, agent]
            slow = run_mosaic(lie, log_weights, 0.7, true_rewards=true).utilities[:, agent]
            torch.testing.assert_close(fast[:, agent, k], slow, rtol=0, atol=1e-12)


def test_constant_shift_of_a_report_changes_nothing():
    true, log_weights = random_auctions(5, auctions=6, agents=3, candidates=6)
    shifted = true.clone()
    shifted[:, 1] += 0.8
    base, moved = run_mosaic(true, log_weights, 0.5), run_mosaic(shifted, log_weights, 0.5)
    torch.testing.assert_close(moved.probabilities, base.probabilities)
    torch.testing.assert_close(moved.payments, base.payments)


def test_batched_equals_single_auctions():
    true, log_weights = random_auctions(6, auctions=5, agents=2, candidates=4)
    batched = run_mosaic(true, log_weights, 0.9)
    for a in range(5):
        single = run_mosaic(true[a], log_weights[a], 0.9)
        torch.testing.assert_close(single.payments, batched.payments[a])
        torch.testing.assert_close(single.probabilities, batched.probabilities[a])


def test_log_partition_and_selection_definitions():
    rewards = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    log_weights = torch.tensor([0.1, 0.0, -0.5], dtype=torch.float64)
    tau = 0.7
    direct = tau * math.log(
        sum(
            math.exp(r / tau + w)
            for r, w in zip(rewards.tolist(), log_weights.tolist(), strict=True)
        )
        / 3
    )
    assert log_partition(rewards, log_weights, tau).item() == pytest.approx(direct, abs=1e-14)
    scores = rewards / tau + log_weights
    torch.testing.assert_close(
        selection_probabilities(rewards, log_weights, tau), scores.exp() / scores.exp().sum()
    )
    with pytest.raises(ValueError):
        log_partition(rewards, log_weights, 0.0)


def test_relevance_scores_are_squashed_mean_log_ratios():
    ref = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, 0.0]])  # [M=2, T=3]
    mask = torch.tensor([[True, True, False], [False, False, False]])
    advertiser = torch.stack([ref + torch.tensor([[1.0, 3.0, 50.0], [9.0, 9.0, 9.0]]), ref])
    scores = relevance_scores(advertiser, ref, mask)  # [n=2, M=2]
    assert scores[0, 0].item() == pytest.approx(1 / (1 + math.exp(-2.0)))  # mean of 1 and 3
    assert scores[0, 1].item() == pytest.approx(0.5)  # empty reply: neutral
    assert scores[1].tolist() == pytest.approx([0.5, 0.5])  # same LM as pi_ref
    cooler = relevance_scores(advertiser, ref, mask, temperature=4.0, offset=1.0)
    assert cooler[0, 0].item() == pytest.approx(1 / (1 + math.exp(-0.25)))
    assert torch.all((scores > 0) & (scores < 1))


def test_target_distribution_closed_form():
    ref = torch.log(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))
    rewards = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    unnormalized = torch.tensor([0.5, 0.3 * math.e, 0.2 * math.e**2], dtype=torch.float64)
    torch.testing.assert_close(
        target_distribution(ref, rewards, 1.0), unnormalized / unnormalized.sum()
    )
    p = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    q = torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64)
    assert kl_divergence(p, q).item() == pytest.approx(math.log(2))
    assert math.isinf(kl_divergence(q, p).item())
    assert total_variation(p, q).item() == pytest.approx(0.5)


def enumerable_space(seed: int, outcomes: int = 6, tau: float = 0.5):
    generator = torch.Generator().manual_seed(seed)
    ref = torch.log_softmax(
        1.5 * torch.randn(outcomes, generator=generator, dtype=torch.float64), -1
    )
    rewards = 2 * torch.rand(
        2, outcomes, generator=generator, dtype=torch.float64
    )  # two advertisers
    total = rewards.sum(0)
    target = target_distribution(ref, total, tau)
    # A "context-aware" proposal: pi_ref tilted part of the way toward the rewards.
    aware = torch.log_softmax(ref + 0.7 * total / tau, -1)
    return ref, aware, total, target


@pytest.mark.parametrize("candidates", [1, 2, 3, 5, 9])
def test_quadrature_equals_exact_enumeration(candidates):
    ref, aware, total, _ = enumerable_space(0)
    for proposal in (ref, aware):
        exact = expected_output_distribution(ref, proposal, total, 0.5, candidates, "exact")
        quad = expected_output_distribution(ref, proposal, total, 0.5, candidates, "quadrature")
        torch.testing.assert_close(quad, exact, rtol=0, atol=1e-12)
        assert exact.sum().item() == pytest.approx(1.0, abs=1e-12)


def test_monte_carlo_output_matches_exact_within_noise():
    ref, aware, total, _ = enumerable_space(1)
    exact = expected_output_distribution(ref, aware, total, 0.5, 4, "exact")
    mc = expected_output_distribution(
        ref,
        aware,
        total,
        0.5,
        4,
        "monte_carlo",
        trials=40_000,
        generator=torch.Generator().manual_seed(3),
    )
    torch.testing.assert_close(mc, exact, rtol=0, atol=6e-3)


def test_exact_output_is_a_direct_average_over_candidate_sets():
    # M = 2 by hand: sum over ordered pairs (a, b) of pi_gen(a) pi_gen(b) q(a | {a, b}).
    ref, aware, total, _ = enumerable_space(2, outcomes=4)
    gen, log_w = aware.exp(), total / 0.5 + ref - aware
    by_hand = torch.zeros(4, dtype=torch.float64)
    for a in range(4):
        for b in range(4):
            q = torch.softmax(torch.stack([log_w[a], log_w[b]]), 0)
            by_hand[a] += gen[a] * gen[b] * q[0]
            by_hand[b] += gen[a] * gen[b] * q[1]
    exact = expected_output_distribution(ref, aware, total, 0.5, 2, "exact")
    torch.testing.assert_close(exact, by_hand, rtol=0, atol=1e-14)


def test_one_candidate_outputs_the_proposal_and_exact_proposal_is_exact_for_all_m():
    ref, aware, total, target = enumerable_space(3)
    one = expected_output_distribution(ref, aware, total, 0.5, 1)
    torch.testing.assert_close(one, aware.exp())
    perfect = target.log()
    for m in (1, 7, 64):
        out = expected_output_distribution(ref, perfect, total, 0.5, m)
        torch.testing.assert_close(out, target, rtol=0, atol=1e-11)


def test_distance_to_target_falls_as_m_grows():
    sizes = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    for seed in range(3):
        ref, aware, total, _ = enumerable_space(10 + seed, outcomes=8)
        for proposal in (ref, aware):
            curve = convergence_curve(ref, proposal, total, 0.5, sizes)
            tv, kl = curve.total_variation, curve.kl
            assert torch.all(tv[1:] < tv[:-1]), (seed, tv)
            assert torch.all(kl[1:] < kl[:-1]), (seed, kl)
            assert tv[-1] < 0.1 * tv[0]
            # Self-normalized importance sampling has O(1/M) bias: doubling M about halves TV.
            assert tv[-1] / tv[-2] == pytest.approx(0.5, abs=0.1)
        base = convergence_curve(ref, ref, total, 0.5, sizes).total_variation
        better = convergence_curve(ref, aware, total, 0.5, sizes).total_variation
        assert torch.all(better <= base)


def test_quadrature_handles_many_outcomes_and_extreme_weights():
    generator = torch.Generator().manual_seed(5)
    ref = torch.log_softmax(4 * torch.randn(3000, generator=generator, dtype=torch.float64), -1)
    gen = torch.log_softmax(4 * torch.randn(3000, generator=generator, dtype=torch.float64), -1)
    total = 10 * torch.rand(3000, generator=generator, dtype=torch.float64)
    out = expected_output_distribution(ref, gen, total, 0.2, 256)
    assert torch.all(torch.isfinite(out)) and torch.all(out >= 0)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-9)


def test_quadrature_in_outcome_blocks_equals_exact_enumeration():
    """The [nodes, Y] sum over outcomes is taken in blocks: 131,072 outcomes (support_samples
    at its maximum) with a wide weight range made one block of 12.6 GB and the run was killed.
    Here about 10,000 nodes split 600 outcomes into 4 blocks."""
    generator = torch.Generator().manual_seed(11)
    ref = torch.log_softmax(torch.randn(600, generator=generator, dtype=torch.float64), -1)
    total = 300 * torch.rand(600, generator=generator, dtype=torch.float64)  # weights e^0..e^600
    exact = expected_output_distribution(ref, ref, total, 0.5, 2, "exact")
    quad = expected_output_distribution(ref, ref, total, 0.5, 2, "quadrature")
    # the same tolerance as the unblocked comparison above: quadrature error, not blocking
    torch.testing.assert_close(quad, exact, rtol=0, atol=1e-12)


@pytest.mark.parametrize("log_weight_gap", [-702.0, -750.0, -1000.0])
def test_quadrature_keeps_the_mass_of_outcomes_far_below_the_largest_weight(log_weight_gap):
    """Relative weights below exp(-745) underflowed to 0 and their output mass was dropped (a
    subnormal one raised OverflowError): with pi = (0.001, 0.999) and the likely outcome's
    weight exp(gap) of the other's, two candidates pick it whenever both are it (0.998)."""
    log_pi = torch.log(torch.tensor([0.001, 0.999], dtype=torch.float64))
    ref = log_pi + torch.tensor([0.0, log_weight_gap], dtype=torch.float64)  # log w = ref - pi
    ref = ref - torch.logsumexp(ref, 0)
    rewards = torch.zeros(2, dtype=torch.float64)
    exact = expected_output_distribution(ref, log_pi, rewards, 1.0, 2, "exact")
    quad = expected_output_distribution(ref, log_pi, rewards, 1.0, 2, "quadrature")
    torch.testing.assert_close(quad, exact, rtol=0, atol=1e-12)  # as for moderate weights
    assert exact[1].item() == pytest.approx(0.999**2, rel=1e-12)


def test_monte_carlo_convergence_curve_is_seeded():
    ref, aware, total, _ = enumerable_space(4)
    first = convergence_curve(ref, ref, total, 0.5, [4, 16], method="monte_carlo", seed=9)
    again = convergence_curve(ref, ref, total, 0.5, [4, 16], method="monte_carlo", seed=9)
    torch.testing.assert_close(first.total_variation, again.total_variation)
    exact = convergence_curve(ref, ref, total, 0.5, [4, 16]).total_variation
    assert np.allclose(first.total_variation.numpy(), exact.numpy(), atol=0.02)
