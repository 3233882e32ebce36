"""Sequence-level mechanisms in the market: fine-tuned grids, convergence, learning groups."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from market_sim.experiments.mosaic_convergence import run_convergence, summarize_convergence
from market_sim.lm.fine_tune import FineTuneConfig
from market_sim.mechanisms.affine_maximizer import run_affine_maximizer
from market_sim.mechanisms.affine_misreports import distorted_reward_models, distorted_valuations
from market_sim.mechanisms.affine_synthetic_game import synthetic_games
from market_sim.platform.base import Bidder, Report, ReportBatch
from market_sim.platform.fine_tuned_affine import FineTunedAffineMaximizerPlatform
from market_sim.run import run_scenario
from market_sim.scenario import load_scenario, scenario_from_dict

torch.set_num_threads(1)

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
QUERIES = ["vacation in Hawaii", "family trip to Maui"]
CONTEXTS = ["Alpha Airlines: nonstop flights to Hawaii.", "Beta Resort: beachfront rooms on Maui."]


def test_truthful_distortions_are_the_identity_and_reward_scale_is_size_inflation():
    rewards, weights = synthetic_games(seed=3, games=4, groups=3, outcomes=6)
    ones = np.ones((4, 3))
    for distortion in ("reward_scale", "blend"):
        assert np.allclose(distorted_reward_models(rewards, ones, distortion), rewards)
    valuations = np.random.default_rng(0).uniform(size=(4, 5, 3))
    assert np.allclose(distorted_valuations(valuations, ones, "blend"), valuations)
    scales = np.array([[2.0, 1.0, 1.0]] * 4)
    init = np.full(6, 1 / 6)
    scaled = run_affine_maximizer(
        distorted_reward_models(rewards, scales, "reward_scale"), weights, init
    )
    inflated = run_affine_maximizer(rewards, weights * scales, init)
    assert np.allclose(scaled.policy, inflated.policy) and np.allclose(
        scaled.payments, inflated.payments
    )
    # a blend with scale 0 reports the others' mean (renormalized by its max)
    blended = distorted_reward_models(rewards, np.array([[0.0, 1.0, 1.0]] * 4), "blend")
    others = rewards[:, 1:].mean(1)
    assert np.allclose(blended[:, 0], others / others.max(-1, keepdims=True))


@pytest.fixture(scope="module")
def fine_tuned_platform(random_lm):
    platform = FineTunedAffineMaximizerPlatform(
        random_lm,
        QUERIES,
        fine_tune=FineTuneConfig(samples_per_prompt=4, steps=3, max_new_tokens=6),
        grid_resolution=2,
        grid_samples=4,
        max_new_tokens=6,
    )
    bidders = [Bidder(c, Report(w, 1.0)) for c, w in zip(CONTEXTS, (2.0, 3.0), strict=True)]
    outcomes = platform.run_auctions(QUERIES, [bidders, bidders], seed=5)
    return platform, outcomes


def test_fine_tuned_grid_is_truthful_individually_rational_and_consistent(fine_tuned_platform):
    platform, outcomes = fine_tuned_platform
    (grid,) = platform._grids.values()
    assert grid.coefficients.shape == (6, 3)  # simplex over (base, 2 copies), resolution 2
    assert np.allclose(grid.coefficients.sum(1), 1.0)
    assert grid.valuations.shape == (2, 6, 2) and grid.divergences.shape == (2, 6)
    base = int(np.flatnonzero(grid.coefficients[:, 0] == 1.0)[0])
    assert np.all(grid.divergences[:, base] == 0.0)  # the base against itself, exactly
    sizes = (2.0, 3.0)
    for x, outcome in enumerate(outcomes):
        choice = int(outcome.extras["grid_point"])
        assert outcome.token_ids in grid.replies[x][choice]
        assert np.allclose(outcome.allocations, grid.valuations[x, choice])
        assert outcome.user_value == -grid.divergences[x, choice]
        assert np.all(outcome.payments >= -1e-12)
        for agent, size in enumerate(sizes):
            own = outcome.counterfactual.evaluate(agent, [Report(size, 1.0)])
            assert own.allocations[0] == outcome.allocations[agent]
            assert own.payments[0] == outcome.payments[agent]
            truthful = own.utilities(size)[0]
            assert truthful >= -1e-12
            multipliers, scales = np.meshgrid(np.linspace(0, 3, 31), np.geomspace(0.25, 4, 9))
            batch = ReportBatch(multipliers.ravel() * size, scales.ravel())
            deviations = outcome.counterfactual.evaluate(agent, batch).utilities(size)
            assert deviations.max() <= truthful + 1e-9


def test_fine_tuned_grid_is_built_once_and_rejects_unknown_queries(fine_tuned_platform):
    platform, _ = fine_tuned_platform
    bidders = [Bidder(c, Report(1.0, 1.0)) for c in CONTEXTS]
    platform.run_auctions(QUERIES[:1], [bidders], seed=9)
    assert len(platform._grids) == 1
    with pytest.raises(ValueError, match="not in the pool"):
        platform.run_auctions(["a query nobody asked"], [bidders], seed=9)


def mosaic_scenario(model_dir, **extra):
    return scenario_from_dict(
        {
            "name": "mosaic-test",
            "seed": 2,
            "rounds": 12,
            "model": {"path": str(model_dir), "device": "cpu"},
            "mechanism": {"kind": "mosaic", "candidates": 6, "max_new_tokens": 6},
            "queries": {"items": QUERIES},
            "regret": {"every": 3, "multiplier_points": 7, "distortion_points": 3},
            "advertisers": [
                {"name": name, "context": context, "valuation": {"dist": "fixed", "value": 1.0}}
                for name, context in zip(("Alpha", "Beta"), CONTEXTS, strict=True)
            ],
            **extra,
        }
    )


def test_convergence_rows_and_summary(random_lm, random_model_dir, tmp_path):
    scenario = mosaic_scenario(
        random_model_dir, convergence={"sizes": [1, 4, 64], "support_samples": 6}
    )
    table = run_convergence(scenario, random_lm, tmp_path)
    assert table.height == 2 * 2 * 3  # queries x proposals x sizes
    assert set(table["proposal"]) == {"reference", "context_aware"}
    assert (table["reference_coverage"] > 0).all() and (table["reference_coverage"] <= 1).all()
    for (query, proposal), rows in table.group_by("query", "proposal"):
        tv = rows.sort("candidates")["tv"].to_numpy()
        assert tv[-1] <= tv[0] + 1e-12, (query, proposal)  # more candidates, closer to pi*
        if proposal == "reference":  # M = 1 is the proposal itself; pi_ref is the target's base
            assert rows["support_size"][0] >= 1
    written = pl.read_parquet(tmp_path / "convergence.parquet")
    assert written.equals(table)
    summary = json.loads((tmp_path / "convergence_summary.json").read_text())
    assert summary == json.loads(json.dumps(summarize_convergence(table)))
    with pytest.raises(ValueError, match="mechanism.kind"):
        run_convergence(mosaic_scenario(random_model_dir, mechanism={"kind": "vcg"}), random_lm)


def test_mosaic_market_run_records_zero_regret_for_truthful_advertisers(
    random_lm, random_model_dir
):
    result = run_scenario(mosaic_scenario(random_model_dir), lm=random_lm)
    rounds, agents = result.rounds, result.agents
    assert rounds["mechanism"].unique().to_list() == ["mosaic"]
    revenue = agents.group_by("round").agg(pl.col("payment").sum()).sort("round")["payment"]
    assert np.allclose(rounds.sort("round")["revenue"].to_numpy(), revenue.to_numpy())
    measured = agents.filter(pl.col("regret").is_not_null())
    assert measured.height == 2 * 4
    assert measured["regret"].max() <= 1e-9  # truthful is optimal on the round's candidates
    assert (measured["truthful_utility"] >= -1e-12).all()
    assert (agents["payment"] >= -1e-12).all()
    again = run_scenario(mosaic_scenario(random_model_dir), lm=random_lm)
    assert again.rounds["text"].to_list() == rounds["text"].to_list()
    assert again.agents["payment"].to_list() == agents["payment"].to_list()


def learned_scale(payment, tmp_path):
    overrides = [
        "rounds=100",
        f'mechanism.payment="{payment}"',
        "mechanism.candidates=6",
        "mechanism.max_new_tokens=12",
        "regret.enabled=false",
    ]
    scenario = load_scenario(SCENARIOS / "fine_tuning_groups.toml", overrides)
    agents = run_scenario(scenario, out_dir=tmp_path / payment).agents
    late = agents.filter(pl.col("round") >= 80)  # the last 20%
    return late["report_scale"].mean()


@pytest.mark.slow
def test_groups_learn_truthful_scales_with_payments_and_exaggerate_without(tmp_path):
    with_payments = learned_scale("affine_maximizer", tmp_path)
    without = learned_scale("none", tmp_path)
    assert abs(with_payments - 1.0) < 0.25
    assert without > 2.0
