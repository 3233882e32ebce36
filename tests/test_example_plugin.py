"""The shipped plugin package (examples/posted_price_plugin), run the way its README says.

Its entry point is read from its own ``pyproject.toml`` and loaded the way an installed package's
is (``module:attribute`` from the package folder), then ``market-sim run`` runs it: what a
researcher copying the example gets. The posted price is dominant-strategy truthful (its
docstring derives it), so the regret estimator must find no gain over truthful bidding.
"""

from __future__ import annotations

import importlib
import json
import tomllib
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest

from market_sim.cli import main
from market_sim.plugins import mechanism_plugin, registry

PACKAGE = Path(__file__).resolve().parent.parent / "examples" / "posted_price_plugin"

SCENARIO = PACKAGE / "posted_price.toml"
"""The example's scenario, run on the test LM (``--set model.path``)."""


@pytest.fixture
def installed_example(monkeypatch):
    """The example's entry point, as importlib.metadata would list it once installed."""
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())
    ((name, value),) = project["project"]["entry-points"]["market_sim.mechanisms"].items()
    module_name, attribute = value.split(":")

    class EntryPoint:
        dist = SimpleNamespace(name=project["project"]["name"], version="0.1.0")

        def __init__(self) -> None:
            self.name, self.value = name, value

        def load(self):
            return getattr(importlib.import_module(module_name), attribute)

    monkeypatch.setattr(registry, "entry_points", lambda group: [EntryPoint()])
    monkeypatch.setattr(registry, "_ENTRY_POINTS_LOADED", [])
    try:
        yield name
    finally:
        registry.unregister_mechanism(name)


def test_the_example_plugin_runs_from_the_command_line_with_zero_regret(
    installed_example, random_model_dir, tmp_path, capsys
):
    assert mechanism_plugin("posted_price").name == installed_example
    out = tmp_path / "run"
    model = f"model.path={json.dumps(str(random_model_dir))}"
    assert main(["run", str(SCENARIO), "--set", model, "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    rounds = pl.read_parquet(out / "rounds.parquet")
    agents = pl.read_parquet(out / "agents.parquet")
    assert rounds.height == 40 * 3 and agents.height == 40 * 3 * 3
    per_auction = agents.group_by("round", "auction").agg(
        pl.col("payment").sum(), pl.col("allocation").sum(), (pl.col("bid") >= 0.4).sum()
    )
    joined = rounds.join(per_auction, on=["round", "auction"])
    # revenue is the sum of the auction's payments (both float64 sums of at most 3 terms)
    assert (joined["revenue"] - joined["payment"]).abs().max() <= 1e-12
    # the unit is shared by the acceptors: allocations sum to 1 where anyone accepted, else 0
    expected = (joined["bid"] > 0).cast(pl.Float64)
    assert (joined["allocation"] - expected).abs().max() <= 1e-12
    # truthful bidding is dominant: the search finds no deviation worth more than rounding
    regret = agents["regret"].drop_nulls()
    assert regret.len() == agents.height and regret.max() <= 1e-12
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mechanism"] == "posted_price"
    assert summary["provenance"]["mechanism_plugin"]["package"] == "posted-price-mechanism"
