"""Learners find the best response in a known environment, reproducibly, with rates from T."""

import math

import numpy as np
import pytest

from market_sim.market.learners import Contextual, Hedge
from market_sim.market.strategies import Feedback, StrategySetup
from market_sim.market.strategy_registry import make_strategy
from market_sim.platform.base import ReportSpace
from market_sim.platform.slot_auction import SlotAuctionCounterfactual
from market_sim.scenario import StrategyConfig

BID_ONLY = ReportSpace(None)


def play_first_price(strategy, rounds, seed, valuation=1.0, queries=("q",), fixed_bids=None):
    """Play a one-slot first-price auction against a competitor bidding U[0, 1] each round
    (or a fixed bid per query), ties going to the competitor.

    Expected utility of multiplier m at valuation 1 is m (1 - m): best response m = 0.5.
    Returns the multipliers played.
    """
    rng = np.random.default_rng(seed)
    played = []
    for t in range(rounds):
        query = queries[t % len(queries)]
        report = strategy.report(valuation, query, rng)
        draw = rng.random()
        competitor = fixed_bids[query] if fixed_bids else draw
        engine = SlotAuctionCounterfactual(
            np.array([report.bid, competitor]), np.array([0.0, 1.0]), np.array([1.0]), "first_price"
        )
        values = engine.evaluate(0, [report])
        allocation, payment = float(values.allocations[0]), float(values.payments[0])
        strategy.update(
            Feedback(
                query,
                valuation,
                report,
                allocation,
                payment,
                valuation * allocation - payment,
                lambda reports, engine=engine: engine.evaluate(0, reports),
            )
        )
        played.append(report.bid / valuation)
    return np.array(played)


def build(kind, rounds, **params):
    config = StrategyConfig(kind=kind, params=params)
    setup = StrategySetup(horizon=rounds, report_space=BID_ONLY)
    return make_strategy(kind, config.params, setup)


@pytest.mark.parametrize(
    ("kind", "rounds", "tolerance"),
    [
        ("hedge", 2000, 0.005),
        ("exp3", 6000, 0.05),
        ("epsilon_greedy", 4000, 0.05),
        ("ucb1", 4000, 0.05),
        ("policy_gradient", 4000, 0.02),
    ],
)
def test_learners_approach_the_best_response(kind, rounds, tolerance):
    strategy = build(kind, rounds, multiplier_max=1.0, multiplier_count=21)
    played = play_first_price(strategy, rounds, seed=1)
    final = played[-rounds // 5 :]
    expected_utility = final * (1 - final)  # the best response earns 0.25, uniform play 1/6
    assert expected_utility.mean() > 0.25 - tolerance
    assert abs(final.mean() - 0.5) < 0.1
    early = played[: rounds // 20]
    assert (early * (1 - early)).mean() < expected_utility.mean() or kind == "hedge"


@pytest.mark.parametrize("kind", ["hedge", "exp3", "epsilon_greedy", "ucb1", "policy_gradient"])
def test_learning_is_reproducible_from_the_seed(kind):
    first = play_first_price(build(kind, 300), 300, seed=4)
    again = play_first_price(build(kind, 300), 300, seed=4)
    other = play_first_price(build(kind, 300), 300, seed=5)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_rates_come_from_the_horizon():
    hedge = build("hedge", 400, multiplier_count=21)
    assert hedge.learning_rate == pytest.approx(math.sqrt(8 * math.log(21) / 400))
    exp3 = build("exp3", 400, multiplier_count=21)
    assert exp3.exploration == pytest.approx(
        min(1, math.sqrt(21 * math.log(21) / ((math.e - 1) * 400)))
    )
    greedy = build("epsilon_greedy", 400, multiplier_count=21)
    assert greedy.epsilon == pytest.approx((21 * math.log(400) / 400) ** (1 / 3))
    assert build("hedge", 400, learning_rate=0.3).learning_rate == 0.3
    contextual = make_strategy(
        "hedge",
        StrategyConfig("hedge", {"contextual": True}).params,
        StrategySetup(horizon=400, contexts=4, report_space=BID_ONLY),
    )
    assert isinstance(contextual, Contextual)
    assert contextual.current.learning_rate == pytest.approx(math.sqrt(8 * math.log(21) / 100))


@pytest.mark.parametrize("auctions_per_round", [1, 2, 4, 8, 64])
def test_contextual_policy_gradient_rate_counts_each_query_learners_updates(
    auctions_per_round,
):
    # 4 queries in turn over 96 rounds: a query's learner steps once per round that draws it
    # (every round once K >= 4, every 4 / K-th round below), whatever K does to the horizon.
    queries, rounds = ["a", "b", "c", "d"], 96
    drawn = [
        {queries[(r * auctions_per_round + k) % 4] for k in range(auctions_per_round)}
        for r in range(rounds)
    ]
    updates = sum("a" in round_queries for round_queries in drawn)
    setup = StrategySetup(
        horizon=rounds * auctions_per_round,
        auctions_per_round=auctions_per_round,
        contexts=4,
        report_space=BID_ONLY,
    )
    config = StrategyConfig("policy_gradient", {"contextual": True})
    strategy = make_strategy("policy_gradient", config.params, setup)
    strategy.report(1.0, "a", np.random.default_rng(0))
    assert strategy.learners["a"].learning_rate == pytest.approx(1 / math.sqrt(updates))
    plain = make_strategy("policy_gradient", StrategyConfig("policy_gradient", {}).params, setup)
    assert plain.learning_rate == pytest.approx(1 / math.sqrt(rounds))  # one step per round


@pytest.mark.parametrize("auctions_per_round", [2, 4, 16])
def test_contextual_policy_gradient_rate_with_sampled_queries(auctions_per_round):
    # Queries drawn uniformly: count the rounds that hold query "a" over 4,000 rounds. The
    # count's relative standard deviation is under 1%, half that on its square root, so the
    # rate matches 1 / sqrt(count) within 2%.
    rounds, queries = 4_000, ["a", "b", "c", "d"]
    rng = np.random.default_rng(7)
    draws = rng.integers(len(queries), size=(rounds, auctions_per_round))
    updates = int((draws == 0).any(axis=1).sum())
    setup = StrategySetup(
        horizon=rounds * auctions_per_round,
        auctions_per_round=auctions_per_round,
        contexts=4,
        query_order="sample",
        report_space=BID_ONLY,
    )
    config = StrategyConfig("policy_gradient", {"contextual": True})
    strategy = make_strategy("policy_gradient", config.params, setup)
    strategy.report(1.0, "a", np.random.default_rng(0))
    assert strategy.learners["a"].learning_rate == pytest.approx(1 / math.sqrt(updates), rel=0.02)


def test_one_auction_per_round_is_one_auction_per_update_exactly():
    from market_sim.market.learners import query_auctions_per_round

    for order in ("cycle", "sample"):
        for contexts in (1, 3, 5, 7):
            setup = StrategySetup(contexts=contexts, query_order=order)
            assert query_auctions_per_round(setup) == 1.0  # (1/3) / (1 - 2/3) is not


def test_contextual_learner_learns_a_response_per_query():
    # The competitor bids 0.12 on one query and 0.72 on the other: per query the best response
    # is the next grid point up; one multiplier for both queries does best at 0.15.
    competitor = {"cheap": 0.12, "dear": 0.72}
    contextual = build("hedge", 2000, contextual=True, multiplier_max=1.0, multiplier_count=21)
    plain = build("hedge", 2000, multiplier_max=1.0, multiplier_count=21)
    for strategy in (contextual, plain):
        play_first_price(strategy, 2000, seed=2, queries=tuple(competitor), fixed_bids=competitor)
    per_query = {q: contextual.learners[q].state()["mean_multiplier"] for q in competitor}
    assert per_query["cheap"] == pytest.approx(0.15, abs=0.02)
    assert per_query["dear"] == pytest.approx(0.75, abs=0.02)
    assert plain.state()["mean_multiplier"] == pytest.approx(0.15, abs=0.02)
    assert set(contextual.snapshot()["contexts"]) == set(competitor)


def test_hedge_refuses_bandit_feedback_and_bad_spaces():
    hedge = build("hedge", 10)
    report = hedge.report(1.0, "q", np.random.default_rng(0))
    with pytest.raises(ValueError, match="full-information"):
        hedge.update(Feedback("q", 1.0, report, 1.0, 0.5, 0.5))
    bid_only = build("exp3", 10, distortion_count=5)  # no distortion on a bid-only mechanism
    assert bid_only.grid.size == 21 and set(bid_only.grid.distortions) == {1.0}
    with pytest.raises(ValueError, match=r"strategy.distortion: the mechanism reads no"):
        build("fixed", 10, distortion=2.0)
    with pytest.raises(ValueError, match="multiplier_max must exceed"):
        build("ucb1", 10, multiplier_min=1.0, multiplier_max=0.5)


def test_joint_grid_covers_multiplier_and_distortion():
    setup = StrategySetup(horizon=10, report_space=ReportSpace("distortion", 0.25, 4.0))
    hedge = make_strategy(
        "hedge",
        StrategyConfig("hedge", {"distortion_count": 5, "multiplier_count": 3}).params,
        setup,
    )
    assert isinstance(hedge, Hedge)
    np.testing.assert_allclose(np.unique(hedge.grid.distortions), [0.25, 0.5, 1.0, 2.0, 4.0])
    np.testing.assert_allclose(np.unique(hedge.grid.multipliers), [0.0, 1.0, 2.0])
    assert hedge.grid.size == 15
    snapshot = hedge.snapshot()
    assert snapshot["kind"] == "hedge" and len(snapshot["policy"]) == 15


@pytest.mark.parametrize("kind", ["epsilon_greedy", "ucb1"])
def test_recorded_policy_is_the_distribution_the_learner_draws_from(kind):
    """Found by an audit: both recorded a one-hot on the best empirical mean, ignoring
    epsilon-greedy's exploration and UCB1's bonus (mean_multiplier 0.30 while they played 0.68
    and 0.56 on average)."""
    strategy = build(kind, 400)
    play_first_price(strategy, 200, seed=5)
    learner = strategy.learner if hasattr(strategy, "learner") else strategy
    policy = learner.policy()
    assert policy.sum() == pytest.approx(1.0, rel=1e-12)
    rng = np.random.default_rng(11)
    draws = np.array([learner.choose(rng) for _ in range(20_000)])
    frequencies = np.bincount(draws, minlength=learner.size) / draws.size
    # 20,000 draws: a frequency's standard error is at most 0.0035, so 0.015 is over 4 of them.
    assert np.abs(frequencies - policy).max() < 0.015
    state = learner.state()
    assert state["mean_multiplier"] == pytest.approx(policy @ learner.grid.multipliers, rel=1e-12)
    if kind == "epsilon_greedy":
        top = 1 - learner.epsilon + learner.epsilon / learner.size
        assert state["top_probability"] == pytest.approx(top, rel=1e-12)
        assert learner.epsilon > 0.1  # so the check above differs from the old one-hot's 1
    else:
        assert state["top_probability"] == 1.0 and policy[learner.next_action()] == 1.0


def test_policy_gradient_spread_can_grow_again_from_its_floor():
    """Found by an audit: the floor was a clamp inside the loss, which passes no gradient below
    it, so a spread that had stepped under 0.02 stayed there however much spreading paid."""
    from market_sim.market.action_grid import ReportBounds
    from market_sim.market.learners import MIN_STD, PolicyGradient

    learner = PolicyGradient(ReportBounds(0.0, 10.0), horizon=500, learning_rate=0.2)
    rng = np.random.default_rng(0)

    def play(rounds, utility):
        for _ in range(rounds):
            report = learner.report(1.0, "q", rng)
            log_bid = math.log(report.bid)
            learner.update(Feedback("q", 1.0, report, 0.0, 0.0, utility(log_bid)))

    play(300, lambda x: -abs(x))  # concentrating pays: the spread shrinks onto the floor
    assert learner.state()["log_std"] == pytest.approx(MIN_STD, rel=1e-12)
    play(200, lambda x: x * x)  # spreading pays: the spread must be able to leave the floor
    assert learner.state()["log_std"] > 2 * MIN_STD
    with pytest.raises(ValueError, match="initial_std: must be at least 0.02"):
        PolicyGradient(ReportBounds(0.0, 10.0), horizon=10, initial_std=0.015)


def test_a_grid_point_an_ulp_from_one_is_exactly_truthful():
    """Found by an audit: linspace(0.1, 2.0, 20)[9] is 0.9999999999999999, so that learner's
    truthful action did not count as truthful."""
    from market_sim.market.action_grid import ActionGrid, ReportBounds

    assert np.linspace(0.1, 2.0, 20)[9] != 1.0  # the premise
    params = {"multiplier_count": 20, "distortion_count": 5}
    grid = ActionGrid.from_params(params, ReportBounds(0.1, 2.0, 0.25, 4.0))
    truthful = (grid.multipliers == 1.0) & (grid.distortions == 1.0)
    assert truthful.sum() == 1
    report = grid.report(int(np.argmax(truthful)), 0.7)
    assert (report.bid, report.report_scale) == (0.7, 1.0)
    others = np.sort(np.unique(grid.multipliers))
    assert np.array_equal(
        others[others != 1.0], np.linspace(0.1, 2.0, 20)[[*range(9), *range(10, 20)]]
    )
