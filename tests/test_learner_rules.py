"""Each grid learner's policy and update equal their textbook formulas, written out here.

``tests/test_learners.py`` checks that learners approach the best response; an audit found that
it still passed with Hedge's rate doubled or halved, EXP3 without its uniform mixing, or epsilon
divided by 3. These tests pin the formulas of ``market_sim/market/learners.py`` on small inputs:
N = 3 actions, horizon T = 50, utilities fed through the counterfactual (Hedge) or the realized
utility (bandits).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from market_sim.market.action_grid import ActionGrid
from market_sim.market.learners import EpsilonGreedy, Exp3, Hedge, Ucb1
from market_sim.market.strategies import Feedback
from market_sim.platform.base import CounterfactualValues, Report

GRID = ActionGrid(np.array([0.25, 0.5, 1.0]), np.ones(3))
HORIZON = 50
ACTIONS = 3
# Sums of a few exponentials of O(1) numbers, computed in another order than the code's: a
# relative 1e-12 is far above their rounding (1e-16 a term) and far below any formula change.
RTOL = 1e-12


def feedback(utility: float, counterfactual: list[float] | None = None) -> Feedback:
    """Valuation 1, allocation = the utility, payment 0; the counterfactual's N utilities."""
    values = None
    if counterfactual is not None:
        allocations = np.array(counterfactual)

        def values(reports, allocations=allocations):
            return CounterfactualValues(allocations, np.zeros(len(allocations)))

    return Feedback("q", 1.0, Report(1.0), utility, 0.0, utility, values)


def textbook_softmax(scores: np.ndarray) -> np.ndarray:
    weights = np.array([math.exp(score) for score in scores])
    return weights / weights.sum()


def test_hedge_is_the_softmax_of_summed_utilities_at_the_bound_rate():
    rounds = [[0.2, 0.5, 0.1], [0.4, -0.3, 0.9], [0.0, 0.3, 0.3]]
    hedge = Hedge(GRID, HORIZON)
    rng = np.random.default_rng(0)
    assert hedge.policy().tolist() == [1 / 3] * 3  # no utility seen: uniform
    for utilities in rounds:
        hedge.report(1.0, "q", rng)
        hedge.update(feedback(0.0, utilities))
    rate = math.sqrt(8 * math.log(ACTIONS) / HORIZON)  # eta = sqrt(8 ln N / T)
    spread = 0.9 - (-0.3)  # R_t: the largest minus the smallest utility seen
    summed = np.array(rounds).sum(axis=0)
    np.testing.assert_allclose(hedge.policy(), textbook_softmax(rate / spread * summed), rtol=RTOL)


def test_hedge_with_k_auctions_per_round_adds_their_utilities_once():
    rounds = [[0.2, 0.5, 0.1], [0.4, -0.3, 0.9]]
    one_by_one, batched = Hedge(GRID, HORIZON), Hedge(GRID, HORIZON)
    rng = np.random.default_rng(0)
    for utilities in rounds:
        one_by_one.report(1.0, "q", rng)
        one_by_one.update(feedback(0.0, utilities))
        batched.report(1.0, "q", rng)
    batched.update_round([feedback(0.0, utilities) for utilities in rounds])
    # full information: the same sums, the same range, so the same policy, bit for bit
    assert batched.policy().tolist() == one_by_one.policy().tolist()
    assert batched.rounds == 1 and one_by_one.rounds == 2


def test_exp3_mixes_uniform_exploration_and_adds_importance_weighted_rewards():
    exp3 = Exp3(GRID, HORIZON)
    gamma = min(1.0, math.sqrt(ACTIONS * math.log(ACTIONS) / ((math.e - 1) * HORIZON)))
    assert exp3.exploration == gamma
    rng = np.random.default_rng(3)
    gains = np.zeros(ACTIONS)
    low, high = math.inf, -math.inf
    for utility in (0.2, 0.7, 0.4, 0.7):
        policy = (1 - gamma) * textbook_softmax(gamma / ACTIONS * gains) + gamma / ACTIONS
        np.testing.assert_allclose(exp3.policy(), policy, rtol=RTOL)
        exp3.report(1.0, "q", rng)
        action = exp3.action
        low, high = min(low, utility), max(high, utility)
        reward = (utility - low) / (high - low) if high > low else 0.5  # rescaled to [0, 1]
        gains[action] += reward / policy[action]  # importance weight of the played action
        exp3.update(feedback(utility))
        np.testing.assert_allclose(exp3.estimated_gain, gains, rtol=RTOL)
    assert gains.max() > 1.0  # the rewards were weighted, not just summed


def test_epsilon_greedy_rate_and_policy():
    learner = EpsilonGreedy(GRID, HORIZON)
    epsilon = min(1.0, (ACTIONS * math.log(HORIZON) / HORIZON) ** (1 / 3))
    assert learner.epsilon == pytest.approx(epsilon, rel=RTOL)
    rng = np.random.default_rng(1)
    played = []
    for utility in (0.3, 0.1, 0.6, 0.2):
        learner.report(1.0, "q", rng)
        played.append(learner.action)
        learner.update(feedback(utility))
    means = {}
    for action, utility in zip(played, (0.3, 0.1, 0.6, 0.2), strict=True):
        means.setdefault(action, []).append(utility)
    if len(means) < ACTIONS:  # an untried action goes first
        best = min(set(range(ACTIONS)) - set(means))
    else:
        best = max(range(ACTIONS), key=lambda a: (np.mean(means[a]), -a))
    expected = np.full(ACTIONS, epsilon / ACTIONS)
    expected[best] += 1 - epsilon
    np.testing.assert_allclose(learner.policy(), expected, rtol=RTOL)


def test_ucb1_tries_every_action_then_maximizes_the_upper_confidence_bound():
    learner = Ucb1(GRID, HORIZON)
    rng = np.random.default_rng(0)
    utilities = {0: [0.5, 0.1], 1: [0.45], 2: [0.0]}
    order = []
    for utility in (0.5, 0.45, 0.0):  # untried first, lowest index first
        learner.report(1.0, "q", rng)
        order.append(learner.action)
        learner.update(feedback(utility))
    assert order == [0, 1, 2]
    learner.report(1.0, "q", rng)
    learner.update(feedback(0.1))  # equal widths after one play each: the best mean, action 0
    counts = np.array([len(utilities[a]) for a in range(ACTIONS)])
    assert learner.counts.tolist() == counts.tolist()
    plays = counts.sum()
    spread = 0.5 - 0.0
    means = np.array([np.mean(utilities[a]) for a in range(ACTIONS)])
    bounds = means + math.sqrt(2) * spread * np.sqrt(np.log(plays) / counts)
    assert learner.next_action() == int(np.argmax(bounds))
    assert learner.policy().tolist() == np.eye(ACTIONS)[int(np.argmax(bounds))].tolist()
