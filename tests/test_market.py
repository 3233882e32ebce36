"""The market end to end on a small local model: conservation, values, determinism, contract."""

import dataclasses
import json

import numpy as np
import polars as pl
import pytest

from market_sim.market.agents import Advertiser
from market_sim.market.model import step_in_lockstep
from market_sim.results import is_complete_run
from market_sim.run import build_market, run_scenario
from market_sim.scenario import RegretConfig, scenario_from_dict

ROUND_COLUMNS = {
    "run_id",
    "round",
    "query",
    "mechanism",
    "text",
    "revenue",
    "advertiser_value",
    "user_value",
    "social_welfare",
}
AGENT_COLUMNS = {
    "run_id",
    "round",
    "agent",
    "valuation",
    "bid",
    "report_scale",
    "allocation",
    "value",
    "payment",
    "utility",
    "regret",
}
SUMMARY_KEYS = {
    "mechanism",
    "rounds",
    "seed",
    "revenue_mean",
    "advertiser_value_mean",
    "user_value_mean",
    "social_welfare_mean",
    "utility_mean",
    "ir_violation_rate",
    "bid_ratio_final",
    "regret_mean",
    "regret_max",
}


def make_scenario(model_dir, **mechanism):
    data = {
        "name": "unit",
        "seed": 3,
        "rounds": 6,
        "model": {"path": str(model_dir), "device": "cpu"},
        "mechanism": {"kind": "token_auction", "max_new_tokens": 6, **mechanism},
        "queries": {"items": ["vacation in Hawaii", "family trip to Maui"], "order": "sample"},
        "advertisers": [
            {
                "name": "Alpha Airlines",
                "context": "Alpha Airlines: nonstop flights to Hawaii.",
                "valuation": {"dist": "uniform", "low": 0.5, "high": 1.5},
            },
            {
                "name": "Beta Resort",
                "context": "Beta Resort: beachfront rooms on Maui.",
                "valuation": {"dist": "fixed", "value": 0.8},
                "strategy": {"kind": "fixed", "bid_multiplier": 0.7, "distortion": 2.0},
            },
            {
                "name": "Gamma Cars",
                "context": "Gamma Cars: rental cars at every airport.",
                "valuation": {"dist": "lognormal", "mean": 0.0, "sigma": 0.3, "redraw": "once"},
            },
        ],
    }
    return scenario_from_dict(data)


@pytest.mark.parametrize(
    "mechanism",
    [
        {"aggregation": "linear", "payment": "second_price"},
        {
            "aggregation": "linear",
            "payment": "second_price",
            "settlement": "ex_post",
            "platform_weight": 0.5,
        },
        {"aggregation": "log_linear", "payment": "second_price", "integration_nodes": 16},
        {"aggregation": "linear", "payment": "first_price"},
        {"aggregation": "log_linear", "payment": "none"},
    ],
)
def test_round_accounting(random_lm, random_model_dir, mechanism):
    scenario = make_scenario(random_model_dir, **mechanism)
    result = run_scenario(scenario, lm=random_lm)
    rounds, agents = result.rounds, result.agents
    assert set(rounds.columns) >= ROUND_COLUMNS and set(agents.columns) >= AGENT_COLUMNS
    assert rounds.height == 6 and agents.height == 18
    per_round = agents.group_by("round").agg(pl.col("payment").sum(), pl.col("value").sum())
    joined = rounds.join(per_round, on="round").sort("round")
    np.testing.assert_allclose(joined["revenue"], joined["payment"], rtol=1e-12)
    np.testing.assert_allclose(joined["advertiser_value"], joined["value"], rtol=1e-12)
    np.testing.assert_allclose(
        rounds["social_welfare"], rounds["advertiser_value"] + rounds["user_value"], rtol=1e-12
    )
    np.testing.assert_allclose(agents["value"], agents["valuation"] * agents["allocation"])
    np.testing.assert_allclose(agents["utility"], agents["value"] - agents["payment"])
    tokens = (rounds["n_tokens"] + rounds["stopped_at_eos"]).to_numpy()  # EOS is auctioned too
    assert np.all(agents["allocation"].to_numpy() <= np.repeat(tokens, 3) + 1e-9)
    assert np.all(agents["payment"].to_numpy() >= 0)
    beta = agents.filter(pl.col("agent") == "Beta Resort")
    np.testing.assert_allclose(beta["bid"], 0.56)
    assert (beta["report_scale"] == 2.0).all()
    gamma = agents.filter(pl.col("agent") == "Gamma Cars")
    assert gamma["valuation"].n_unique() == 1  # drawn once
    alpha = agents.filter(pl.col("agent") == "Alpha Airlines")
    assert alpha["valuation"].n_unique() == 6  # drawn every round
    if mechanism["payment"] == "none":
        assert (rounds["revenue"] == 0).all()
    if mechanism["payment"] == "first_price":
        np.testing.assert_allclose(agents["payment"], agents["bid"] * agents["reported_allocation"])
    if mechanism.get("settlement") != "ex_post" and mechanism["payment"] == "second_price":
        # interim IR: truthful advertisers never lose in expectation-settled second price
        truthful = agents.filter(pl.col("agent") != "Beta Resort")
        assert (truthful["utility"] >= -1e-9).all()
        assert (
            truthful["payment"] <= truthful["bid"] * truthful["reported_allocation"] + 1e-9
        ).all()
    assert set(result.summary) >= SUMMARY_KEYS


def test_same_seed_same_results_different_seed_differs(random_lm, random_model_dir, tmp_path):
    scenario = make_scenario(random_model_dir)
    first = run_scenario(scenario, out_dir=tmp_path / "a", lm=random_lm)
    second = run_scenario(scenario, out_dir=tmp_path / "b", lm=random_lm)
    assert first.rounds.equals(second.rounds) and first.agents.equals(second.agents)
    for name in ("rounds.parquet", "agents.parquet", "scenario.toml"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    timing = {"wall_seconds", "rounds_per_second", "auctions_per_second"}
    strip = lambda s: {k: v for k, v in s.items() if k not in timing}  # noqa: E731
    assert strip(first.summary) == strip(second.summary)
    other = run_scenario(dataclasses.replace(scenario, seed=4), lm=random_lm)
    assert not other.agents["valuation"].equals(first.agents["valuation"])
    assert not other.rounds["text"].equals(first.rounds["text"])


def test_results_contract_on_disk(random_lm, random_model_dir, tmp_path):
    scenario = make_scenario(random_model_dir)
    run_scenario(scenario, out_dir=tmp_path, lm=random_lm)
    assert is_complete_run(tmp_path)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))
    rounds = pl.read_parquet(tmp_path / "rounds.parquet")
    agents = pl.read_parquet(tmp_path / "agents.parquet")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(rounds.columns) >= ROUND_COLUMNS and set(agents.columns) >= AGENT_COLUMNS
    assert set(summary) >= SUMMARY_KEYS
    assert summary["seed"] == 3 and summary["rounds"] == 6
    assert summary["revenue_mean"] == pytest.approx(rounds["revenue"].mean())
    assert agents["regret"].null_count() == 0 and agents["regret"].min() >= 0
    assert summary["regret_max"] == pytest.approx(agents["regret"].max())
    assert json.loads((tmp_path / "learners.json").read_text()).keys() == set(agents["agent"])
    final = agents.filter(pl.col("round") >= 4)
    assert summary["bid_ratio_final"] == pytest.approx((final["bid"] / final["valuation"]).mean())
    assert "[mechanism]" in (tmp_path / "scenario.toml").read_text()


def test_regret_can_be_switched_off_or_thinned(random_lm, random_model_dir):
    scenario = make_scenario(random_model_dir)
    off = run_scenario(
        dataclasses.replace(scenario, regret=RegretConfig(enabled=False)), lm=random_lm
    )
    assert (
        off.summary["regret_mean"] is None
        and off.agents["regret"].null_count() == off.agents.height
    )
    thinned = dataclasses.replace(scenario, regret=RegretConfig(every=3))
    agents = run_scenario(thinned, lm=random_lm).agents
    measured = agents.filter(pl.col("regret").is_not_null())["round"].unique().sort().to_list()
    assert measured == [0, 3]


@pytest.mark.parametrize("settlement", ["expected", "ex_post"])
def test_truthful_utility_is_one_quantity_on_measured_and_unmeasured_rounds(
    settlement, random_lm, random_model_dir
):
    """Found by an audit: under ex-post settlement measured rounds recorded the counterfactual's
    truthful utility (expected payment), unmeasured ones a truthful advertiser's realized
    (ex-post) utility, and ir_violation_rate averaged the two."""
    scenario = make_scenario(random_model_dir, payment="second_price", settlement=settlement)
    thinned = dataclasses.replace(scenario, regret=RegretConfig(every=3))
    agents = run_scenario(thinned, lm=random_lm).agents
    alpha = agents.filter(pl.col("agent") == agents["agent"][0])  # truthful: no strategy given
    assert (alpha["bid"] == alpha["valuation"]).all()
    unmeasured = alpha.filter(pl.col("round") % 3 != 0)
    measured = alpha.filter(pl.col("round") % 3 == 0)
    assert measured["truthful_utility"].null_count() == 0
    if settlement == "expected":  # the realized utility is the counterfactual's: recorded
        assert unmeasured["truthful_utility"].to_list() == unmeasured["utility"].to_list()
        # and on measured rounds the counterfactual agrees with the realized utility (float64
        # sums over 6 steps in another order: 1e-12 of the utility's scale)
        scale = max(1.0, float(measured["utility"].abs().max()))
        difference = (measured["truthful_utility"] - measured["utility"]).abs().max()
        assert difference <= 1e-12 * scale
    else:  # another quantity than the counterfactual's expected payment: not recorded
        assert unmeasured["truthful_utility"].null_count() == unmeasured.height


def test_run_id_names_a_thread_count_other_than_one(random_model_dir):
    """Results are byte-identical only for one thread count, so the id says which one ran."""
    from market_sim.run import make_run_id

    scenario = make_scenario(random_model_dir)
    toml = "name = 'x'\n"
    plain = make_run_id(toml, scenario)
    assert plain == make_run_id(toml, scenario, threads=1)
    assert not plain.endswith("threads1")
    two = make_run_id(toml, scenario, threads=2)
    assert two == f"{plain}-threads2"


def test_the_market_is_a_mesa_model_whose_agents_hold_their_outcomes(random_lm, random_model_dir):
    """Advertisers live in model.agents, mesa's steps counts rounds, each agent keeps its outcome,
    and run_model() (mesa's loop, until running turns False) gives run_scenario's records."""
    scenario = make_scenario(random_model_dir)
    market, _ = build_market(scenario, random_lm)
    assert not hasattr(market, "advertisers") and not hasattr(market, "round_index")
    agents = list(market.agents)
    assert all(isinstance(agent, Advertiser) for agent in agents)
    assert [agent.name for agent in agents] == [a.name for a in scenario.advertisers]
    assert [agent.seat for agent in agents] == [0, 1, 2]
    assert [agent.unique_id for agent in agents] == sorted(agent.unique_id for agent in agents)
    assert market.steps == 0 and all(agent.latest is None for agent in agents)
    market.step()
    assert market.steps == 1 and market.running
    market.run_model()
    assert market.steps == scenario.rounds and not market.running
    rounds, records = market.tables()
    assert rounds["round"].to_list() == list(range(scenario.rounds))
    reference = run_scenario(scenario, lm=random_lm)
    assert rounds.equals(reference.rounds) and records.equals(reference.agents)
    last = records.filter(pl.col("round") == scenario.rounds - 1)
    for agent, row in zip(agents, last.iter_rows(named=True), strict=True):
        outcome = agent.latest
        assert (outcome.round, outcome.auction) == (scenario.rounds - 1, 0)
        assert row["agent"] == agent.name
        assert (outcome.allocation, outcome.payment, outcome.utility) == (
            row["allocation"],
            row["payment"],
            row["utility"],
        )
        assert (outcome.bid.valuation, outcome.bid.report.bid) == (row["valuation"], row["bid"])
        assert agent.bids == [] and agent.results == []  # learned from, cleared for next round


def test_replicates_step_in_lockstep_and_count_their_own_rounds(random_lm, random_model_dir):
    scenario = make_scenario(random_model_dir)
    markets = [
        build_market(dataclasses.replace(scenario, seed=seed), random_lm)[0] for seed in (3, 4)
    ]
    for _ in range(scenario.rounds):
        step_in_lockstep(markets)
    assert [market.steps for market in markets] == [scenario.rounds] * 2
    alone = run_scenario(dataclasses.replace(scenario, seed=4), lm=random_lm)
    rounds, agents = markets[1].tables()
    # one decode of both replicates' rows: the same texts, numbers up to the float32 rounding of
    # a larger batch's logits (payments measured up to 2e-7 relative on this model: rtol 1e-5)
    assert rounds["text"].equals(alone.rounds["text"])
    np.testing.assert_allclose(agents["payment"], alone.agents["payment"], rtol=1e-5, atol=1e-9)
