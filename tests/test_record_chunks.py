"""Records frozen into typed chunks give the frames and values of records built all at once.

A long run on the generic round freezes its DataCollector lists every ``RECORD_CHUNK_ROWS`` rows
(:mod:`market_sim.market.model`). With chunks of 1 or 3 rows, chunks lack optional columns that
others hold (a strategy's state on the other advertiser's rows), which is where a join could go
wrong.
"""

import hashlib

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from market_sim.market import model as market_model
from market_sim.run import run_scenario
from market_sim.scenario import scenario_from_dict


def chunk_scenario(model_dir):
    # policy gradient first: a one-row chunk of its row lacks Hedge's strategy_top_probability,
    # declared before its own strategy_log_std, so a join must restore the declared order
    strategies = [
        {"kind": "policy_gradient", "multiplier_max": 2.0},
        {"kind": "hedge", "multiplier_max": 1.5, "multiplier_count": 11},
    ]
    return scenario_from_dict(
        {
            "name": "chunks",
            "seed": 5,
            "rounds": 23,
            "model": {"path": str(model_dir), "device": "cpu"},
            "mechanism": {"kind": "first_price", "max_new_tokens": 4, "reply": "cached"},
            "queries": {"items": ["vacation in Hawaii", "family trip to Maui"]},
            "regret": {"enabled": True, "every": 4},
            "advertisers": [
                {
                    "name": f"Bidder {i}",
                    "context": f"Bidder {i}: flights.",
                    "valuation": {"dist": "uniform", "low": 0.0, "high": 1.0},
                    "strategy": strategy,
                }
                for i, strategy in enumerate(strategies)
            ],
        }
    )


def file_hashes(folder):
    return {
        name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
        for name in ("rounds.parquet", "agents.parquet")
    }


@pytest.mark.parametrize("chunk_rows", [1, 3, 23])
def test_frozen_chunks_give_the_same_records_and_bytes(
    chunk_rows, random_model_dir, random_lm, tmp_path, monkeypatch
):
    scenario = chunk_scenario(random_model_dir)
    whole = run_scenario(scenario, tmp_path / "whole", lm=random_lm)
    monkeypatch.setattr(market_model, "RECORD_CHUNK_ROWS", chunk_rows)
    chunked = run_scenario(scenario, tmp_path / "chunked", lm=random_lm)
    assert_frame_equal(chunked.rounds, whole.rounds)
    assert_frame_equal(chunked.agents, whole.agents)
    for name in ("rounds.parquet", "agents.parquet"):  # the files hold the same values
        written = pl.read_parquet(tmp_path / "chunked" / name)
        assert_frame_equal(written, pl.read_parquet(tmp_path / "whole" / name))
    run_scenario(scenario, tmp_path / "again", lm=random_lm)
    assert file_hashes(tmp_path / "again") == file_hashes(tmp_path / "chunked")  # same bytes
    # the case the chunks are for: optional columns null on some rows, present in the table
    agents = whole.agents
    state = [c for c in agents.columns if c.startswith("strategy_")]
    assert any(agents[c].is_null().any() and agents[c].is_not_null().any() for c in state)
    assert agents["regret"].is_null().any() and agents["regret"].is_not_null().any()
