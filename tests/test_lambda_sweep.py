"""The lambda sweep on the bundled LM: brand shares move with the bid share."""

import json
import tomllib
from pathlib import Path

import polars as pl
import pytest

from market_sim.experiments.lambda_sweep import mention_category, run_lambda_sweep, share_table
from market_sim.lm.model import LanguageModel
from market_sim.provenance import scenario_sha256, software_versions
from market_sim.scenario import load_scenario, scenario_from_dict

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "hawaii_lambda_sweep.toml"


def test_mention_category():
    first, second = ("Alpha Airlines",), ("Beta Resort", "Beta")
    assert mention_category("Fly ALPHA airlines today", first, second) == "only_first"
    assert mention_category("Stay at beta resort", first, second) == "only_second"
    assert mention_category("Alpha Airlines and Beta", first, second) == "both"
    assert mention_category("Sunny beaches", first, second) == "neither"


def test_share_table_counts():
    samples = pl.DataFrame(
        {
            "aggregation": ["linear"] * 4 + ["log_linear"] * 2,
            "lambda": [0.5, 0.5, 0.5, 1.0, 0.5, 0.5],
            "category": ["both", "both", "neither", "only_first", "only_second", "both"],
        }
    )
    shares = share_table(samples)
    row = shares.filter(pl.col("aggregation") == "linear", pl.col("lambda") == 0.5).row(
        0, named=True
    )
    assert row["samples"] == 3
    assert row["share_both"] == pytest.approx(2 / 3) and row["share_neither"] == pytest.approx(
        1 / 3
    )
    assert shares["aggregation"].to_list() == ["linear", "linear", "log_linear"]


@pytest.fixture(scope="module")
def bundled_lm():
    return LanguageModel.load("bundled:tiny-ads", device="cpu")


def test_brand_shares_follow_lambda(bundled_lm, tmp_path):
    scenario = load_scenario(
        SCENARIO, ["lambda_sweep.lambdas=[0.0, 0.5, 1.0]", "lambda_sweep.samples=32"]
    )
    samples, shares = run_lambda_sweep(scenario, bundled_lm, tmp_path)
    assert (tmp_path / "samples.parquet").is_file() and (tmp_path / "shares.parquet").is_file()
    assert samples.height == 2 * 3 * 32
    # What recomputes the figures: the resolved scenario, and its hash, the weights' hashes and
    # the versions in provenance.json.
    scenario_toml = (tmp_path / "scenario.toml").read_text(encoding="utf-8")
    assert scenario_from_dict(tomllib.loads(scenario_toml)) == scenario
    record = json.loads((tmp_path / "provenance.json").read_text(encoding="utf-8"))
    assert record["provenance"]["scenario_sha256"] == scenario_sha256(scenario_toml)
    assert record["provenance"]["model"]["weights_sha256"]
    assert record["versions"] == software_versions()
    for aggregation in ("linear", "log_linear"):
        table = shares.filter(pl.col("aggregation") == aggregation).sort("lambda")
        only_alpha = table["share_only_first"].to_list()
        only_beta = table["share_only_second"].to_list()
        both = table["share_both"].to_list()
        # lambda = 0, 0.5, 1: Alpha-only rises with lambda, Beta-only falls, the middle mixes.
        assert only_alpha[0] <= only_alpha[1] <= only_alpha[2], (aggregation, table)
        assert only_beta[0] >= only_beta[1] >= only_beta[2], (aggregation, table)
        assert only_alpha[2] > 0.5 and only_beta[0] > 0.5, (aggregation, table)
        assert only_alpha[0] < only_alpha[2] and only_beta[2] < only_beta[0], (aggregation, table)
        assert both[1] > 0, (aggregation, table)
        assert both[1] >= max(both[0], both[2]), (aggregation, table)
