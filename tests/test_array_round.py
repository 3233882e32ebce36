"""The vectorized no-LM round: array learners equal the scalar ones, the market path agrees.

The array path draws its randomness in blocks (documented in ``market_sim.market.array_round``),
so its runs are compared with the generic path in distribution, and for determinism; every
deterministic piece (auction rules, counterfactuals, learner updates) is compared exactly.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from market_sim.cli import main as cli_main
from market_sim.market import array_replicates, array_round
from market_sim.market.action_grid import ActionGrid, ReportBounds
from market_sim.market.array_learners import BidderRound, array_strategy, sample_indices
from market_sim.market.array_replicates import precomputed
from market_sim.market.array_round import counterfactual_utilities
from market_sim.market.learners import EpsilonGreedy, Exp3, Hedge, Ucb1, sample_index
from market_sim.market.model import MarketModel, step_in_lockstep
from market_sim.market.strategies import Feedback
from market_sim.mechanisms.slot_auctions_array import bidder_outcome, rank_slot_auction
from market_sim.platform.base import Report, ReportBatch
from market_sim.platform.slot_auction import SlotAuctionCounterfactual
from market_sim.plugins import build_platform
from market_sim.run import run_replicates, run_scenario
from market_sim.scenario import scenario_from_dict

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
RATES = np.array([0.7, 0.4])
GRID = ActionGrid.from_params(
    {"multiplier_min": 0.0, "multiplier_max": 1.5, "multiplier_count": 7, "distortion_count": 1},
    ReportBounds(0.0, 1.5),
)


def round_of_auctions(seed, auctions=40, bidders=3, kind="gsp"):
    """Bids of the others, tie-break priorities and valuations of bidder 0 over K auctions."""
    rng = np.random.default_rng(seed)
    bids = np.round(rng.random((auctions, bidders)) * 8) / 8  # ties happen
    priority = np.argsort(rng.random((auctions, bidders)), axis=1).astype(np.float64)
    valuations = rng.random(auctions)
    return bids, priority, valuations, kind


def feedback_of(bids, priority, valuations, kind, actions, learner):
    """Bidder 0's K feedbacks as the generic path builds them (scalar counterfactuals)."""
    feedbacks, utilities = [], []
    for k, action in enumerate(actions):
        own = bids[k].copy()
        own[0] = GRID.multipliers[action] * valuations[k]
        engine = SlotAuctionCounterfactual(own, priority[k], RATES, kind)
        values = engine.evaluate(0, ReportBatch(np.array([own[0]]), np.ones(1)))
        utility = float(values.utilities(valuations[k])[0])
        utilities.append(utility)

        def counterfactual(reports, engine=engine):
            return engine.evaluate(0, reports)

        feedbacks.append(
            Feedback(
                "q",
                float(valuations[k]),
                GRID.report(action, valuations[k]),
                float(values.allocations[0]),
                float(values.payments[0]),
                utility,
                counterfactual,
            )
        )
    return feedbacks, np.array(utilities)


def array_counterfactual(bids, priority, valuations, kind):
    def utilities(candidates):
        allocations, payments = bidder_outcome(
            bids[:, 1:], priority[:, 1:], priority[:, 0], candidates, RATES, kind
        )
        return valuations[:, None] * allocations - payments

    return utilities


LEARNERS = {
    "hedge": lambda: Hedge(GRID, 500),
    "exp3": lambda: Exp3(GRID, 500),
    "epsilon_greedy": lambda: EpsilonGreedy(GRID, 500, 0.3),
    "ucb1": lambda: Ucb1(GRID, 500),
}
STATE = {
    "hedge": ("cumulative",),
    "exp3": ("estimated_gain",),
    "epsilon_greedy": ("counts", "sums"),
    "ucb1": ("counts", "sums"),
}


@pytest.mark.parametrize("kind", ["first_price", "gsp", "vcg"])
@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_array_learners_update_exactly_like_the_scalar_learner(name, kind):
    scalar = LEARNERS[name]()
    vector = array_strategy(copy.deepcopy(scalar))
    rng = np.random.default_rng(7)
    for round_index in range(5):
        bids, priority, valuations, _ = round_of_auctions(round_index, kind=kind)
        actions, own_bids, _ = vector.reports(valuations, rng)
        np.testing.assert_array_equal(own_bids, GRID.multipliers[actions] * valuations)
        for action in actions:  # the scalar learner "played" the same actions
            scalar.report(1.0, "q", _FixedChoice(scalar, action))
        feedbacks, utilities = feedback_of(bids, priority, valuations, kind, actions, scalar)
        scalar.update_round(feedbacks)
        played = bids.copy()
        played[:, 0] = own_bids
        vector.learn(
            BidderRound(
                valuations,
                actions,
                utilities,
                array_counterfactual(played, priority, valuations, kind),
            )
        )
        for field in STATE[name]:
            # Same operations in the same order: bit-equal.
            np.testing.assert_array_equal(getattr(vector.strategy, field), getattr(scalar, field))
        assert vector.strategy.range.spread == scalar.range.spread
        assert vector.strategy.rounds == scalar.rounds == round_index + 1
        np.testing.assert_array_equal(vector.strategy.policy(), scalar.policy())


class _FixedChoice:
    """Makes ``scalar.report`` play a given action: ``choose`` runs (keeping its side effects,
    such as EXP3's remembered policy) on a throwaway generator, then the action is replaced."""

    def __init__(self, learner, action):
        self.learner, self.action = learner, action
        learner.choose = self.choose

    def choose(self, rng):
        del self.learner.choose
        self.learner.choose(np.random.default_rng(0))
        return self.action


def test_hedge_and_exp3_actions_are_the_scalar_draws_of_the_same_uniforms():
    policy = np.random.default_rng(1).dirichlet(np.ones(GRID.size))
    block = sample_indices(policy, np.random.default_rng(5).random(200))
    scalar_rng = np.random.default_rng(5)
    np.testing.assert_array_equal(block, [sample_index(policy, scalar_rng) for _ in range(200)])


# --- the vectorized round in the market ---


def market_scenario(
    model_dir, auctions_per_round, rounds, strategies, kind="second_price", **extra
):
    """A slot-auction market on the test LM with a cached reply; strategies one per bidder."""
    mechanism = {"kind": kind, "max_new_tokens": 4, "reply": "cached"}
    mechanism.update(extra.pop("mechanism", {}))
    return scenario_from_dict(
        {
            "name": "array",
            "seed": extra.pop("seed", 3),
            "rounds": rounds,
            "auctions_per_round": auctions_per_round,
            "model": {"path": str(model_dir), "device": "cpu"},
            "mechanism": mechanism,
            "queries": {"items": ["vacation in Hawaii", "family trip to Maui"]},
            "regret": extra.pop("regret", {"enabled": False}),
            "advertisers": [
                {
                    "name": f"Bidder {i}",
                    "context": f"Bidder {i}: flights.",
                    "valuation": extra.get("valuations", [UNIFORM] * len(strategies))[i],
                    "strategy": strategy,
                }
                for i, strategy in enumerate(strategies)
            ],
        }
    )


UNIFORM = {"dist": "uniform", "low": 0.0, "high": 1.0}
HEDGE = {"kind": "hedge", "multiplier_max": 1.5, "multiplier_count": 31}


def run_market(scenario, lm, vectorize):
    """Step a market to the end; its two tables (either path's, typed by the record schema)."""
    market = MarketModel(
        scenario,
        build_platform(scenario.mechanism, lm, scenario.queries.items),
        "run",
        vectorize=vectorize,
    )
    for _ in range(scenario.rounds):
        market.step()
    return market.tables()


@pytest.mark.parametrize(
    ("change", "applies"),
    [
        ({}, True),
        ({"auctions_per_round": 1}, False),
        ({"mechanism": {"reply": "sampled"}}, False),
        ({"strategy": {"kind": "policy_gradient"}}, False),
        ({"strategy": {**HEDGE, "contextual": True}}, False),
        ({"strategy": {"kind": "exp3"}}, True),
    ],
)
def test_the_array_path_is_taken_exactly_where_it_applies(
    random_lm, random_model_dir, change, applies
):
    strategy = change.get("strategy", {"kind": "truthful"})
    scenario = market_scenario(
        random_model_dir,
        change.get("auctions_per_round", 8),
        2,
        [strategy] * 2,
        mechanism=change.get("mechanism", {}),
    )
    platform = build_platform(scenario.mechanism, random_lm, scenario.queries.items)
    market = MarketModel(scenario, platform, "run")
    assert (market.array_round is not None) is applies
    assert MarketModel(scenario, platform, "run", vectorize=False).array_round is None


def test_without_random_draws_both_paths_give_the_same_outcomes(random_lm, random_model_dir):
    # Fixed distinct valuations and fixed strategies, queries cycling: nothing random matters
    # except tie-breaks (there are no ties) and the reply seed (texts are not compared).
    fixed = [{"dist": "fixed", "value": v} for v in (0.9, 0.6, 0.3)]
    strategies = [{"kind": "fixed", "bid_multiplier": m} for m in (0.7, 1.0, 1.2)]
    scenario = market_scenario(
        random_model_dir,
        4,
        6,
        strategies,
        kind="gsp",
        valuations=fixed,
        mechanism={"click_through_rates": [0.6, 0.3]},
        regret={"every": 2},
    )
    generic_rounds, generic_agents = run_market(scenario, random_lm, vectorize=False)
    array_rounds, array_agents = run_market(scenario, random_lm, vectorize=True)
    assert array_rounds.columns == generic_rounds.columns
    assert array_agents.columns == generic_agents.columns
    assert array_agents.schema == generic_agents.schema
    same = ["round", "auction", "query", "revenue", "advertiser_value", "slots_filled"]
    assert array_rounds.select(same).equals(generic_rounds.select(same))
    drop = ["mentioned"]  # depends on the reply text, which depends on the reply seed
    assert array_agents.drop(drop).equals(generic_agents.drop(drop))


@pytest.mark.parametrize(
    "report",
    [(float("nan"), 1.0), (float("inf"), 1.0), (-1.0, 1.0), (0.5, float("nan")), (0.5, 0.0)],
)
def test_a_strategy_reporting_a_non_finite_or_negative_bid_is_named(
    random_lm, random_model_dir, report
):
    """Found by an audit: the generic path let a NaN or infinite bid through (``bid < 0`` is
    false for NaN), where the array path refused it."""

    class Broken:
        def report(self, valuation, query, rng):
            return Report(*report)

    scenario = market_scenario(random_model_dir, 1, 2, [{"kind": "truthful"}] * 2)
    market = MarketModel(
        scenario,
        build_platform(scenario.mechanism, random_lm, scenario.queries.items),
        "run",
        vectorize=False,
    )
    market.agents[0].strategy = Broken()
    with pytest.raises(ValueError, match="'Bidder 0': strategy produced an invalid Report"):
        market.step()


@pytest.mark.parametrize("vectorize", [False, True])
def test_first_price_regret_is_the_closed_form_on_both_paths(
    random_lm, random_model_dir, vectorize
):
    """One first-price slot: the best deviation wins just above the highest other bid o, so
    regret = max(v - o, 0) (truthful wins at price v or loses: utility 0). The search finds it
    through the rivals' bids (jump bids); its grid alone stopped up to a zoom cell short."""
    strategies = [{"kind": "fixed", "bid_multiplier": m} for m in (0.7, 1.0, 1.2)]
    scenario = market_scenario(
        random_model_dir, 4, 6, strategies, kind="first_price", regret={"every": 1}
    )
    agents = run_market(scenario, random_lm, vectorize)[1]
    bids = agents["bid"].to_numpy().reshape(-1, 3)
    values = agents["valuation"].to_numpy().reshape(-1, 3)
    others = np.stack([np.delete(bids, i, axis=1).max(axis=1) for i in range(3)], axis=1)
    expected = np.maximum(values - others, 0.0)
    # The search's bid is the next float above o (or o itself where the tie-break wins): one
    # ulp of a bid below 1.2, far inside 1e-12.
    np.testing.assert_allclose(
        agents["regret"].to_numpy().reshape(-1, 3), expected, rtol=0, atol=1e-12
    )
    assert (expected > 0.01).sum() >= 5  # the closed form is not trivially 0 here


def test_both_paths_agree_in_distribution_on_textbook_revenue(random_lm, random_model_dir):
    scenario = market_scenario(random_model_dir, 64, 50, [{"kind": "truthful"}] * 4)
    means, errors = [], []
    for vectorize in (False, True):
        revenue = run_market(scenario, random_lm, vectorize)[0]["revenue"].to_numpy()
        means.append(revenue.mean())
        errors.append(revenue.std() / np.sqrt(len(revenue)))
        assert abs(means[-1] - 3 / 5) < 4 * errors[-1]  # (n-1)/(n+1), n = 4
    assert abs(means[0] - means[1]) < 4 * np.hypot(*errors)
    assert means[0] != means[1]  # different draws (block order): not the same numbers


def test_revenue_is_the_sum_of_payments_in_every_auction(random_lm, random_model_dir):
    scenario = market_scenario(
        random_model_dir,
        32,
        20,
        [HEDGE] * 3,
        kind="vcg",
        mechanism={"click_through_rates": [0.6, 0.3]},
    )
    rounds, agents = run_market(scenario, random_lm, vectorize=True)
    paid = agents.group_by("round", "auction").agg(pl.col("payment").sum())
    joined = rounds.join(paid, on=["round", "auction"])
    assert joined.height == rounds.height == 32 * 20
    # Sums of 3 payments in possibly different orders: a few ulps of the revenue.
    np.testing.assert_allclose(joined["payment"], joined["revenue"], rtol=1e-12, atol=1e-15)
    assert (agents["payment"] <= agents["bid"] * 0.6 + 1e-12).all()  # never above own bid x CTR


def test_market_sim_run_with_k_above_one_is_deterministic(tmp_path):
    scenario = str(SCENARIOS / "classic_auctions.toml")
    outputs = []
    for name, k in (("a", 16), ("b", 16), ("c", 32)):
        out = tmp_path / name
        argv = ["run", scenario, "--rounds", "12", "--out", str(out)]
        assert cli_main([*argv, "--set", f"auctions_per_round={k}"]) == 0
        outputs.append(out)
    for table in ("rounds.parquet", "agents.parquet"):
        first, again, other = ((out / table).read_bytes() for out in outputs)
        assert first == again
        assert first != other
    rounds = pl.read_parquet(outputs[0] / "rounds.parquet")
    assert rounds.height == 12 * 16 and set(rounds["auction"]) == set(range(16))
    agents = pl.read_parquet(outputs[0] / "agents.parquet")
    assert agents["regret"].is_not_null().sum() == 2 * 16 * 4  # rounds 0 and 10, every auction


@pytest.mark.parametrize("kind", ["first_price", "vcg"])
def test_replicates_of_an_array_market_equal_separate_runs(
    random_lm, random_model_dir, kind, tmp_path, monkeypatch
):
    # Replicates in lockstep share one [R K, n] auction call and one [R K, A] counterfactual
    # call per Hedge advertiser; rows are independent, so every record, regret and final
    # learner state must equal a separate run's bit for bit (no tolerance).
    strategies = [
        HEDGE,
        {"kind": "exp3", "multiplier_max": 1.5, "multiplier_count": 7},
        HEDGE,
        {"kind": "fixed", "bid_multiplier": 0.7},
    ]
    scenario = market_scenario(
        random_model_dir,
        16,
        5,
        strategies,
        kind=kind,
        mechanism={"click_through_rates": [0.6, 0.3]},
        regret={"every": 2},
    )
    seeds = [4, 9, 11]
    folders = [tmp_path / f"together{seed}" for seed in seeds]
    stacked_shapes = []

    def counting(bids, *args):
        stacked_shapes.append(bids.shape)
        return rank_slot_auction(bids, *args)

    stacked_utilities = []

    def counting_utilities(platform, agent, valuations, bids, priority, candidates):
        stacked_utilities.append((agent, candidates.shape))
        return counterfactual_utilities(platform, agent, valuations, bids, priority, candidates)

    monkeypatch.setattr(array_replicates, "rank_slot_auction", counting)
    monkeypatch.setattr(array_replicates, "counterfactual_utilities", counting_utilities)
    direct_calls = []

    def direct_utilities(*args):
        direct_calls.append(args[-1].shape)
        return counterfactual_utilities(*args)

    monkeypatch.setattr(array_round, "counterfactual_utilities", direct_utilities)
    together = run_replicates(scenario, seeds, folders, lm=random_lm)
    # Every Hedge update read the stacked utilities ([R K, 31]); the direct calls are the regret
    # search's, per replicate: its coarse grid (truthful, played, 11 multipliers, 3 other bids
    # and 0 with the next float above each) and 3 zooms of 5, for 4 advertisers on rounds 0, 2
    # and 4.
    assert sorted(direct_calls) == sorted([(16, 21), (16, 5), (16, 5), (16, 5)] * 3 * 4 * 3)
    assert stacked_shapes == [(3 * 16, 4)] * 5  # one [R K, n] call per round
    # One [R K, A] call per Hedge advertiser (0 and 2) and round, none for EXP3 or fixed.
    assert stacked_utilities == [(0, (3 * 16, 31)), (2, (3 * 16, 31))] * 5
    for seed, result, folder in zip(seeds, together, folders, strict=True):
        alone_folder = tmp_path / f"alone{seed}"
        alone = run_scenario(dataclasses.replace(scenario, seed=seed), alone_folder, lm=random_lm)
        assert result.rounds.equals(alone.rounds)
        assert result.agents.equals(alone.agents)
        learners = "learners.json"
        assert (folder / learners).read_bytes() == (alone_folder / learners).read_bytes()
        assert result.rounds.height == 16 * 5
        assert result.agents["regret"].is_not_null().sum() == 3 * 16 * 4  # rounds 0, 2, 4
    first, second = (result.agents["bid"] for result in together[:2])
    assert not first.equals(second)  # the replicates did not all run one seed


def test_markets_at_different_rounds_are_refused_in_lockstep(random_lm, random_model_dir):
    scenario = market_scenario(random_model_dir, 4, 3, [HEDGE] * 2)
    markets = [
        MarketModel(scenario, build_platform(scenario.mechanism, random_lm), "run")
        for _ in range(2)
    ]
    markets[0].step()
    with pytest.raises(ValueError, match=r"same round, got \[1, 0\]"):
        step_in_lockstep(markets)


def test_precomputed_counterfactuals_answer_other_bids_directly():
    expected = np.array([[0.5, 1.0]])
    direct_calls = []

    def direct(candidates):
        direct_calls.append(candidates)
        return -candidates

    utilities = precomputed(expected, np.array([[7.0, 8.0]]), direct)
    assert utilities(expected.copy()).tolist() == [[7.0, 8.0]] and not direct_calls
    assert utilities(np.array([[0.5, 2.0]])).tolist() == [[-0.5, -2.0]]
    assert len(direct_calls) == 1


def test_stepping_past_the_scenarios_rounds_grows_the_record_buffers(random_lm, random_model_dir):
    # The array round preallocates its records for scenario.rounds and doubles them beyond;
    # a fixed strategy's records do not depend on the horizon, so 7 rounds stepped on a
    # 3-round scenario must equal a 7-round scenario's, row for row (the run id aside).
    fixed = {"kind": "fixed", "bid_multiplier": 0.8}
    short = market_scenario(random_model_dir, 16, 3, [fixed, fixed, {"kind": "truthful"}])
    long = dataclasses.replace(short, rounds=7)
    stepped = MarketModel(short, build_platform(short.mechanism, random_lm), "run")
    assert stepped.array_round is not None
    for _ in range(7):
        stepped.step()
    for grown, reference in zip(stepped.tables(), run_market(long, random_lm, True), strict=True):
        assert grown.height == reference.height == 7 * 16 * (3 if "agent" in grown.columns else 1)
        for column in reference.columns:
            if column != "run_id":
                assert grown[column].equals(reference[column]), column


def test_replicates_whose_auctions_together_exceed_the_bound_are_refused_before_any_work(
    random_model_dir,
):
    # 4096 x 2441 = 9,998,336 auctions fit one run; 2 replicates in one process do not
    scenario = market_scenario(random_model_dir, 4096, 2441, [HEDGE, HEDGE])
    with pytest.raises(ValueError, match="2 replicates x 9,998,336 auctions = 19,996,672"):
        run_replicates(scenario, [0, 1], lm=object())  # refused before the model is touched
