"""A strategy defined outside market-sim: registered, validated, run, recorded and documented.

The test's plugin is a pacing bidder: it bids ``shade x valuation`` and after each round moves
``shade`` by ``step x (target - mean payment)`` within [0, 1], a state recorded as the
``strategy_shade`` column. Its update is checked against the recorded payments, so the market
must have called the plugin's code, in order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import polars as pl
import pytest

from market_sim.cli import main
from market_sim.config.fields import FloatRange, IntRange, ScenarioError
from market_sim.market.strategies import Feedback, StrategySetup
from market_sim.platform.base import Report
from market_sim.run import run_scenario
from market_sim.scenario import scenario_from_dict
from market_sim.scenario import strategy_plugins as registry
from market_sim.scenario.key_reference import render_key_reference
from market_sim.scenario.strategy_plugins import (
    StrategyPlugin,
    register_strategy,
    registered_strategy,
)


class PacedBidder:
    """Bid shade x valuation; move shade toward a target payment per auction."""

    def __init__(self, shade: float, step: float, target: float) -> None:
        self.shade, self.step, self.target = shade, step, target

    def report(self, valuation: float, query: str, rng: np.random.Generator) -> Report:
        return Report(self.shade * valuation)

    def update(self, feedback: Feedback) -> None:
        self.update_round([feedback])

    def update_round(self, feedbacks: Sequence[Feedback]) -> None:
        spent = float(np.mean([feedback.payment for feedback in feedbacks]))
        self.shade = min(1.0, max(0.0, self.shade + self.step * (self.target - spent)))

    def state(self) -> dict[str, float]:
        return {"shade": self.shade}

    def snapshot(self) -> dict[str, Any]:
        return {"kind": "paced", "shade": self.shade}


def paced(params: Mapping[str, Any], setup: StrategySetup) -> PacedBidder:
    return PacedBidder(params["initial_shade"], params["step"], params["target"])


PACED = StrategyPlugin(
    kind="paced",
    summary="bids a shaded valuation, paced toward a target payment per auction.",
    params={
        "initial_shade": FloatRange(min=0.0, max=1.0, default=0.8),
        "step": FloatRange(min=0.0, max=10.0, default=0.5),
        "target": FloatRange(min=0.0, max=1e6, default=0.1),
    },
    param_docs={
        "initial_shade": "The first rounds' bid / valuation.",
        "step": "How far one round's overspend moves the shade.",
        "target": "The payment per auction the bidder aims at.",
    },
    factory=paced,
)


def scenario_data(model_dir, strategy: dict, auctions: int = 4) -> dict:
    return {
        "name": "paced",
        "seed": 2,
        "rounds": 6,
        "auctions_per_round": auctions,
        "model": {"path": str(model_dir), "device": "cpu"},
        "mechanism": {"kind": "first_price", "reply": "cached", "max_new_tokens": 4},
        "queries": {"items": ["vacation in Hawaii"]},
        "regret": {"every": 2},
        "advertisers": [
            {
                "name": f"Bidder {i}",
                "context": f"Bidder {i}: flights.",
                "valuation": {"dist": "uniform", "low": 0.0, "high": 1.0},
                "strategy": strategy if i == 0 else {"kind": "truthful"},
            }
            for i in range(3)
        ],
    }


def test_a_registered_strategy_runs_and_its_updates_are_the_plugins(
    random_lm, random_model_dir, tmp_path, capsys, monkeypatch
):
    from market_sim.market import array_round

    monkeypatch.setattr(array_round, "_SAID", set())  # the warning is said once per process
    with registered_strategy(PACED):
        scenario = scenario_from_dict(scenario_data(random_model_dir, {"kind": "paced"}))
        assert dict(scenario.advertisers[0].strategy.params) == {
            "initial_shade": 0.8,
            "step": 0.5,
            "target": 0.1,
        }
        result = run_scenario(scenario, out_dir=tmp_path / "run", lm=random_lm)
    agents = result.agents.filter(pl.col("agent") == "Bidder 0")
    rounds = agents.group_by("round", maintain_order=True).agg(
        pl.col("payment").mean(), pl.col("strategy_shade").first()
    )
    shade = 0.8
    for row in rounds.iter_rows(named=True):
        assert row["strategy_shade"] == shade  # the state column: shade at the round's start
        shade = min(1.0, max(0.0, shade + 0.5 * (0.1 - row["payment"])))
    np.testing.assert_array_equal(  # every bid is shade x valuation of its round
        agents["bid"].to_numpy(),
        agents["strategy_shade"].to_numpy() * agents["valuation"].to_numpy(),
    )
    assert rounds["strategy_shade"].n_unique() > 1  # it did move
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    origin = summary["provenance"]["strategy_plugins"]["paced"]
    assert origin["module"] == "test_strategy_plugins" and origin["package"] is None
    assert len(origin["sources"]["test_strategy_plugins"]) == 64  # its source's sha256
    learners = json.loads((tmp_path / "run" / "learners.json").read_text())
    assert learners["Bidder 0"] == {"kind": "paced", "shade": shade}
    assert "advertiser 'Bidder 0' (paced) has no array learner" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        (
            {"kind": "paced", "step": 11},
            "advertisers[0].strategy.step: must be between 0 and 10, got 11.0",
        ),
        (
            {"kind": "paced", "shade": 0.5},
            "advertisers[0].strategy.shade: unknown key; allowed keys: initial_shade, kind, step, "
            "target",
        ),
    ],
)
def test_a_plugin_strategys_parameters_are_checked_like_a_built_in_kinds(
    random_model_dir, strategy, message
):
    with registered_strategy(PACED), pytest.raises(ScenarioError) as caught:
        scenario_from_dict(scenario_data(random_model_dir, strategy))
    assert str(caught.value) == message


def test_an_unregistered_kind_says_where_kinds_come_from(random_model_dir):
    with pytest.raises(ScenarioError) as caught:
        scenario_from_dict(scenario_data(random_model_dir, {"kind": "paced"}))
    assert "unknown value 'paced'" in str(caught.value)
    assert "register_strategy in a script's process, or a market_sim.strategies entry point" in (
        str(caught.value)
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "hedge"}, "strategy kind 'hedge' is already registered"),
        ({"kind": "Paced"}, "strategy kind 'Paced': use lowercase letters, digits and _"),
        ({"param_docs": {}}, "parameter 'initial_shade' has no doc (param_docs)"),
        ({"params": {"kind": FloatRange(default=1.0)}}, "parameter 'kind' must be a lowercase"),
        ({"params": {"a.b": FloatRange(default=1.0)}}, "parameter 'a.b' must be a lowercase"),
        (
            {"params": {"x": FloatRange(min=0.0, max=1.0, default=5.0)}},
            "the default of x: must be between 0 and 1, got 5.0",
        ),
        (
            {"params": {"multiplier_count": IntRange(min=1, max=9, default=3)}},
            "parameter 'multiplier_count' is checked against multiplier_min, multiplier_max",
        ),
        ({"summary": "two\nlines"}, "summary and param_docs must be one-line strings"),
        ({"kind": None}, "kind must be a str and params a mapping"),
        ({"params": {"x": FloatRange(min=0.0, max=1.0)}}, "parameter 'x' needs a default"),
        ({"factory": None}, "factory is not callable"),
    ],
)
def test_a_malformed_plugin_is_refused_when_it_registers(change, message):
    fields = {**PACED.__dict__, **change}
    with pytest.raises(ValueError) as caught:
        register_strategy(StrategyPlugin(**fields))
    assert message in str(caught.value)
    assert not registry.strategy_plugins()  # nothing half-registered


def test_the_key_reference_documents_a_registered_strategy_only_when_asked():
    with registered_strategy(PACED):
        every = render_key_reference(every_plugin=True)
        shipped = render_key_reference()
    assert '`advertisers[].strategy` with `kind = "paced"`' in every
    assert "How far one round's overspend moves the shade." in every
    assert "paced" not in shipped


@pytest.fixture
def installed_paced(monkeypatch):
    """PACED as an installed package's entry point (as `pip install` of a package would)."""
    entry = SimpleNamespace(
        name="paced",
        value="test_strategy_plugins:PACED",
        dist=SimpleNamespace(name="paced-bidder", version="0.2.0"),
        load=lambda: PACED,
    )
    monkeypatch.setattr(registry, "entry_points", lambda group: [entry])
    monkeypatch.setattr(registry, "_ENTRY_POINTS_LOADED", [])
    try:
        yield entry
    finally:
        registry.unregister_strategy("paced")


def test_an_installed_strategy_runs_from_the_command_line(
    installed_paced, random_model_dir, tmp_path, capsys
):
    scenario = tmp_path / "paced.toml"
    import tomli_w

    scenario.write_text(tomli_w.dumps(scenario_data(random_model_dir, {"kind": "paced"})))
    out = tmp_path / "run"
    assert main(["run", str(scenario), "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    origin = summary["provenance"]["strategy_plugins"]["paced"]
    assert (origin["package"], origin["version"]) == ("paced-bidder", "0.2.0")


def test_a_broken_strategy_entry_point_is_skipped_in_one_line(monkeypatch, capsys):
    def fail():
        raise ImportError("no module named 'pacing'")

    entry = SimpleNamespace(
        name="paced", value="pacing:PACED", dist=SimpleNamespace(name="pacing"), load=fail
    )
    monkeypatch.setattr(registry, "entry_points", lambda group: [entry])
    monkeypatch.setattr(registry, "_ENTRY_POINTS_LOADED", [])
    monkeypatch.setattr(registry, "_SKIPPED", [])
    monkeypatch.delenv(registry.WARNED_ENV, raising=False)
    assert registry.strategy_plugins() == {}
    assert capsys.readouterr().err == (
        "market-sim: warning: strategy entry point 'paced' (pacing:PACED, package pacing) "
        "skipped: ImportError: no module named 'pacing'\n"
    )
    assert "a strategy plugin failed to load: entry point 'paced'" in registry.unknown_kind_hint()


class NanBidder(PacedBidder):
    def report(self, valuation: float, query: str, rng: np.random.Generator) -> Report:
        return Report(float("nan"))


def test_a_strategy_reporting_nan_stops_the_run_in_one_line(random_model_dir, tmp_path, capsys):
    """It ended in a traceback; a mechanism's mistake already got one line (exit 1)."""
    broken = StrategyPlugin(
        kind="nan_bidder",
        summary="bids NaN.",
        params={},
        param_docs={},
        factory=lambda params, setup: NanBidder(0.5, 0.0, 0.0),
    )
    import tomli_w

    scenario = tmp_path / "nan.toml"
    scenario.write_text(tomli_w.dumps(scenario_data(random_model_dir, {"kind": "nan_bidder"})))
    with registered_strategy(broken):
        status = main(["run", str(scenario), "--out", str(tmp_path / "run"), "--no-progress"])
    assert status == 1
    error = capsys.readouterr().err.splitlines()[-1]
    assert error == (
        "market-sim: error: advertiser 'Bidder 0': strategy produced an invalid "
        "Report(bid=nan, report_scale=1.0) (bids must be finite and >= 0, report scales finite "
        "and > 0)"
    )
    assert not (tmp_path / "run" / "summary.json").exists()


def test_a_checkpoint_of_other_strategy_code_is_not_resumed(random_lm, random_model_dir):
    """The checkpoint identity holds the plugin's source hash: a run interrupted and resumed
    after the strategy's code changed starts over instead of mixing two learners."""
    from market_sim.run import build_market
    from market_sim.run_resume import checkpoint_identity

    with registered_strategy(PACED):
        scenario = scenario_from_dict(scenario_data(random_model_dir, {"kind": "paced"}))
        market, toml = build_market(scenario, random_lm)
        identity = checkpoint_identity(market, random_lm, toml, [scenario.seed])
    origin = identity["strategy_plugins"]["paced"]
    assert origin["module"] == "test_strategy_plugins"
    assert len(origin["sources"]["test_strategy_plugins"]) == 64  # compared on resume


def test_a_sweep_reruns_a_run_whose_strategy_code_changed(
    random_model_dir, tmp_path, capsys, monkeypatch
):
    """As for mechanism plugins: the run id hashes the scenario, not the strategy's code."""
    import tomli_w

    from market_sim.sweep import run_sweep

    scenario = tmp_path / "paced.toml"
    data = {**scenario_data(random_model_dir, {"kind": "paced"}), "rounds": 2}
    scenario.write_text(tomli_w.dumps(data))
    out = tmp_path / "sweep"
    with registered_strategy(PACED):
        assert run_sweep(scenario, [], "0-1", out, progress=False).executed == 2
        assert run_sweep(scenario, [], "0-1", out, progress=False).executed == 0  # same code
        capsys.readouterr()
        from market_sim.plugins import origin

        monkeypatch.setattr(origin, "source_sha256", lambda module: "0" * 64)  # an edit
        again = run_sweep(scenario, [], "0-1", out, progress=False)
    assert again.executed == 2
    assert "was made with other code of strategy plugin(s) 'paced'; running it again" in (
        capsys.readouterr().err
    )
    assert (
        again.runs["provenance.strategy_plugins.paced.sources.test_strategy_plugins"].to_list()
        == ["0" * 64] * 2
    )


def test_registered_strategy_leaves_a_plugin_registered_before_it():
    register_strategy(PACED)
    try:
        with registered_strategy(PACED):
            pass
        assert "paced" in registry.strategy_plugins()
    finally:
        registry.unregister_strategy("paced")


def test_the_origin_hashes_the_class_a_factory_builds_and_unwraps_partials():
    """Found by a review: a lambda factory in a script building a class of another module
    hashed only the script, and a functools.partial factory hashed functools itself."""
    import functools

    wrapped = StrategyPlugin(**{**PACED.__dict__, "factory": functools.partial(paced)})
    with registered_strategy(wrapped):
        origin = registry.strategy_origin("paced", ["market_sim.market.learners", "json"])
    assert origin["module"] == "test_strategy_plugins"  # paced's module, not functools
    assert sorted(origin["sources"]) == ["json", "test_strategy_plugins"]  # market-sim's left out


class WordyBidder(PacedBidder):
    def state(self) -> dict[str, Any]:
        return {"mode": "pacing"}


def test_a_state_that_is_not_a_number_stops_the_run_in_one_line(
    random_lm, random_model_dir, tmp_path
):
    """It failed in polars, with a traceback, once the records were written after the run."""
    from market_sim.market.strategies import StrategyOutputError

    wordy = StrategyPlugin(
        **{**PACED.__dict__, "kind": "wordy", "factory": lambda p, s: WordyBidder(0.5, 0, 0)}
    )
    with registered_strategy(wordy), pytest.raises(StrategyOutputError) as caught:
        scenario = scenario_from_dict(scenario_data(random_model_dir, {"kind": "wordy"}))
        run_scenario(scenario, out_dir=tmp_path / "run", lm=random_lm)
    assert str(caught.value) == (
        "advertiser 'Bidder 0': strategy state 'mode' must be a finite number (a column "
        "strategy_mode), got 'pacing'"
    )
