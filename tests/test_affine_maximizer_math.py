"""Affine maximizer (docs/design.md, section 3.3): exact solvers, payments, DSIC, IR, synthetic."""

import itertools
import math

import numpy as np
import pytest

from market_sim.mechanisms.affine_maximizer import (
    chi2_threshold,
    f_divergence,
    normalize_rewards,
    regularized_value,
    run_affine_maximizer,
    run_grid_affine_maximizer,
    solve_chi2,
    solve_kl,
    solve_policy,
    solve_tv,
)
from market_sim.mechanisms.affine_misreport_utilities import (
    grid_misreport_utilities,
    misreport_reports,
    misreport_utilities,
)
from market_sim.mechanisms.affine_misreports import (
    distorted_reward_models,
    distorted_valuations,
    epsilon_shift,
)
from market_sim.mechanisms.affine_synthetic_game import (
    epsilon_effects,
    grid_valuations,
    synthetic_games,
)

DIVERGENCES = ["kl", "chi2", "tv"]


def random_problem(rng, outcomes=None):
    outcomes = outcomes or int(rng.integers(2, 7))
    init = rng.dirichlet(np.full(outcomes, rng.choice([0.3, 1.0, 5.0])))
    scores = rng.normal(size=outcomes) * rng.choice([0.1, 1.0, 5.0])
    lam = float(rng.choice([0.05, 0.5, 2.0]))
    return scores, init, lam


def random_games(seed, games=20, groups=3, outcomes=6, normalization="max"):
    rng = np.random.default_rng(seed)
    rewards = normalize_rewards(rng.uniform(size=(games, groups, outcomes)), normalization)
    weights = rng.integers(1, 11, size=(games, groups)).astype(float)
    init = rng.dirichlet(np.full(outcomes, 2.0), size=games)
    return rewards, weights, init


# --- divergences and solvers ------------------------------------------------------------------


def test_f_divergence_hand_values():
    policy, init = np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.25, 0.5])
    assert f_divergence(policy, init, "kl", 2.0) == pytest.approx(2 * math.log(2))
    # chi2: (0.25^2/0.25) * 2 + 0.5^2/0.5 = 0.25 + 0.25 + 0.5 = 1.0
    assert f_divergence(policy, init, "chi2", 3.0) == pytest.approx(3.0)
    assert f_divergence(policy, init, "tv", 0.5) == pytest.approx(0.5 * 1.0)
    assert math.isinf(f_divergence(init, policy, "kl", 1.0))
    assert math.isinf(f_divergence(init, policy, "chi2", 1.0))
    assert f_divergence(init, policy, "tv", 1.0) == pytest.approx(1.0)  # lambda * sum |diff|
    for kind in DIVERGENCES:
        assert f_divergence(init, init, kind, 1.0) == pytest.approx(0.0)


def test_kl_rule_equals_closed_form_and_optimal_value():
    rng = np.random.default_rng(0)
    for _ in range(50):
        scores, init, lam = random_problem(rng)
        tilted = init * np.exp(scores / lam)
        policy = solve_kl(scores, init, lam)
        np.testing.assert_allclose(policy, tilted / tilted.sum(), rtol=1e-12, atol=1e-15)
        # Optimal value lambda * log E_init exp(g / lambda) (Gibbs variational principle).
        value = regularized_value(policy, scores, init, "kl", lam)
        assert value == pytest.approx(lam * math.log(tilted.sum()), rel=1e-10, abs=1e-12)
        assert np.array_equal(solve_policy(scores, init, "kl", lam), policy)


def test_chi2_hand_cases():
    init = np.full(3, 1 / 3)
    np.testing.assert_allclose(
        solve_chi2(np.array([2.0, 1.0, 0.0]), init, 1.0), [1 / 2, 1 / 3, 1 / 6]
    )
    # All-active level 1/3 would make pi_3 < 0; the top-2 level is t = 1/2.
    scores = np.array([6.0, 1.0, 0.0])
    assert chi2_threshold(scores, init, 1.0) == pytest.approx(0.5)
    np.testing.assert_allclose(solve_chi2(scores, init, 1.0), [11 / 12, 1 / 12, 0.0], atol=1e-15)


def brute_force_chi2(scores, init, lam):
    """Best objective over every active set, each solved in closed form on its own."""
    best = -np.inf
    for size in range(1, len(scores) + 1):
        for active in itertools.combinations(range(len(scores)), size):
            idx = list(active)
            level = (init[idx] @ scores[idx] - 2 * lam) / init[idx].sum()
            policy = np.zeros_like(scores)
            policy[idx] = init[idx] * (scores[idx] - level) / (2 * lam)
            if np.all(policy >= -1e-15):
                best = max(
                    best, regularized_value(np.clip(policy, 0, None), scores, init, "chi2", lam)
                )
    return best


def test_chi2_rule_satisfies_kkt_and_beats_every_active_set():
    rng = np.random.default_rng(1)
    for _ in range(200):
        scores, init, lam = random_problem(rng)
        policy = solve_chi2(scores, init, lam)
        assert policy.sum() == pytest.approx(1.0, abs=1e-12) and np.all(policy >= 0)
        # KKT: stationarity g_y - 2 lam (pi_y / init_y - 1) = nu on the active set, and
        # g_y + 2 lam <= nu (multiplier mu_y >= 0) where pi_y = 0.
        gradient = scores - 2 * lam * (policy / init - 1)
        active = policy > 0
        nu = gradient[active].mean()
        np.testing.assert_allclose(gradient[active], nu, atol=1e-9 * (1 + abs(nu)))
        assert np.all(gradient[~active] <= nu + 1e-9 * (1 + abs(nu)))
        value = regularized_value(policy, scores, init, "chi2", lam)
        assert value >= brute_force_chi2(scores, init, lam) - 1e-10


def test_chi2_rule_on_breakpoints_of_the_water_level():
    """Decimal scores and lambdas put the level exactly on a score (t = g_(k+1)).

    There rounding broke both sides of g_(k) > t_k >= g_(k+1) for every k, and the rule
    raised, e.g. scores (0.3, 0.1), uniform init, lambda 0.05 (true policy (1, 0)). Each case
    must give a distribution that beats every active set (tolerance 1e-12: objectives are
    O(1) sums of a few float64 products).
    """
    raised_before = 0
    for scores in itertools.product([0.0, 0.1, 0.2, 0.3, 0.4], repeat=3):
        scores = np.array(scores)
        for init in (np.full(3, 1 / 3), np.array([0.5, 0.25, 0.25]), np.array([0.2, 0.3, 0.5])):
            for lam in (0.05, 0.1, 0.15, 0.2, 0.25):
                level = (init @ scores - 2 * lam) / init.sum()
                raised_before += bool(np.isclose(np.sort(scores), level).any())
                policy = solve_chi2(scores, init, lam)
                assert policy.sum() == pytest.approx(1.0, abs=1e-12) and np.all(policy >= 0)
                value = regularized_value(policy, scores, init, "chi2", lam)
                assert value >= brute_force_chi2(scores, init, lam) - 1e-12
    assert raised_before > 0  # the grid does reach breakpoints
    np.testing.assert_allclose(
        solve_chi2(np.array([0.3, 0.1]), np.full(2, 0.5), 0.05), [1.0, 0.0], atol=1e-15
    )


def brute_force_tv(scores, init, lam):
    """Exact LP optimum: at a vertex all coordinates but one sit at a breakpoint {0, init_y}."""
    best = -np.inf
    size = len(scores)
    for free in range(size):
        rest = [y for y in range(size) if y != free]
        for bits in itertools.product([0.0, 1.0], repeat=size - 1):
            policy = np.zeros(size)
            policy[rest] = np.array(bits) * init[rest]
            policy[free] = 1.0 - policy.sum()
            if policy[free] >= 0:
                best = max(best, regularized_value(policy, scores, init, "tv", lam))
    return best


def test_tv_hand_cases():
    init = np.full(3, 1 / 3)
    scores = np.array([3.0, 1.0, 0.0])
    np.testing.assert_allclose(solve_tv(scores, init, 0.75), [1.0, 0.0, 0.0])  # gap 2 lam = 1.5
    np.testing.assert_allclose(solve_tv(scores, init, 1.25), [2 / 3, 1 / 3, 0.0])  # 2 lam = 2.5
    np.testing.assert_allclose(solve_tv(scores, init, 2.0), init)  # no gap exceeds 4
    # Zero base probability: TV may still move mass there (cost lambda per unit).
    np.testing.assert_allclose(solve_tv(np.array([5.0, 0.0]), np.array([0.0, 1.0]), 1.0), [1, 0])


def test_tv_rule_is_lp_optimal():
    rng = np.random.default_rng(2)
    for _ in range(200):
        scores, init, lam = random_problem(rng)
        policy = solve_tv(scores, init, lam)
        assert policy.sum() == pytest.approx(1.0, abs=1e-12) and np.all(policy >= 0)
        value = regularized_value(policy, scores, init, "tv", lam)
        # Attains the dual bound <init, g> + sum init (g_max - g - 2 lam)_+ ...
        bound = init @ scores + init @ np.maximum(scores.max() - scores - 2 * lam, 0)
        assert value == pytest.approx(bound, rel=1e-12, abs=1e-12)
        # ... equals the best LP vertex ...
        assert value >= brute_force_tv(scores, init, lam) - 1e-12
        # ... and no pairwise transfer improves it (optimality for a separable concave
        # objective): min left-derivative over the support >= max right-derivative.
        right = scores - lam * np.where(policy >= init, 1.0, -1.0)
        left = scores - lam * np.where(policy > init, 1.0, -1.0)
        assert left[policy > 0].min() >= right.max() - 1e-12


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_rules_beat_a_dense_random_search(divergence):
    rng = np.random.default_rng(3)
    for _ in range(20):
        scores, init, lam = random_problem(rng, outcomes=4)
        policy = solve_policy(scores, init, divergence, lam)
        best = regularized_value(policy, scores, init, divergence, lam)
        samples = np.concatenate(
            [
                rng.dirichlet(np.ones(4), size=20_000),
                np.clip(policy + 0.01 * rng.normal(size=(5_000, 4)), 0, None),
            ]
        )
        samples /= samples.sum(-1, keepdims=True)
        assert regularized_value(samples, scores, init, divergence, lam).max() <= best + 1e-12


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_batched_solver_equals_rows(divergence):
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(3, 4, 5))
    init = rng.dirichlet(np.ones(5), size=(3, 4))
    batched = solve_policy(scores, init, divergence, 0.3)
    for a, b in itertools.product(range(3), range(4)):
        np.testing.assert_allclose(
            batched[a, b], solve_policy(scores[a, b], init[a, b], divergence, 0.3)
        )


# --- payments and incentives ------------------------------------------------------------------


def test_hand_computed_kl_payments():
    # init = (1/2, 1/2), lam = 1, rm_1 = (1, 0), rm_2 = (0, 1), w = (2, 1): g = (2, 1).
    # pi* = (e, 1)/(e + 1); ASW_-1(pi*_-1) = log((1 + e)/2); ASW_-2(pi*_-2) = log((e^2 + 1)/2).
    e = math.e
    rewards = np.array([[1.0, 0.0], [0.0, 1.0]])
    outcome = run_affine_maximizer(rewards, np.array([2.0, 1.0]), np.array([0.5, 0.5]), "kl", 1.0)
    pi1, pi2 = e / (e + 1), 1 / (e + 1)
    np.testing.assert_allclose(outcome.policy, [pi1, pi2])
    kl = pi1 * math.log(2 * pi1) + pi2 * math.log(2 * pi2)
    pay1 = math.log((1 + e) / 2) - (pi2 - kl)
    pay2 = math.log((e**2 + 1) / 2) - (2 * pi1 - kl)
    np.testing.assert_allclose(outcome.payments, [pay1, pay2], atol=1e-14)
    np.testing.assert_allclose(outcome.payments, [0.462117, 0.082607], atol=1e-6)
    # Utility = max objective - max objective without i: log(e) and log(e (e + 1)/(e^2 + 1)).
    np.testing.assert_allclose(
        outcome.utilities, [1.0, math.log(e * (e + 1) / (e**2 + 1))], atol=1e-14
    )
    free = run_affine_maximizer(rewards, np.array([2.0, 1.0]), np.array([0.5, 0.5]), payment="none")
    np.testing.assert_allclose(free.payments, 0.0)
    np.testing.assert_allclose(free.utilities, [2 * pi1, pi2])


@pytest.mark.parametrize("divergence", DIVERGENCES)
@pytest.mark.parametrize("normalization", ["max", "sum"])
def test_payments_nonnegative_and_truthful_utility_individually_rational(divergence, normalization):
    rewards, weights, init = random_games(5, games=40, groups=4, normalization=normalization)
    for lam in (0.1, 1.0):
        outcome = run_affine_maximizer(rewards, weights, init, divergence, lam)
        assert np.all(outcome.payments >= -1e-10)
        assert np.all(outcome.utilities >= -1e-10)
        # Utility >= the group's value at the policy chosen without it.
        without = (outcome.policies_without * rewards).sum(-1) * weights
        assert np.all(outcome.utilities >= without - 1e-9)


DEVIATIONS = {
    "alpha": np.concatenate([np.linspace(0.0, 4.0, 41), [0.999, 1.001, 10.0]]),
    "beta": np.concatenate([np.linspace(0.0, 1.0, 11), [0.999, 1.5, -0.5]]),
    "epsilon": np.array([0.0, 1e-3, 1e-2, 0.05, 0.1, 0.3, 1.0]),
}
TRUTH = {"alpha": 1.0, "beta": 1.0, "epsilon": 0.0}


@pytest.mark.parametrize("divergence", DIVERGENCES)
@pytest.mark.parametrize("normalization", ["max", "sum"])
def test_no_profitable_deviation(divergence, normalization):
    rewards, weights, init = random_games(6, games=25, groups=3, normalization=normalization)
    # The others misreport too (fixed): DSIC means truth is best whatever they do.
    others_rewards, others_weights = misreport_reports(
        rewards, weights, 0, "epsilon", [0.2], normalization
    )
    others_rewards, others_weights = others_rewards[:, 0], others_weights[:, 0] * 1.5
    for lam in (0.2, 1.0):
        for agent, (kind, grid) in itertools.product(range(1, 3), DEVIATIONS.items()):
            utilities = misreport_utilities(
                rewards, weights, init, agent, kind, grid, divergence, lam,
                normalization=normalization, reported_rewards=others_rewards,
                reported_weights=others_weights,
            )  # fmt: skip
            truthful = misreport_utilities(
                rewards, weights, init, agent, kind, [TRUTH[kind]], divergence, lam,
                normalization=normalization, reported_rewards=others_rewards,
                reported_weights=others_weights,
            )  # fmt: skip
            assert np.all(utilities <= truthful + 1e-9), (kind, agent, lam)


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_arbitrary_reports_never_beat_truth(divergence):
    rng = np.random.default_rng(7)
    rewards, weights, init = random_games(7, games=30, groups=3)
    truthful = run_affine_maximizer(rewards, weights, init, divergence, 0.5).utilities
    for _ in range(40):
        agent = int(rng.integers(3))
        lie_rewards, lie_weights = rewards.copy(), weights.copy()
        lie_rewards[:, agent] = rng.uniform(size=lie_rewards[:, agent].shape)
        lie_weights[:, agent] = rng.uniform(0, 20, size=30)
        lied = run_affine_maximizer(
            lie_rewards, lie_weights, init, divergence, 0.5,
            true_rewards=rewards, true_weights=weights,
        )  # fmt: skip
        assert np.all(lied.utilities[:, agent] <= truthful[:, agent] + 1e-9)


@pytest.mark.parametrize("divergence", ["kl", "chi2"])
def test_without_payments_inflating_the_size_pays(divergence):
    rewards, weights, init = random_games(8, games=50, groups=3)
    utilities = misreport_utilities(
        rewards, weights, init, 0, "alpha", [1.0, 2.0], divergence, 0.5, payment="none"
    )
    gain = utilities[:, 1] - utilities[:, 0]
    assert np.all(gain >= -1e-12)
    assert gain.mean() > 1e-3


def test_misreport_definitions_keep_normalization():
    rng = np.random.default_rng(9)
    for normalization, norm in (("max", np.max), ("sum", np.sum)):
        rewards = normalize_rewards(rng.uniform(size=(4, 3, 7)), normalization)
        np.testing.assert_allclose(norm(rewards, -1), 1.0)
        shifted = epsilon_shift(rewards, 0.05, normalization)
        np.testing.assert_allclose(norm(shifted, -1), 1.0)
        favourite = rewards.argmax(-1)
        np.testing.assert_array_equal(shifted.argmax(-1), favourite)
        delta = shifted - rewards
        level = 1.0 if normalization == "max" else 1 / 7
        np.testing.assert_allclose(delta.max(-1) - delta.min(-1), 0.05)
        np.testing.assert_allclose(delta.min(-1), -0.05 * level)
        weights = np.ones((4, 3))
        blended, _ = misreport_reports(rewards, weights, 1, "beta", [1.0, 0.0], normalization)
        np.testing.assert_allclose(blended[:, 0], rewards)  # beta = 1 is the truth
        others = normalize_rewards(rewards[:, [0, 2]].mean(1), normalization)
        np.testing.assert_allclose(blended[:, 1, 1], others)  # beta = 0 is the others' mean
        np.testing.assert_allclose(norm(blended, -1), 1.0)
        _, inflated = misreport_reports(rewards, weights * 3, 2, "alpha", [2.5], normalization)
        np.testing.assert_allclose(inflated[:, 0], np.tile([3.0, 3.0, 7.5], (4, 1)))


def test_the_analysis_blend_is_the_platform_blend():
    """One blend: toward the others' TRUE rows (whatever they report), clipped at 0."""
    rng = np.random.default_rng(14)
    betas = np.array([-0.5, 0.0, 0.5, 1.0, 2.0, 3.0])
    for normalization in ("max", "sum"):
        rewards = normalize_rewards(rng.uniform(size=(5, 3, 7)), normalization)
        weights = rng.integers(1, 11, size=(5, 3)).astype(float)
        others_lie = normalize_rewards(rng.uniform(size=(5, 3, 7)), normalization)
        blended, sizes = misreport_reports(
            rewards, weights, 1, "beta", betas, normalization, reported_rewards=others_lie
        )
        for k, beta in enumerate(betas):
            platform = distorted_reward_models(
                rewards, np.array([1.0, beta, 1.0]), "blend", normalization
            )
            np.testing.assert_array_equal(blended[:, k, 1], platform[:, 1])  # the same function
            np.testing.assert_array_equal(blended[:, k, [0, 2]], others_lie[:, [0, 2]])
            np.testing.assert_array_equal(sizes[:, k], weights)
        truth_mean = rewards[:, [0, 2]].mean(1)  # not the mean of others_lie
        np.testing.assert_allclose(
            blended[:, 1, 1], normalize_rewards(truth_mean, normalization), rtol=1e-12
        )
        # beta = 3 extrapolates to 3 rm - 2 mean, negative somewhere: clipped to 0 there.
        raw = 3 * rewards[:, 1] - 2 * truth_mean
        assert (raw < 0).any()
        np.testing.assert_array_equal(blended[:, -1, 1] == 0, raw <= 0)
        np.testing.assert_allclose(
            blended[:, -1, 1], normalize_rewards(np.maximum(raw, 0), normalization), rtol=1e-12
        )


def test_the_grid_analysis_blend_is_the_platform_grid_blend():
    """Grid beta mixes in the others' TRUE valuations, linearly, as the fine-tuned platform."""
    rng = np.random.default_rng(15)
    valuations = rng.uniform(size=(6, 8, 3))  # [B, G, n]
    weights = rng.integers(1, 11, size=(6, 3)).astype(float)
    divergences = rng.uniform(0, 0.2, size=8)
    others_lie = rng.uniform(size=(6, 8, 3))
    betas = np.array([-1.0, 0.0, 0.5, 1.0, 2.5])
    utilities = grid_misreport_utilities(
        valuations, weights, divergences, 2, "beta", betas, reported_valuations=others_lie
    )
    for k, beta in enumerate(betas):
        reported = others_lie.copy()
        own = distorted_valuations(valuations, np.array([1.0, 1.0, beta]), "blend")
        reported[..., 2] = own[..., 2]
        direct = run_grid_affine_maximizer(
            reported, divergences, weights, true_valuations=valuations
        )
        np.testing.assert_array_equal(utilities[:, k], direct.utilities[:, 2])
    mean_of_others = valuations[..., :2].mean(-1)
    np.testing.assert_allclose(own[..., 2], 2.5 * valuations[..., 2] - 1.5 * mean_of_others)


def test_constant_shift_of_a_report_changes_nothing():
    rewards, weights, init = random_games(10, games=10)
    shifted = rewards.copy()
    shifted[:, 1] += 0.3
    for divergence in DIVERGENCES:
        base = run_affine_maximizer(rewards, weights, init, divergence, 0.7)
        moved = run_affine_maximizer(shifted, weights, init, divergence, 0.7, true_rewards=rewards)
        np.testing.assert_allclose(moved.policy, base.policy, atol=1e-12)
        np.testing.assert_allclose(moved.payments, base.payments, atol=1e-10)


# --- grid rule (policy space b) ---------------------------------------------------------------


def test_grid_rule_with_the_exact_policies_reproduces_exact_payments():
    rng = np.random.default_rng(11)
    rewards, weights, init = random_games(11, games=1, groups=3)
    rewards, weights, init = rewards[0], weights[0], init[0]
    for divergence in DIVERGENCES:
        exact = run_affine_maximizer(rewards, weights, init, divergence, 0.4)
        decoys = rng.dirichlet(np.ones(6), size=30)
        policies = np.concatenate(
            [decoys[:10], exact.policy[None], decoys[10:], exact.policies_without]
        )
        valuations, divergences = grid_valuations(policies, rewards, init, divergence, 0.4)
        grid = run_grid_affine_maximizer(valuations, divergences, weights)
        assert grid.choice == 10
        np.testing.assert_allclose(grid.payments, exact.payments, atol=1e-9)
        np.testing.assert_allclose(grid.utilities, exact.utilities, atol=1e-9)


def test_grid_valuations_are_expectations():
    rng = np.random.default_rng(12)
    policies = rng.dirichlet(np.ones(5), size=4)
    rewards = rng.uniform(size=(2, 3, 5))
    init = np.full(5, 0.2)
    valuations, divergences = grid_valuations(policies, rewards, init, "chi2", 2.0)
    assert valuations.shape == (2, 4, 3) and divergences.shape == (4,)
    assert valuations[1, 2, 0] == pytest.approx(policies[2] @ rewards[1, 0])
    assert divergences[3] == pytest.approx(2.0 * ((policies[3] - 0.2) ** 2 / 0.2).sum())


def test_grid_rule_is_truthful_and_individually_rational():
    rng = np.random.default_rng(13)
    rewards, weights, init = random_games(13, games=40, groups=3)
    policies = rng.dirichlet(np.ones(6) * 0.5, size=25)
    valuations, divergences = grid_valuations(policies, rewards, init[0], "kl", 0.3)
    truthful = run_grid_affine_maximizer(valuations, divergences, weights)
    assert np.all(truthful.payments >= -1e-12) and np.all(truthful.utilities >= -1e-12)
    for agent, kind in itertools.product(range(3), ("alpha", "beta")):
        grid = DEVIATIONS[kind]
        utilities = grid_misreport_utilities(valuations, weights, divergences, agent, kind, grid)
        assert np.all(utilities <= truthful.utilities[:, agent, None] + 1e-9)
        free = grid_misreport_utilities(
            valuations, weights, divergences, agent, kind, grid, payment="none"
        )
        truth_index = int(np.argmin(np.abs(grid - 1.0)))
        assert np.all(free.max(-1) >= free[:, truth_index] - 1e-12)
    free = grid_misreport_utilities(
        valuations, weights, divergences, 0, "alpha", [1.0, 3.0], "none"
    )
    assert np.mean(free[:, 1] > free[:, 0] + 1e-9) > 0.1  # inflating pays sometimes, unpaid


# --- the published synthetic game -------------------------------------------------------------


@pytest.mark.parametrize("normalization", ["max", "sum"])
def test_synthetic_game_epsilon_misreport(normalization):
    rewards, weights = synthetic_games(seed=2024, games=300, normalization=normalization)
    assert rewards.shape == (300, 5, 10) and weights.min() >= 1 and weights.max() <= 10
    init = np.full(10, 0.1)
    for divergence in DIVERGENCES:
        effects = epsilon_effects(
            rewards, weights, init, [0.001, 0.01, 0.1], divergence, 1.0, normalization
        )
        valuation, utility = effects.valuation_change, effects.utility_change
        # Raises the group's valuation (= its utility without payments) on average ...
        assert np.all(valuation.mean(axis=(1, 2)) > 0), divergence
        assert np.all(valuation >= -1e-9)
        # ... and with payments never helps and lowers utility on average.
        assert np.all(utility <= 1e-9), divergence
        assert np.all(utility.mean(axis=(1, 2)) < 0), divergence
        if divergence == "kl":  # smooth rule: strict, game by game
            assert np.all(valuation > 0) and np.all(utility < 0)


def test_synthetic_effects_match_direct_runs():
    rewards, weights = synthetic_games(seed=1, games=3, normalization="sum")
    init = np.full(10, 0.1)
    effects = epsilon_effects(rewards, weights, init, [0.1], "chi2", 1.0, "sum")
    for game, agent in itertools.product(range(3), range(5)):
        truth = run_affine_maximizer(rewards[game], weights[game], init, "chi2", 1.0)
        lie = rewards[game].copy()
        favourite = int(np.argmax(lie[agent]))
        lie[agent] -= 0.1 / 10
        lie[agent, favourite] += 0.1
        lied = run_affine_maximizer(
            lie, weights[game], init, "chi2", 1.0, true_rewards=rewards[game]
        )
        assert effects.valuation_change[0, game, agent] == pytest.approx(
            lied.values[agent] - truth.values[agent], abs=1e-12
        )
        assert effects.utility_change[0, game, agent] == pytest.approx(
            lied.utilities[agent] - truth.utilities[agent], abs=1e-12
        )
