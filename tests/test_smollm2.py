"""SmolLM2 from the cache: the shipped scenario runs, is deterministic and records what it used.

Skipped unless ``market-sim lm get smollm2-135m-instruct`` has filled the cache (never in CI:
no test downloads).
"""

import tomllib
from pathlib import Path

import pytest

from market_sim.cli import main
from market_sim.lm.cached_models import (
    CachedModelMissingError,
    read_manifest,
    resolve_cached_model,
)

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "smollm2_hawaii.toml"
# Two rounds of short replies: enough to exercise the chat prompts, the auction and the records.
SHORT = ["--rounds", "2", "--set", "mechanism.max_new_tokens=8", "--set", "regret.every=2"]


@pytest.fixture(scope="module")
def smollm2_folder() -> Path:
    try:
        return resolve_cached_model("cache:smollm2-135m-instruct")
    except CachedModelMissingError:
        pytest.skip("SmolLM2 is not in the cache (market-sim lm get smollm2-135m-instruct)")


def test_smollm2_hawaii_runs_deterministically_and_records_its_model(smollm2_folder, tmp_path):
    runs = [tmp_path / "first", tmp_path / "second"]
    for out in runs:
        assert main(["run", str(SCENARIO), *SHORT, "--out", str(out), "--no-progress"]) == 0
    for table in ("rounds.parquet", "agents.parquet"):
        assert (runs[0] / table).read_bytes() == (runs[1] / table).read_bytes()
    model = tomllib.loads((runs[0] / "scenario.toml").read_text("utf-8"))["model"]
    (weights_hash,) = read_manifest(smollm2_folder)["sha256"]["weights"].values()
    assert model["prompt_format"] == "chat"
    assert model["weights_sha256"] == weights_hash
