"""Ad-slot baselines in the market: textbook revenue, learners shading toward (n-1)/n v."""

import numpy as np
import polars as pl

from market_sim.market.model import MarketModel
from market_sim.plugins import build_platform
from market_sim.run import run_scenario
from market_sim.scenario import scenario_from_dict


def classic_scenario(model_dir, kind, bidders, strategy, rounds, auctions_per_round=1, **mechanism):
    return scenario_from_dict(
        {
            "name": "classic",
            "seed": 1,
            "rounds": rounds,
            "auctions_per_round": auctions_per_round,
            "model": {"path": str(model_dir), "device": "cpu"},
            "mechanism": {"kind": kind, "max_new_tokens": 4, "reply": "cached", **mechanism},
            "queries": {"items": ["vacation in Hawaii", "family trip to Maui"]},
            "regret": {"every": 50},
            "advertisers": [
                {
                    "name": f"Bidder {i}",
                    "context": f"Bidder {i}: flights.",
                    "valuation": {"dist": "uniform", "low": 0.0, "high": 1.0},
                    "strategy": strategy,
                }
                for i in range(bidders)
            ],
        }
    )


def test_truthful_second_price_revenue_and_conservation(random_lm, random_model_dir):
    scenario = classic_scenario(random_model_dir, "second_price", 4, {"kind": "truthful"}, 4000)
    result = run_scenario(scenario, lm=random_lm)
    revenue = result.rounds["revenue"].to_numpy()
    assert abs(revenue.mean() - 3 / 5) < 4 * revenue.std() / np.sqrt(len(revenue))
    paid = result.agents.group_by("round").agg(pl.col("payment").sum()).sort("round")
    np.testing.assert_allclose(paid["payment"], result.rounds.sort("round")["revenue"])
    assert result.summary["regret_max"] == 0.0 and result.summary["ir_violation_rate"] == 0.0
    n_tokens = result.rounds["n_tokens"] + result.rounds["stopped_at_eos"]
    assert (result.rounds["user_value"] == n_tokens).all()


def test_first_price_learners_shade_toward_the_equilibrium(random_lm, random_model_dir):
    strategy = {"kind": "hedge", "multiplier_max": 1.5, "multiplier_count": 31}
    scenario = classic_scenario(random_model_dir, "first_price", 2, strategy, 3000)
    summary = run_scenario(scenario, lm=random_lm).summary
    # symmetric equilibrium bid (n - 1) / n v = 0.5 v; truthful bidding earns nothing
    assert 0.4 < summary["bid_ratio_final"] < 0.65
    assert summary["regret_mean"] > 0.01


def test_first_price_learners_shade_toward_the_equilibrium_on_the_array_path(
    random_lm, random_model_dir
):
    strategy = {"kind": "hedge", "multiplier_max": 1.5, "multiplier_count": 31}
    scenario = classic_scenario(random_model_dir, "first_price", 2, strategy, 100, 30)
    platform = build_platform(scenario.mechanism, random_lm, scenario.queries.items)
    assert MarketModel(scenario, platform, "run").array_round is not None  # K > 1, cached reply
    summary = run_scenario(scenario, lm=random_lm).summary
    # the same 3000 auctions as above, 30 per round: still near (n - 1) / n v = 0.5 v
    assert 0.4 < summary["bid_ratio_final"] < 0.65
    assert summary["regret_mean"] > 0.01


def test_slot_value_scales_allocations_and_payments(random_lm, random_model_dir):
    base = classic_scenario(random_model_dir, "gsp", 3, {"kind": "truthful"}, 20)
    scaled = classic_scenario(random_model_dir, "gsp", 3, {"kind": "truthful"}, 20, slot_value=24.0)
    plain = run_scenario(base, lm=random_lm).agents
    big = run_scenario(scaled, lm=random_lm).agents
    np.testing.assert_allclose(big["allocation"], 24 * plain["allocation"])
    np.testing.assert_allclose(big["payment"], 24 * plain["payment"])
