"""Batched rounds (``auctions_per_round = K``): K = 1 is the old market, K > 1 conserves money.

The K = 1 reference (``tests/data/batched_rounds_reference.json``) was written by this file's
``write_reference`` at commit f32f226, before rounds were batched, with one torch thread (as
every test runs, see ``conftest.py``; the LM's float32 sums depend on the thread count):

    cd <checkout of f32f226> && PYTHONPATH=. python <this file> <reference path>

and holds the texts and numbers of a few rounds of shipped scenarios on the bundled model.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_learning_market import assert_payment_rules_teach_their_incentives

from market_sim.lm.model import LanguageModel
from market_sim.run import run_replicates, run_scenario
from market_sim.scenario import load_scenario, scenario_from_dict

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
REFERENCE = Path(__file__).resolve().parent / "data" / "batched_rounds_reference.json"
REFERENCE_RUNS = {
    "hawaii": ["rounds=4"],
    "learning_token_auction": ["rounds=4"],
    "hawaii_learning": ["rounds=4"],
}
"""Scenario -> overrides of the reference runs (learning_token_auction measures regret in
round 0, so the reference covers the counterfactual and the regret search too)."""
ROUND_FIELDS = ("query", "text", "revenue", "user_value", "advertiser_value")
AGENT_FIELDS = ("agent", "valuation", "bid", "report_scale", "allocation", "payment", "utility")
AGENT_NULLABLE_FIELDS = ("regret", "truthful_utility")


def reference_records(scenario_name: str, overrides: list[str]) -> dict[str, dict[str, list]]:
    """The compared columns of one run, as JSON-ready lists."""
    scenario = load_scenario(SCENARIOS / f"{scenario_name}.toml", overrides)
    result = run_scenario(scenario)
    rounds = {name: result.rounds[name].to_list() for name in ROUND_FIELDS}
    agent_names = AGENT_FIELDS + AGENT_NULLABLE_FIELDS
    agents = {name: result.agents[name].to_list() for name in agent_names}
    return {"rounds": rounds, "agents": agents}


def write_reference(path: Path) -> None:
    """Write the reference of every run in :data:`REFERENCE_RUNS`."""
    data = {name: reference_records(name, overrides) for name, overrides in REFERENCE_RUNS.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


CROSS_MACHINE_TOLERANCE = 1e-5
"""Largest difference allowed, as a fraction of the column's largest magnitude.

The LM computes its logits in float32 (machine epsilon 1.2e-7), and another CPU's matmul and
reduction kernels round them differently: the reference machine against an AMD EPYC with
AVX-512 (whether torch ran its AVX-512 or its AVX2 kernels) moved every float column by at most
8e-7 of its largest magnitude (2.6e-6 relative to the single value). 1e-5 leaves 12x headroom
for other CPUs, while any change to a mechanism, a learner or a random draw moves these
numbers by 1e-3 or more.
"""

SCALE_COLUMN = {"regret": "truthful_utility"}
"""Columns that are differences of other columns: their rounding error scales with those.

Regret is a best candidate's utility minus the played one's, so its error is a fraction of the
utilities, not of the (often near-zero) regret.
"""


def assert_columns_match(expected: dict[str, list], actual: dict[str, list]) -> None:
    """Texts (and None positions) equal; numbers equal up to :data:`CROSS_MACHINE_TOLERANCE`.

    On the machine that wrote the reference the numbers are bit-identical; the tolerance
    absorbs the float32 rounding of another CPU's kernels (see the constant).
    """
    for name, values in expected.items():
        got = actual[name]
        assert len(got) == len(values), name
        if values and isinstance(next((v for v in values if v is not None), ""), str):
            assert got == values, name
            continue
        assert [v is None for v in got] == [v is None for v in values], name
        want = np.array([v for v in values if v is not None], dtype=np.float64)
        have = np.array([v for v in got if v is not None], dtype=np.float64)
        scale_values = [v for v in expected[SCALE_COLUMN.get(name, name)] if v is not None]
        scale = max((abs(v) for v in scale_values), default=0.0)
        np.testing.assert_allclose(
            have, want, rtol=0, atol=CROSS_MACHINE_TOLERANCE * scale, err_msg=name
        )


@pytest.mark.parametrize("scenario_name", sorted(REFERENCE_RUNS))
def test_one_auction_per_round_reproduces_the_unbatched_market(scenario_name):
    expected = json.loads(REFERENCE.read_text())[scenario_name]
    actual = reference_records(scenario_name, REFERENCE_RUNS[scenario_name])
    assert_columns_match(expected["rounds"], actual["rounds"])
    assert_columns_match(expected["agents"], actual["agents"])


def batched_scenario(
    model_dir, auctions_per_round: int, rounds: int = 3, strategies=None, seed: int = 5
):
    """Hedge, fixed and EXP3 advertisers on the random test model, K auctions per round.

    ``strategies``: replaces the advertisers' strategy tables where not None.
    """
    data = {
        "name": "batched",
        "seed": seed,
        "rounds": rounds,
        "auctions_per_round": auctions_per_round,
        "model": {"path": str(model_dir), "device": "cpu"},
        "mechanism": {"kind": "token_auction", "max_new_tokens": 5},
        "queries": {"items": ["vacation in Hawaii", "family trip to Maui"], "order": "sample"},
        "regret": {"every": 2, "multiplier_points": 5, "distortion_points": 3, "refinements": 0},
        "advertisers": [
            {
                "name": "Alpha Airlines",
                "context": "Alpha Airlines: nonstop flights to Hawaii.",
                "valuation": {"dist": "uniform", "low": 0.5, "high": 1.5},
                "strategy": {"kind": "hedge", "multiplier_max": 2.0, "multiplier_count": 5},
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
                "valuation": {"dist": "lognormal", "mean": 0.0, "sigma": 0.3},
                "strategy": {"kind": "exp3", "multiplier_max": 2.0, "multiplier_count": 5},
            },
        ],
    }
    for advertiser, strategy in zip(data["advertisers"], strategies or [None] * 3, strict=True):
        if strategy is not None:
            advertiser["strategy"] = strategy
    return scenario_from_dict(data)


def test_batched_rounds_conserve_money_and_record_every_auction(random_model_dir, tmp_path):
    result = run_scenario(batched_scenario(random_model_dir, 4), out_dir=tmp_path / "run")
    rounds, agents = result.rounds, result.agents
    assert rounds.height == 3 * 4 and agents.height == 3 * 4 * 3
    assert rounds.select("round", "auction").rows() == [(r, a) for r in range(3) for a in range(4)]
    paid = agents.group_by("round", "auction").agg(pl.col("payment").sum().alias("paid"))
    joined = rounds.join(paid, on=["round", "auction"])
    assert joined.height == rounds.height  # every auction has its advertisers' rows
    # revenue is the sum of the same float64 payments, added in the same order
    np.testing.assert_allclose(joined["revenue"], joined["paid"], rtol=1e-12, atol=1e-12)
    # regret is measured in every auction of rounds 0 and 2 (every = 2), never in round 1
    measured = agents.filter(pl.col("regret").is_not_null())["round"].unique().sort().to_list()
    assert measured == [0, 2]
    assert agents.filter(pl.col("round") != 1)["regret"].null_count() == 0
    # the Hedge learner made one update per round; the learners file says so
    learners = json.loads((tmp_path / "run" / "learners.json").read_text())
    assert learners["Alpha Airlines"]["rounds"] == 3
    assert result.summary["auctions_per_round"] == 4


def test_batched_rounds_are_deterministic_per_seed(random_model_dir, tmp_path):
    scenario = batched_scenario(random_model_dir, 4)
    first = run_scenario(scenario, out_dir=tmp_path / "a")
    second = run_scenario(scenario, out_dir=tmp_path / "b")
    for name in ("rounds.parquet", "agents.parquet", "learners.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert first.rounds["text"].to_list() == second.rounds["text"].to_list()


def test_batched_rounds_draw_different_auctions_per_k(random_model_dir):
    """K changes the draw order, so K = 2 and K = 1 runs of a seed differ after the first draws."""
    single = run_scenario(batched_scenario(random_model_dir, 1, rounds=4))
    double = run_scenario(batched_scenario(random_model_dir, 2, rounds=2))
    assert single.rounds.height == double.rounds.height == 4
    # the first query is the first draw either way
    assert single.rounds["query"][0] == double.rounds["query"][0]
    assert single.agents["valuation"].to_list() != double.agents["valuation"].to_list()


def test_auctions_per_round_out_of_bounds_is_one_line_naming_the_key(random_model_dir):
    with pytest.raises(ValueError, match=r"^auctions_per_round: must be between 1 and 4096"):
        batched_scenario(random_model_dir, 0)
    with pytest.raises(ValueError, match=r"^auctions_per_round: must be between 1 and 4096"):
        batched_scenario(random_model_dir, 4097)


def test_policy_gradient_and_contextual_learners_learn_once_per_round(random_model_dir, tmp_path):
    strategies = [
        {"kind": "policy_gradient", "multiplier_max": 2.0},
        None,
        {"kind": "ucb1", "contextual": True, "multiplier_max": 2.0, "multiplier_count": 5},
    ]
    scenario = batched_scenario(random_model_dir, 3, rounds=2, strategies=strategies)
    run_scenario(scenario, out_dir=tmp_path / "run")
    agents = pl.read_parquet(tmp_path / "run" / "agents.parquet")
    alpha = agents.filter(pl.col("agent") == "Alpha Airlines")
    multipliers = (alpha["bid"] / alpha["valuation"]).to_numpy()
    # policy gradient samples its multiplier per auction: three different ones in a round
    assert len(set(multipliers[:3].round(12))) == 3
    learners = json.loads((tmp_path / "run" / "learners.json").read_text())
    assert learners["Alpha Airlines"]["rounds"] == 2
    # each query's UCB1 learner counts one play per auction of its query: 2 rounds x 3
    contexts = learners["Gamma Cars"]["contexts"]
    assert sum(sum(c["counts"]) for c in contexts.values()) == 2 * 3


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    write_reference(Path(sys.argv[1]) if len(sys.argv) > 1 else REFERENCE)


@pytest.mark.slow
def test_batched_learners_still_learn_truthful_shaded_and_maximal_bids(tmp_path):
    """Hedge updating once per 16 auctions still finds the payment rules' incentives.

    The K = 1 test's assertions (``test_learning_market.py``) with K = 16 over its 300 auctions
    (19 rounds of 16: 304). Seen over seeds 0-3 here: ``bid_ratio_final`` 1.050 to 1.145
    (second price; K = 1 in the same setup 1.04 to 1.12, so a 10% bound would fail at K = 1
    too), 0.080 to 0.093 (first price), 1.381 to 1.479 (no payment); best multipliers in
    hindsight exactly 1.0, 0.1 and 2.0 on every seed. About 25 s for the three runs on 2 cores.
    The shipped scenario's learners (the joint multiplier x sharpening grid, 105 actions) over
    1,008 auctions (63 rounds of 16) end within 10% of 1 under second price (1.051, 1.075 and
    1.074 for seeds 0-2), but a run takes minutes, too long for every CI run.
    """
    assert_payment_rules_teach_their_incentives(tmp_path, ("rounds=19", "auctions_per_round=16"))


def test_replicates_in_one_decode_equal_separate_runs(random_model_dir, tmp_path):
    """Seeds 5, 6, 7 in lockstep (K = 2) against three separate runs of the same seeds."""
    scenario = batched_scenario(random_model_dir, 2)
    seeds = [5, 6, 7]
    lm = LanguageModel.load(str(random_model_dir), device="cpu")
    forwards = []
    lm.model.register_forward_hook(lambda module, args, output: forwards.append(1))
    together = run_replicates(scenario, seeds, [tmp_path / f"r{s}" for s in seeds], lm=lm)
    shared_forwards, forwards[:] = len(forwards), []
    alone_runs = [
        run_scenario(dataclasses.replace(scenario, seed=seed), tmp_path / f"s{seed}", lm=lm)
        for seed in seeds
    ]
    # the replicates' auctions share each forward: one decode per round, not one per seed
    # (seen: 15 forwards in lockstep, 45 for the three separate runs)
    assert shared_forwards * 2 < len(forwards)
    for seed, replicate, alone in zip(seeds, together, alone_runs, strict=True):
        assert replicate.summary["run_id"] == alone.summary["run_id"]
        # the same id, so the summary says which seeds shared its decodes
        assert replicate.summary["execution"]["lockstep_seeds"] == list(seeds)
        assert alone.summary["execution"]["lockstep_seeds"] == [seed]
        own, reference = tmp_path / f"r{seed}", tmp_path / f"s{seed}"
        assert (own / "scenario.toml").read_bytes() == (reference / "scenario.toml").read_bytes()
        for table in ("rounds", "agents"):
            mine, theirs = getattr(replicate, table), getattr(alone, table)
            assert mine.columns == theirs.columns
            for column in mine.columns:
                if mine[column].dtype in (pl.Float64, pl.Float32):
                    # Within 1e-6 in valuation units (values, payments and utilities are O(1)):
                    # a larger, differently padded batch may round float32 logits differently
                    # (seen: 1.5e-9 absolute on a regret of 2.4e-4, a difference of O(1)
                    # utilities, hence no relative bound on such small differences).
                    np.testing.assert_allclose(
                        mine[column].to_numpy(), theirs[column].to_numpy(), rtol=1e-6, atol=1e-6
                    )
                else:
                    assert mine[column].to_list() == theirs[column].to_list(), column


def test_learning_curves_pool_the_auctions_of_a_round(random_model_dir):
    from analysis.learning_curves import learning_curves

    runs = [
        run_scenario(batched_scenario(random_model_dir, 4, rounds=2, seed=seed)) for seed in (5, 6)
    ]
    agents = pl.concat(
        [
            r.agents.with_columns(pl.lit(f"run{i}").alias("run_path"), pl.lit("K=4").alias("label"))
            for i, r in enumerate(runs)
        ]
    )
    curves = learning_curves(agents, metrics=("bid_ratio",), window=1)
    assert curves["window"].to_list() == [0, 1]
    assert curves["n"].to_list() == [2, 2]  # one value per run (seed) and round
    per_run = [
        [
            float((r.agents["bid"] / r.agents["valuation"]).filter(r.agents["round"] == w).mean())
            for r in runs
        ]
        for w in (0, 1)
    ]
    # means of float64 ratios over the same 12 rows per run, summed in another order
    np.testing.assert_allclose(curves["mean"], [np.mean(v) for v in per_run], rtol=1e-12)
