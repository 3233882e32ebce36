"""Mechanism plugins: the shipped example (examples/posted_price_plugin, outside the package)
runs end to end, and every kind's keys, dumps, run ids and error messages derive from its plugin."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from posted_price_mechanism import (
    PLUGIN,
    PostedPriceConfig,
    PostedPriceCounterfactual,
    PostedPricePlatform,
    posted_price_shares,
)

from market_sim.config.fields import Choice, Text
from market_sim.config.settings import amount, setting
from market_sim.platform.base import (
    CounterfactualValues,
    Report,
    ReportSpace,
)
from market_sim.platform.outcome_checks import MechanismOutputError
from market_sim.plugins import (
    MechanismConfig,
    MechanismPlugin,
    build_platform,
    mechanism_kinds,
    mechanism_plugin,
    mechanism_plugins,
    register_mechanism,
    registered,
)
from market_sim.plugins.origin import CODE_HASH, plugin_origin
from market_sim.run import run_replicates, run_scenario, with_mechanism_choices
from market_sim.scenario import ScenarioError, dump_scenario_toml, scenario_from_dict

ROOT = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------- the shipped example plugin


def code_sha256(path: Path) -> str:
    """SHA-256 of a module's code as parsed (comments and formatting left out), hashed here."""
    code = ast.unparse(ast.parse(path.read_text(encoding="utf-8")))
    return hashlib.sha256(code.encode()).hexdigest()


EXAMPLE_MODULE = ROOT / "examples" / "posted_price_plugin" / "posted_price_mechanism.py"
POSTED_PRICE = PLUGIN  # the README's example, installable (examples/posted_price_plugin)


def posted_price_data(random_model_dir: Path, **mechanism: object) -> dict:
    return {
        "name": "posted",
        "seed": 3,
        "rounds": 300,
        "model": {"path": str(random_model_dir), "device": "cpu"},
        "mechanism": {"kind": "posted_price", "price": 0.4, **mechanism},
        "queries": {"items": ["q"]},
        "advertisers": [
            {
                "name": f"Bidder {index}",
                "context": "ctx",
                "valuation": {"dist": "uniform", "low": 0.0, "high": 1.0},
            }
            for index in range(3)
        ],
    }


def test_a_plugin_defined_in_a_test_runs_through_parsing_market_results_and_regret(
    random_lm, random_model_dir, tmp_path
):
    with registered(POSTED_PRICE):
        assert mechanism_kinds()[-1] == "posted_price"
        scenario = scenario_from_dict(posted_price_data(random_model_dir))
        assert scenario.mechanism == PostedPriceConfig(max_new_tokens=24, price=0.4)
        dumped = tomllib.loads(dump_scenario_toml(scenario))["mechanism"]
        assert dumped == {
            "kind": "posted_price",
            "max_new_tokens": 24,
            "temperature": 1.0,
            "price": 0.4,
        }
        result = run_scenario(scenario, out_dir=tmp_path / "run", lm=random_lm)
        with pytest.raises(ScenarioError) as caught:
            scenario_from_dict(posted_price_data(random_model_dir, tau=0.5))
    assert "posted_price" not in mechanism_kinds()  # unregistered on leaving the block
    assert str(caught.value) == (
        "mechanism.tau: the posted price (kind 'posted_price') does not read this key; it reads: "
        "max_new_tokens, temperature, price; tau is read by: mosaic"
    )
    agents = result.agents
    # Allocation and payment are the closed form of the posted price, round by round.
    valuations = agents["valuation"].to_numpy().reshape(-1, 3)
    shares = np.stack([posted_price_shares(row, 0.4) for row in valuations])  # truthful bids
    np.testing.assert_allclose(agents["allocation"].to_numpy().reshape(-1, 3), shares)
    np.testing.assert_allclose(agents["payment"].to_numpy().reshape(-1, 3), 0.4 * shares)
    # Conservation: revenue is the sum of the payments.
    paid = agents.group_by("round").agg(pl.col("payment").sum()).sort("round")["payment"]
    np.testing.assert_allclose(result.rounds.sort("round")["revenue"], paid, rtol=1e-12)
    # The posted price is truthful: the regret search finds no profitable bid deviation (bids
    # above the price win the same share, bids below win nothing), up to float rounding.
    assert result.summary["regret_max"] <= 1e-12
    # ... and the search ran on this plugin's counterfactual: the truthful utility it measured is
    # the realized one, (v - price) x share, in every measured agent-round.
    measured = agents.filter(pl.col("regret").is_not_null())
    assert measured.height > 0
    np.testing.assert_allclose(measured["truthful_utility"], measured["utility"], rtol=1e-12)
    np.testing.assert_allclose(
        measured["utility"],
        (measured["valuation"] - 0.4) * measured["allocation"],
        rtol=1e-12,
        atol=1e-15,
    )
    written = tomllib.loads((tmp_path / "run" / "scenario.toml").read_text())
    assert written["mechanism"] == dumped
    # The mechanism is the example's code, not market-sim's: the summary says where it comes
    # from (imported from its folder here, not installed: no distribution provides it).
    assert result.summary["provenance"]["mechanism_plugin"] == {
        "name": "posted_price",
        "module": "posted_price_mechanism",
        "package": None,
        "version": None,
        # its config, build, report_space and platform are all defined in that one module
        "sources": {"posted_price_mechanism": code_sha256(EXAMPLE_MODULE)},
        "code_hash": CODE_HASH,
    }
    assert pl.read_parquet(tmp_path / "run" / "agents.parquet").height == 300 * 3


def test_the_posted_price_counterfactual_is_its_closed_form():
    counterfactual = PostedPriceCounterfactual(np.array([0.9, 0.2, 0.5]), 0.4)
    values = counterfactual.evaluate(1, [Report(0.1), Report(0.4), Report(3.0)])
    # agent 1 under bids below, at and above the price; agents 0 and 2 accept (0.9, 0.5 >= 0.4)
    np.testing.assert_array_equal(values.allocations, [0.0, 1 / 3, 1 / 3])
    np.testing.assert_array_equal(values.payments, [0.0, 0.4 / 3, 0.4 / 3])


def test_a_plugin_cannot_take_a_registered_kind():
    clash = MechanismPlugin(
        name="other",
        kinds=("mosaic",),
        title="a clash",
        summary="",
        config_type=PostedPriceConfig,
        build=POSTED_PRICE.build,
        report_space=POSTED_PRICE.report_space,
    )
    message = "'mosaic' is already registered by plugin 'mosaic'"
    with pytest.raises(ValueError, match=message), registered(clash):
        pass
    assert mechanism_plugin("mosaic").name == "mosaic"


# ----------------------------------------------------------------------------- built-in plugins


def test_the_must_hold_message_names_the_token_auction_and_its_keys():
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "market_sim",
            "run",
            "scenarios/hawaii.toml",
            "--set",
            "mechanism.tau=0.5",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr == (
        "market-sim: error: mechanism.tau: the token auction (kind 'token_auction') does not read "
        "this key; it reads: max_new_tokens, temperature, aggregation, payment, settlement, "
        "platform_weight, integration_nodes; tau is read by: mosaic\n"
    )


def minimal(mechanism: dict) -> dict:
    return {
        "mechanism": mechanism,
        "queries": {"items": ["q"]},
        "advertisers": [
            {"name": "A", "context": "a", "valuation": {"dist": "fixed", "value": 1.0}}
        ],
    }


@pytest.mark.parametrize("kind", mechanism_kinds())
def test_each_kind_dumps_exactly_the_keys_its_plugin_reads(kind):
    plugin = mechanism_plugin(kind)
    scenario = scenario_from_dict(minimal({"kind": kind}))
    assert isinstance(scenario.mechanism, plugin.config_type)
    dumped = tomllib.loads(dump_scenario_toml(scenario))["mechanism"]
    assert list(dumped) == [
        "kind",
        *(item.name for item in plugin.read_settings(scenario.mechanism)),
    ]
    assert scenario_from_dict({**minimal(dumped)}) == scenario  # the dump loads back equal
    foreign = next(
        item.name
        for other in mechanism_plugins()
        for item in other.settings
        if all(item.name != own.name for own in plugin.settings)
    )
    with pytest.raises(ScenarioError) as caught:
        scenario_from_dict(minimal({"kind": kind, foreign: 1}))
    assert caught.value.key == f"mechanism.{foreign}"
    assert f"(kind '{kind}') does not read this key; it reads: " in caught.value.message


def test_adding_a_key_to_one_kind_does_not_rename_another_kinds_runs():
    data = minimal({"kind": "gsp"})
    before = dump_scenario_toml(scenario_from_dict(data))
    with registered(POSTED_PRICE):  # a new kind with a new key
        assert dump_scenario_toml(scenario_from_dict(data)) == before


def test_gated_keys_are_read_only_with_their_policy_space():
    fine_tuned = {"kind": "affine_maximizer", "policy_space": "fine_tuned", "candidates": 8}
    with pytest.raises(ScenarioError) as caught:
        scenario_from_dict(minimal(fine_tuned))
    assert str(caught.value).startswith(
        "mechanism.candidates: the affine maximizer with policy_space = 'fine_tuned' (it reads it "
        "with policy_space = 'candidates') does not read this key; it reads: "
    )
    sampled = scenario_from_dict(minimal({"kind": "affine_maximizer", "candidates": 8}))
    dumped = tomllib.loads(dump_scenario_toml(sampled))["mechanism"]
    assert dumped["candidates"] == 8 and "grid_samples" not in dumped


def test_per_kind_tables_apply_to_their_kind_and_top_level_keys_win():
    table = {
        "kind": "token_auction",
        "payment": "first_price",
        "token_auction": {"payment": "none", "aggregation": "log_linear"},
        "ad_slots": {"click_through_rates": [1.0, 0.5], "reply": "cached"},
    }
    token = scenario_from_dict(minimal(table)).mechanism
    assert (token.payment, token.aggregation) == ("first_price", "log_linear")
    slots_table = {name: value for name, value in table.items() if name != "payment"}
    slots = scenario_from_dict(minimal({**slots_table, "kind": "vcg"})).mechanism
    assert slots.click_through_rates == (1.0, 0.5) and slots.reply == "cached"
    with pytest.raises(ScenarioError) as caught:
        scenario_from_dict(minimal({**table, "ad_slots": {"tau": 1.0}}))
    assert caught.value.key == "mechanism.ad_slots.tau"


def test_every_platform_reads_the_report_its_plugin_declares(random_lm):
    for kind in mechanism_kinds():
        plugin = mechanism_plugin(kind)
        config = plugin.config_type(kind=kind)
        platform = build_platform(config, random_lm)
        assert platform.report_space == plugin.report_space(config), kind


def test_an_installed_package_registers_a_plugin_through_its_entry_point(monkeypatch):
    from market_sim.plugins import registry

    class EntryPoint:
        name, value = "posted_price", "posted:POSTED_PRICE"
        dist = SimpleNamespace(name="posted-price-mechanism", version="1.2.3")

        def load(self):
            return POSTED_PRICE

    asked = []

    def entry_points(group):
        asked.append(group)
        return [EntryPoint()]

    monkeypatch.setattr(registry, "entry_points", entry_points)
    monkeypatch.setattr(registry, "_ENTRY_POINTS_LOADED", [])
    try:
        assert mechanism_plugin("posted_price") is POSTED_PRICE
        assert asked == ["market_sim.mechanisms"]
        mechanism_kinds()
        assert asked == ["market_sim.mechanisms"]  # loaded once per process
        # The installed package and its version go into a run's provenance.
        assert plugin_origin("posted_price") == {
            "name": "posted_price",
            "module": "posted_price_mechanism",
            "package": "posted-price-mechanism",
            "version": "1.2.3",
            # an editable install keeps its version across edits: the sources say what ran
            "sources": {"posted_price_mechanism": code_sha256(EXAMPLE_MODULE)},
            "code_hash": CODE_HASH,
        }
        assert plugin_origin("second_price") is None  # built in: market-sim's version pins it
    finally:
        registry.unregister_mechanism("posted_price")


def test_a_broken_entry_point_is_skipped_with_one_line_naming_it(
    monkeypatch, capsys, random_model_dir
):
    """One broken package used to stop every command, built-in scenarios included."""
    from market_sim.plugins import registry

    class Package:
        name = "broken-plugins"

    class EntryPoint:
        dist = Package()

        def __init__(self, name, loaded):
            self.name, self.value, self.loaded = name, f"broken:{name}", loaded

        def load(self):
            if isinstance(self.loaded, Exception):
                raise self.loaded
            return self.loaded

    found = [
        EntryPoint("missing", ModuleNotFoundError("No module named 'broken'")),
        EntryPoint("config", PostedPriceConfig),  # the config class, not the plugin
        EntryPoint("posted_price", POSTED_PRICE),
    ]
    monkeypatch.setattr(registry, "entry_points", lambda group: found)
    monkeypatch.setattr(registry, "_ENTRY_POINTS_LOADED", [])
    monkeypatch.setattr(registry, "_SKIPPED_ENTRY_POINTS", [])
    monkeypatch.delenv(registry.WARNED_ENV, raising=False)
    try:
        assert mechanism_plugin("posted_price") is POSTED_PRICE  # the good one still loads
        assert "token_auction" in mechanism_kinds()
        with pytest.raises(ScenarioError) as caught:  # the kind of the plugin that failed
            scenario_from_dict(posted_price_data(random_model_dir, kind="all_pay"))
    finally:
        registry.unregister_mechanism("posted_price")
    assert caught.value.message.endswith(
        " (a mechanism plugin failed to load: entry point 'missing' (broken:missing, package "
        "broken-plugins): ModuleNotFoundError: No module named 'broken'; entry point 'config' "
        "(broken:config, package broken-plugins): TypeError: loads a type, not a "
        "MechanismPlugin)"
    ), caught.value.message
    assert capsys.readouterr().err.splitlines() == [
        "market-sim: warning: mechanism entry point 'missing' (broken:missing, package "
        "broken-plugins) skipped: ModuleNotFoundError: No module named 'broken'",
        "market-sim: warning: mechanism entry point 'config' (broken:config, package "
        "broken-plugins) skipped: TypeError: loads a type, not a MechanismPlugin",
    ]
    monkeypatch.setattr(registry, "_ENTRY_POINTS_LOADED", [])  # a sweep worker loads again
    try:
        assert mechanism_plugin("posted_price") is POSTED_PRICE
    finally:
        registry.unregister_mechanism("posted_price")
    assert capsys.readouterr().err == ""  # warned once per process tree (the mark is inherited)


def test_a_built_in_cannot_be_replaced_or_lost_by_a_test_registration():
    patched = dataclasses.replace(mechanism_plugin("mosaic"), title="patched")
    message = "'mosaic' is already registered by plugin 'mosaic'"
    with pytest.raises(ValueError, match=message), registered(patched):
        pass
    assert mechanism_plugin("mosaic").title == "MOSAIC"
    assert "mosaic" in mechanism_kinds()


@dataclass(frozen=True)
class ClashingConfig(MechanismConfig):
    kind: str = "clashing"
    device: str = setting(Choice(("here", "there"), default="here"), "Named like a summary field.")


@dataclass(frozen=True)
class TextRunIdConfig(MechanismConfig):
    kind: str = "clashing"
    run_id: str | None = setting(Text(default=None), "Free text named like a summary field.")


@dataclass(frozen=True)
class NumericSeedConfig(MechanismConfig):
    kind: str = "clashing"
    seed: float = setting(amount(default=0.5), "A number named like a summary field.")


def test_a_key_named_like_a_summary_field_is_refused_when_the_plugin_registers():
    """A run records its mechanism's string keys beside its own fields in summary.json: a key
    named ``device`` was refused only after the whole run had been simulated."""
    clashing = MechanismPlugin(
        name="clashing",
        kinds=("clashing",),
        title="a clash",
        summary="",
        config_type=ClashingConfig,
        build=POSTED_PRICE.build,
        report_space=POSTED_PRICE.report_space,
    )
    with pytest.raises(ValueError) as caught, registered(clashing):
        pass
    assert str(caught.value) == (
        "mechanism plugin 'clashing': its key 'device' is named like a summary.json field, "
        "where a run records its mechanism's keys: rename it"
    )
    assert "clashing" not in mechanism_kinds()
    # any key that may hold a string, a free text one too, would overwrite the field
    texting = dataclasses.replace(clashing, config_type=TextRunIdConfig)
    with pytest.raises(ValueError, match="its key 'run_id' is named like a summary.json field"):
        register_mechanism(texting)
    # a number is not recorded beside the summary's fields: a key "seed" is the plugin's own
    numeric = dataclasses.replace(clashing, config_type=NumericSeedConfig)
    with registered(numeric):
        assert "clashing" in mechanism_kinds()
    # the built-in plugins pass the same check when they register; stated here as well
    from market_sim.plugins.registry import is_string_valued
    from market_sim.results import SUMMARY_FIELDS

    for plugin in mechanism_plugins():
        strings = {item.name for item in plugin.settings if is_string_valued(item)}
        assert not strings & SUMMARY_FIELDS, plugin.name
    with registered(POSTED_PRICE):  # no string-valued key: nothing added
        assert with_mechanism_choices({"model": "m"}, PostedPriceConfig()) == {"model": "m"}


def test_a_per_kind_table_that_is_not_a_table_is_named():
    with pytest.raises(ScenarioError) as caught:
        scenario_from_dict(minimal({"kind": "token_auction", "ad_slots": 3}))
    assert str(caught.value) == "mechanism.ad_slots: expected a table, got 3"


def posted_price_with(platform_type):
    """The posted-price plugin, building ``platform_type(config)`` as its platform."""
    return dataclasses.replace(
        POSTED_PRICE, build=lambda config, lm, queries: platform_type(config)
    )


def posted_price_run_error(platform_type, random_lm, random_model_dir, out_dir: Path) -> str:
    """The one-line ValueError of a posted-price run whose platform is ``platform_type``."""
    plugin = posted_price_with(platform_type)
    with registered(plugin):
        scenario = scenario_from_dict(posted_price_data(random_model_dir))
        with pytest.raises(ValueError) as caught:
            run_scenario(scenario, out_dir=out_dir, lm=random_lm)
    return str(caught.value)


class RevenueOverwritingPlatform(PostedPricePlatform):
    """Reports extras named like columns the market computes."""

    extras: dict[str, float] = {}

    def run_auctions(self, queries, bidders, seed):
        outcomes = super().run_auctions(queries, bidders, seed)
        return [dataclasses.replace(o, extras=self.extras) for o in outcomes]


def test_an_extra_named_like_a_core_column_is_refused(random_lm, random_model_dir, tmp_path):
    """It replaced the row's revenue (sum of payments) without a word: revenue 123, exit 0."""
    for extras, named in [
        ({"revenue": 123.0, "extra_fine": 1.0}, "['revenue']"),
        ({"query_id": 7.0}, "['query_id']"),  # the eva stream's column, absent from this row
    ]:
        RevenueOverwritingPlatform.extras = extras
        message = posted_price_run_error(
            RevenueOverwritingPlatform, random_lm, random_model_dir, tmp_path / "run"
        )
        assert message == (
            f"mechanism 'posted_price': AuctionOutcome.extras {named} would overwrite the "
            "columns the market computes; name them extra_<name>"
        )


@dataclass(frozen=True)
class BadDefaultConfig(MechanismConfig):
    kind: str = "bad_default"
    tie_break: str = setting(Choice(("random", "lowest_index"), default="coin"), "A bad default.")


def test_a_default_its_own_spec_refuses_is_refused_when_the_plugin_is_made():
    """It ran, and recorded tie_break = 'coin' in a scenario.toml that then failed to load."""
    with pytest.raises(ValueError) as caught:
        dataclasses.replace(POSTED_PRICE, name="bad_default", config_type=BadDefaultConfig)
    assert str(caught.value) == (
        "mechanism plugin 'bad_default': the default of tie_break: unknown value 'coin'; "
        "allowed: random, lowest_index"
    )


@dataclass(frozen=True)
class PlainFieldConfig(MechanismConfig):
    kind: str = "plain_field"
    reserve: float = 0.0  # no setting(): scenarios could never set it


class UndecoratedConfig(PostedPriceConfig):  # no @dataclass: its field is not a dataclass field
    reserve: float = setting(amount(default=0.0), "Never seen.")


def test_a_config_field_that_no_key_can_set_is_refused_when_the_plugin_is_made():
    """Both ran; `mechanism.reserve` was then refused as a key the mechanism does not read."""
    with pytest.raises(TypeError) as caught:
        dataclasses.replace(POSTED_PRICE, name="plain_field", config_type=PlainFieldConfig)
    assert str(caught.value) == (
        "mechanism plugin 'plain_field': PlainFieldConfig.reserve is declared without "
        "setting(spec, doc), so no scenario key reads it; declare it as "
        "reserve: ... = setting(FloatRange(...), 'what it is')"
    )
    with pytest.raises(TypeError) as caught:
        dataclasses.replace(POSTED_PRICE, name="undecorated", config_type=UndecoratedConfig)
    assert str(caught.value) == (
        "mechanism plugin 'undecorated': UndecoratedConfig must be declared "
        "@dataclass(frozen=True) itself (a subclass without it adds no keys)"
    )


def test_a_plugin_named_like_a_key_or_with_a_key_named_like_a_plugin_is_refused():
    """[mechanism.<plugin>] tables: a plugin named 'payment' broke every token-auction scenario."""
    named_like_a_key = dataclasses.replace(POSTED_PRICE, name="payment")
    with pytest.raises(ValueError) as caught, registered(named_like_a_key):
        pass
    assert str(caught.value) == (
        "mechanism plugin 'payment' is named like a key of plugin 'token_auction' "
        "([mechanism.<plugin>] tables would clash): rename it"
    )
    own_key = dataclasses.replace(POSTED_PRICE, name="price")
    with pytest.raises(ValueError) as caught, registered(own_key):
        pass
    assert str(caught.value) == (
        "mechanism plugin 'price': its key 'price' is named like the plugin itself or another "
        "([mechanism.<plugin>] tables would clash): rename it"
    )
    with pytest.raises(ValueError, match="named like a key of plugin 'every plugin'"):
        register_mechanism(dataclasses.replace(POSTED_PRICE, name="kind"))
    assert not {"payment", "kind"} & {plugin.name for plugin in mechanism_plugins()}


class OneArgumentEngine:
    """A counterfactual whose evaluate forgot the agent: it failed deep in the regret search."""

    def evaluate(self, reports):
        raise AssertionError("never called: refused when its outcome arrives")


class MistakenPlatform(PostedPricePlatform):
    """Returns outcomes (or counterfactual values) with one field made wrong by ``mistake``."""

    mistake: dict[str, object] = {}
    counterfactual_mistake: object = None

    def run_auctions(self, queries, bidders, seed):
        outcomes = super().run_auctions(queries, bidders, seed)
        if "outcomes" in self.mistake:
            return self.mistake["outcomes"]
        mistaken = [dataclasses.replace(o, **self.mistake) for o in outcomes]
        if self.counterfactual_mistake is None:
            return mistaken
        values = self.counterfactual_mistake
        engine = type("Engine", (), {"evaluate": lambda self, agent, reports: values})()
        return [dataclasses.replace(o, counterfactual=engine) for o in mistaken]


@pytest.mark.parametrize(
    ("mistake", "counterfactual_mistake", "message"),
    [
        (
            {"payments": np.zeros(2)},
            None,
            "AuctionOutcome.payments must be 3 real numbers (one per advertiser), got ndarray "
            "of shape (2,) and dtype float64",
        ),
        (
            {"allocations": [0.5, float("nan"), 0.5]},
            None,
            "AuctionOutcome.allocations holds a NaN or infinite value",
        ),
        (
            {"reported_allocations": np.array(["a", "b", "c"])},
            None,
            "AuctionOutcome.reported_allocations must be 3 real numbers (one per advertiser), "
            "got ndarray of shape (3,) and dtype <U1",
        ),
        (
            {"user_value": None},
            None,
            "AuctionOutcome.user_value must be a real number, got NoneType",
        ),
        ({"user_value": float("inf")}, None, "AuctionOutcome.user_value is inf"),
        ({"text": 3}, None, "AuctionOutcome.text must be a str, got int"),
        ({"outcomes": []}, None, "run_auctions returned 0 outcomes for 1 queries"),
        ({"outcomes": [{"text": ""}]}, None, "run_auctions returned a dict, not an AuctionOutcome"),
        (
            {"counterfactual": "engine"},
            None,
            "AuctionOutcome.counterfactual must have an evaluate(agent, reports) method or be "
            "None, got str",
        ),
        (
            {"counterfactual": OneArgumentEngine()},
            None,
            "AuctionOutcome.counterfactual must have an evaluate(agent, reports) method or be "
            "None, got OneArgumentEngine with evaluate(reports)",
        ),
        ({}, (0.5, 0.1), "Counterfactual.evaluate returned a tuple, not CounterfactualValues"),
        (
            {},
            CounterfactualValues(np.zeros(1), np.zeros(1)),
            "CounterfactualValues.allocations must be 11 real numbers (one per report), got "
            "ndarray of shape (1,) and dtype float64",
        ),
    ],
)
def test_a_mistaken_plugin_outcome_is_named_in_one_line_before_anything_is_recorded(
    random_lm, random_model_dir, tmp_path, mistake, counterfactual_mistake, message
):
    """A payment per query instead of per advertiser used to surface as an IndexError inside
    an advertiser's settlement, a NaN as NaN in the results, and a counterfactual's wrong shape
    as a numpy broadcasting error inside the regret search."""
    MistakenPlatform.mistake = mistake
    MistakenPlatform.counterfactual_mistake = counterfactual_mistake
    error = posted_price_run_error(MistakenPlatform, random_lm, random_model_dir, tmp_path / "run")
    assert error == f"mechanism 'posted_price': {message}"
    assert not (tmp_path / "run" / "rounds.parquet").exists()


@dataclass(frozen=True)
class JumpingCounterfactual:
    """The posted price's counterfactual with a given ``jump_bids`` answer."""

    inner: PostedPriceCounterfactual
    answer: object

    def evaluate(self, agent, reports):
        return self.inner.evaluate(agent, reports)

    def jump_bids(self, agent):
        return self.answer


class JumpingPlatform(PostedPricePlatform):
    answer: object = None

    def run_auctions(self, queries, bidders, seed):
        outcomes = super().run_auctions(queries, bidders, seed)
        return [
            dataclasses.replace(
                o, counterfactual=JumpingCounterfactual(o.counterfactual, self.answer)
            )
            for o in outcomes
        ]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            np.zeros((2, 2)),
            "Counterfactual.jump_bids must be a 1-D array of real numbers, got ndarray of shape "
            "(2, 2) and dtype float64",
        ),
        ([0.5, float("nan")], "Counterfactual.jump_bids holds a NaN or infinite value"),
        (
            [True, False],
            "Counterfactual.jump_bids must be a 1-D array of real numbers, got list of shape "
            "(2,) and dtype bool",
        ),
        (
            "0.5",
            "Counterfactual.jump_bids must be a 1-D array of real numbers, got str of shape () "
            "and dtype <U3",
        ),
    ],
)
def test_a_mistaken_jump_bids_is_named_in_one_line(
    random_lm, random_model_dir, tmp_path, answer, message
):
    JumpingPlatform.answer = answer
    error = posted_price_run_error(JumpingPlatform, random_lm, random_model_dir, tmp_path / "run")
    assert error == f"mechanism 'posted_price': {message}"
    assert not (tmp_path / "run" / "rounds.parquet").exists()


def test_jump_bids_are_asked_for_only_where_regret_is_searched(
    random_lm, random_model_dir, tmp_path
):
    """A plugin's faulty jump_bids stopped runs that never search (regret off): it was called
    on every settlement."""
    JumpingPlatform.answer = [float("nan")]
    plugin = posted_price_with(JumpingPlatform)
    with registered(plugin):
        data = {**posted_price_data(random_model_dir), "regret": {"enabled": False}}
        result = run_scenario(scenario_from_dict(data), out_dir=tmp_path / "run", lm=random_lm)
    assert result.agents["regret"].null_count() == result.agents.height


def test_jump_bids_reach_the_regret_search(random_lm, random_model_dir, tmp_path, monkeypatch):
    """The posted price's jump bid (its price) is among the searched reports of every search."""
    from market_sim.market import model as market_model

    searched = []
    original = market_model.estimate_regret

    def recording(evaluate, valuation, played, space, config, jump_bids=None):
        searched.append(jump_bids)
        return original(evaluate, valuation, played, space, config, jump_bids=jump_bids)

    monkeypatch.setattr(market_model, "estimate_regret", recording)
    JumpingPlatform.answer = [0.2]
    plugin = posted_price_with(JumpingPlatform)
    with registered(plugin):
        scenario = scenario_from_dict(posted_price_data(random_model_dir))
        run_scenario(scenario, out_dir=tmp_path / "run", lm=random_lm)
    assert searched and all(list(bids) == [0.2] for bids in searched)


class TensorOutcomePlatform(PostedPricePlatform):
    """Outcomes as torch tensors (one requiring grad) and counterfactual values as lists."""

    def run_auctions(self, queries, bidders, seed):
        import torch

        outcomes = super().run_auctions(queries, bidders, seed)
        listed = ListCounterfactual(outcomes[0].counterfactual)
        return [
            dataclasses.replace(
                o,
                allocations=torch.tensor(o.allocations, requires_grad=True),
                payments=torch.tensor(o.payments),
                user_value=torch.tensor(0.25),
                counterfactual=listed,
            )
            for o in outcomes
        ]


@dataclass(frozen=True)
class ListCounterfactual:
    inner: PostedPriceCounterfactual

    def evaluate(self, agent, reports):
        values = self.inner.evaluate(agent, reports)
        return CounterfactualValues(list(values.allocations), list(values.payments))


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True to a scalar")
def test_tensors_and_lists_from_a_plugin_are_taken_as_numbers(
    random_lm, random_model_dir, tmp_path
):
    """A 0-d tensor user value, a tensor that requires grad and counterfactual values given as
    lists are what a torch-based plugin naturally returns: recorded, not refused."""
    plugin = posted_price_with(TensorOutcomePlatform)
    with registered(plugin):
        scenario = scenario_from_dict(posted_price_data(random_model_dir))
        result = run_scenario(scenario, out_dir=tmp_path / "run", lm=random_lm)
    assert result.rounds["user_value"].to_list() == [0.25] * 300
    assert result.summary["regret_max"] <= 1e-12  # the listed counterfactual was searched


class SharingPlatform(PostedPricePlatform):
    """Shares one call among replicates (``run_auction_groups``) but drops the last batch."""

    def run_auction_groups(self, batches):
        groups = [self.run_auctions(b.queries, b.bidders, b.seed) for b in batches]
        return groups[:-1]


def test_a_plugin_returning_too_few_groups_for_its_replicates_is_named(
    random_lm, random_model_dir, tmp_path
):
    """Replicates in lockstep call ``run_auction_groups`` once for all of them: one group short
    surfaced as "zip() argument 3 is shorter than argument 1" from inside the market."""
    plugin = posted_price_with(SharingPlatform)
    with registered(plugin):
        scenario = scenario_from_dict(posted_price_data(random_model_dir))
        with pytest.raises(ValueError) as caught:
            run_replicates(scenario, [0, 1, 2], [tmp_path / str(s) for s in range(3)], random_lm)
    assert str(caught.value) == (
        "mechanism 'posted_price': run_auction_groups returned 2 lists of outcomes for 3 "
        "batches (one per replicate)"
    )
    assert not list(tmp_path.rglob("rounds.parquet"))


def audit_data(random_model_dir: Path) -> dict:
    """The bundled eva scenario auditing the posted price (one generation's worth of queries)."""
    data = tomllib.loads((ROOT / "scenarios" / "eva_queries.toml").read_text(encoding="utf-8"))
    data["model"] = {"path": str(random_model_dir), "device": "cpu"}
    data["mechanism"] = {"kind": "posted_price", "price": 0.4}
    data["audit"] = {"top": 2, "uniform": False}
    data["eva"]["rewriter"] = "grammar"  # the random model is no rewriter
    data["queries"]["items"] = data["queries"]["items"][:4]
    data["advertisers"] = data["advertisers"][:2]
    return data


def test_an_audit_of_a_plugin_records_its_origin_and_checks_its_outcomes(
    random_lm, random_model_dir, tmp_path
):
    """The audit's provenance.json named no plugin, so its regrets could not be recomputed;
    and a wrong payment count surfaced as an IndexError inside the regret search."""
    from market_sim.eva.audit import run_audit

    with registered(POSTED_PRICE):
        scenario = scenario_from_dict(audit_data(random_model_dir), ROOT / "scenarios")
        table = run_audit(scenario, random_lm, 1, [0], tmp_path / "audit")
        origin = plugin_origin("posted_price")
    assert table.height > 0 and (table["regret_max"] >= 0).all()
    record = json.loads((tmp_path / "audit" / "provenance.json").read_text(encoding="utf-8"))
    assert record["provenance"]["mechanism_plugins"] == {"posted_price": origin}
    assert origin["module"] == "posted_price_mechanism"
    assert origin["sources"] == {"posted_price_mechanism": code_sha256(EXAMPLE_MODULE)}

    MistakenPlatform.mistake = {"payments": np.zeros(1)}
    MistakenPlatform.counterfactual_mistake = None
    plugin = posted_price_with(MistakenPlatform)
    with registered(plugin), pytest.raises(ValueError) as caught:
        run_audit(scenario, random_lm, 1, [0], tmp_path / "mistaken")
    assert str(caught.value) == (
        "mechanism 'posted_price': AuctionOutcome.payments must be 2 real numbers (one per "
        "advertiser), got ndarray of shape (1,) and dtype float64"
    )


def test_a_built_in_audit_records_no_plugin(random_lm, random_model_dir, tmp_path):
    data = audit_data(random_model_dir)
    data["mechanism"] = {"kind": "second_price"}
    run_audit_of = __import__("market_sim.eva.audit", fromlist=["run_audit"]).run_audit
    run_audit_of(scenario_from_dict(data, ROOT / "scenarios"), random_lm, 1, [0], tmp_path)
    record = json.loads((tmp_path / "provenance.json").read_text(encoding="utf-8"))
    assert "mechanism_plugins" not in record["provenance"]


class LaterMistakePlatform(PostedPricePlatform):
    """Correct outcomes for five calls, then ``mistake`` applied to every outcome."""

    mistake: dict[str, object] = {}

    def __init__(self, config: PostedPriceConfig) -> None:
        super().__init__(config)
        self.calls = 0

    def run_auctions(self, queries, bidders, seed):
        self.calls += 1
        outcomes = super().run_auctions(queries, bidders, seed)
        if self.calls < 6:
            return outcomes
        return [dataclasses.replace(o, **self.mistake) for o in outcomes]


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        (
            {"payments": np.zeros(2)},
            "AuctionOutcome.payments must be 3 real numbers (one per advertiser), got ndarray "
            "of shape (2,) and dtype float64",
        ),
        (
            {"payments": np.zeros(4)},
            "AuctionOutcome.payments must be 3 real numbers (one per advertiser), got ndarray "
            "of shape (4,) and dtype float64",
        ),
        ({"text": None}, "AuctionOutcome.text must be a str, got NoneType"),
        (
            {"payments": np.full(3, np.nan)},
            "AuctionOutcome.payments holds a NaN or infinite value",
        ),
        # it went into the results silently: social_welfare_mean became NaN
        ({"user_value": float("nan")}, "AuctionOutcome.user_value is nan"),
        (
            {"counterfactual": "engine"},
            "AuctionOutcome.counterfactual must have an evaluate(agent, reports) method or be "
            "None, got str",
        ),
        (
            {"extras": {"extra_reserve": "high"}},
            "AuctionOutcome.extras['extra_reserve'] must be a real number, got str",
        ),
        (
            {"extras": {"extra_reserve": float("nan")}},
            "AuctionOutcome.extras['extra_reserve'] is nan",
        ),
        (
            {"extras": {"reserve": 0.5}},
            "AuctionOutcome.extras name 'reserve' is not a rounds.parquet column; name it "
            "extra_<name>",
        ),
    ],
)
def test_a_mistake_in_a_later_round_is_named_like_one_in_the_first(
    random_lm, random_model_dir, tmp_path, mistake, message
):
    """Shapes were checked on round 0 only: a short payment array in round 5 was an IndexError
    inside an advertiser's settlement, a long one was taken silently, and a string extra failed
    in polars after the last round."""
    LaterMistakePlatform.mistake = mistake
    error = posted_price_run_error(LaterMistakePlatform, random_lm, random_model_dir, tmp_path)
    assert error == f"mechanism 'posted_price': {message}"


def posted_price_toml(random_model_dir: Path, path: Path, rounds: int = 20) -> Path:
    """A posted-price scenario file: three advertisers of value 0.5, price 0.4."""
    lines = ['name = "posted"', "seed = 3", f"rounds = {rounds}"]
    lines += [f'[model]\npath = "{random_model_dir}"\ndevice = "cpu"']
    lines += ['[mechanism]\nkind = "posted_price"\nprice = 0.4', '[queries]\nitems = ["q"]']
    lines += [
        f'[[advertisers]]\nname = "Bidder {i}"\ncontext = "ctx"\nvaluation = {{ dist = "fixed", '
        "value = 0.5 }"
        for i in range(3)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_command_line_prints_a_plugin_mistake_in_one_line(random_model_dir, tmp_path, capsys):
    """It printed a 25-line traceback through mesa and the market, exit status 1."""
    from market_sim.cli import main

    scenario = posted_price_toml(random_model_dir, tmp_path / "posted.toml")
    LaterMistakePlatform.mistake = {"payments": np.zeros(2)}
    plugin = posted_price_with(LaterMistakePlatform)
    with registered(plugin):
        status = main(["run", str(scenario), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 1
    assert err == (
        "market-sim: error: mechanism 'posted_price': AuctionOutcome.payments must be 3 real "
        "numbers (one per advertiser), got ndarray of shape (2,) and dtype float64\n"
    )
    assert not (tmp_path / "out" / "summary.json").exists()


class NoKindPlatform(PostedPricePlatform):
    def __init__(self, config: PostedPriceConfig) -> None:
        super().__init__(config)
        del self.kind


class OtherKindPlatform(PostedPricePlatform):
    def __init__(self, config: PostedPriceConfig) -> None:
        super().__init__(config)
        self.kind = "posted_price_v2"


class ShadingPlatform(PostedPricePlatform):
    report_space = ReportSpace("shade", 0.5, 1.0)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda config: None,
            "its plugin's build returned a NoneType, not a platform with run_auctions(queries, "
            "bidders, seed)",
        ),
        (
            NoKindPlatform,
            "its platform's kind is None; it must be the scenario's mechanism.kind 'posted_price'",
        ),
        (
            OtherKindPlatform,
            "its platform's kind is 'posted_price_v2'; it must be the scenario's mechanism.kind "
            "'posted_price'",
        ),
        (
            ShadingPlatform,
            "its platform's report_space is ReportSpace(distortion='shade', distortion_low=0.5, "
            "distortion_high=1.0), its plugin's report_space(config) is ReportSpace(distortion="
            "None, distortion_low=1.0, distortion_high=1.0); they must be equal",
        ),
    ],
)
def test_a_platform_that_does_not_match_its_plugin_is_refused_when_built(
    random_lm, random_model_dir, tmp_path, build, message
):
    """A missing kind or report space was an AttributeError after the first round; another
    kind was written into every round silently; a report space other than the plugin's made
    scenario loading and the market disagree on what advertisers may report."""
    error = posted_price_run_error(build, random_lm, random_model_dir, tmp_path)
    assert error == f"mechanism 'posted_price': {message}"


PLATFORM_MODULE = """
def platform_type(base):
    # the platform's own class, defined in this file (its module is hashed)
    return type("FilePlatform", (base,), {"__module__": __name__})
"""


def test_a_sweep_reruns_a_run_whose_plugin_code_changed(
    random_model_dir, tmp_path, capsys, monkeypatch
):
    """The run id hashes the scenario, not the plugin's code: a sweep rerun after an edit of
    the plugin reused every run made with the old code, and the tables mixed both codes."""
    import importlib

    from market_sim.plugins import origin
    from market_sim.sweep import run_sweep

    code = tmp_path / "code"
    code.mkdir()
    (code / "posted_platform_file.py").write_text(PLATFORM_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(code))
    module = importlib.import_module("posted_platform_file")
    platform_type = module.platform_type(PostedPricePlatform)
    plugin = posted_price_with(platform_type)
    scenario = posted_price_toml(random_model_dir, tmp_path / "posted.toml", rounds=5)
    out = tmp_path / "sweep"
    with registered(plugin):
        first = run_sweep(scenario, [], "0-1", out, progress=False)
        sources = first.runs["provenance.mechanism_plugin.sources.posted_platform_file"]
        assert sources.n_unique() == 1 and sources[0] == origin.source_sha256(
            "posted_platform_file"
        )
        assert run_sweep(scenario, [], "0-1", out, progress=False).executed == 0  # same code
        # a comment or the __main__ block (where a script widens its seeds) is not the mechanism
        (code / "posted_platform_file.py").write_text(
            PLATFORM_MODULE + '# a note\nif __name__ == "__main__":\n    print("sweep")\n',
            encoding="utf-8",
        )
        assert run_sweep(scenario, [], "0-1", out, progress=False).executed == 0
        capsys.readouterr()
        (code / "posted_platform_file.py").write_text(  # in the same process: seen by its stat
            PLATFORM_MODULE + "RESERVE = 0.1\n", encoding="utf-8"
        )
        again = run_sweep(scenario, [], "0-1", out, progress=False)
    err = capsys.readouterr().err
    assert again.executed == 2
    assert (
        "was made with other code of mechanism plugin 'posted_price' (posted_platform_file); "
        "running it again"
    ) in err
    edited = again.runs["provenance.mechanism_plugin.sources.posted_platform_file"]
    assert edited.n_unique() == 1 and edited[0] != sources[0]
    sys.modules.pop("posted_platform_file", None)


def test_a_sweep_worker_without_the_plugin_says_where_to_register_it(random_model_dir, tmp_path):
    """A script that registers its plugin under ``if __name__ == "__main__":`` sweeps with
    spawned workers that never run that block: they failed with "mechanism.kind: unknown
    value" inside a traceback of the process pool."""
    from market_sim.sweep.backends import SweepError, SweepTask, run_task

    text = posted_price_toml(random_model_dir, tmp_path / "posted.toml").read_text()
    task = SweepTask(0, "posted-seed3", (), 3, text, (str(random_model_dir), "cpu", "float32"))
    with pytest.raises(SweepError) as caught:  # the kind is not registered in this process
        run_task(task, tmp_path / "runs")
    assert str(caught.value) == (
        "mechanism.kind 'posted_price' is registered in the sweep's process but not in this "
        'worker process, which imports the script without running its `if __name__ == "__main__"'
        ":` block: call register_mechanism at the script's top level, or install the plugin "
        "with a market_sim.mechanisms entry point"
    )
    assert not (tmp_path / "runs").exists()


class NoCounterfactualPlatform(PostedPricePlatform):
    def run_auctions(self, queries, bidders, seed):
        outcomes = super().run_auctions(queries, bidders, seed)
        return [dataclasses.replace(o, counterfactual=None) for o in outcomes]


def test_hedge_without_a_counterfactual_names_the_advertiser_and_the_alternatives(
    random_lm, random_model_dir, tmp_path
):
    """It was "hedge needs full-information feedback; the mechanism gives none" under a
    traceback, naming neither the advertiser nor what would work."""
    data = posted_price_data(random_model_dir)
    data["advertisers"][1]["strategy"] = {"kind": "hedge"}
    plugin = posted_price_with(NoCounterfactualPlatform)
    with registered(plugin):
        scenario = scenario_from_dict(data)
        with pytest.raises(MechanismOutputError) as caught:
            run_scenario(scenario, out_dir=tmp_path / "run", lm=random_lm)
        data["advertisers"][1]["strategy"] = {"kind": "exp3"}  # bandit feedback: runs
        result = run_scenario(scenario_from_dict(data), lm=random_lm)
    assert str(caught.value) == (
        "mechanism 'posted_price' gives no counterfactual, which advertisers[1].strategy.kind = "
        "'hedge' needs (full information): choose exp3, epsilon_greedy, ucb1 or policy_gradient "
        "(bandit feedback)"
    )
    assert result.agents.height == 300 * 3


def test_an_older_plugin_record_is_compared_by_its_file_bytes(tmp_path, monkeypatch):
    """Records written before ``sources`` held one ``source_sha256`` of the module's bytes:
    they were never compared, so a sweep kept their runs after any edit."""
    import importlib

    from market_sim.plugins.origin import changed_plugin_code

    (tmp_path / "older_plugin_file.py").write_text("PRICE = 0.4\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("older_plugin_file")
    recorded = {
        "name": "posted_price",
        "module": "older_plugin_file",
        "package": None,
        "version": None,
        "source_sha256": hashlib.sha256(b"PRICE = 0.4\n").hexdigest(),
    }
    assert changed_plugin_code(recorded) == []
    (tmp_path / "older_plugin_file.py").write_text("PRICE = 0.5\n", encoding="utf-8")
    assert changed_plugin_code(recorded) == ["older_plugin_file"]
    assert changed_plugin_code(None) == [] and changed_plugin_code({"name": "x"}) == []
    sys.modules.pop("older_plugin_file", None)


def test_an_audit_whose_plugin_errs_exits_1_in_one_line(random_model_dir, tmp_path, capsys):
    """``market-sim audit`` turned every ValueError into a usage error: exit 2, as if the
    command line were wrong, for a mistake of the mechanism's code."""
    import tomli_w

    from market_sim.cli import main

    scenario = tmp_path / "audit.toml"
    scenario.write_text(tomli_w.dumps(audit_data(random_model_dir)), encoding="utf-8")
    MistakenPlatform.mistake = {"payments": np.zeros(1)}
    MistakenPlatform.counterfactual_mistake = None
    plugin = posted_price_with(MistakenPlatform)
    argv = ["audit", str(scenario), "--generations", "1", "--seeds", "0"]
    with registered(plugin):
        status = main([*argv, "--out", str(tmp_path / "out")])
    assert status == 1
    assert capsys.readouterr().err.endswith(
        "market-sim: error: mechanism 'posted_price': AuctionOutcome.payments must be 2 real "
        "numbers (one per advertiser), got ndarray of shape (1,) and dtype float64\n"
    )


def test_the_code_hash_leaves_out_only_what_is_not_the_mechanism(tmp_path):
    """Comments, formatting and a ``__main__`` block that only runs things are not the
    mechanism; a ``__main__`` block that registers or defines code is (a one-worker sweep
    runs in that process), and so is its ``else:`` branch, which spawned workers run."""
    from market_sim.plugins.origin import code_sha256

    def digest(text: str | bytes, name: str = "m.py") -> str | None:
        path = tmp_path / name
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return code_sha256(path)

    base = digest("PRICE = 0.4\n")
    assert digest("PRICE = 0.4  # the posted price\n\n") == base
    sweep = 'if __name__ == "__main__":\n    run_sweep("s.toml", [], "0-{}", "out")\n'
    assert digest("PRICE = 0.4\n" + sweep.format(1)) == base
    assert digest("PRICE = 0.4\n" + sweep.format(9)) == base  # seeds widened: same code
    registering = 'if __name__ == "__main__":\n    register_mechanism(make({}))\n'
    assert digest("PRICE = 0.4\n" + registering.format(2)) != digest(
        "PRICE = 0.4\n" + registering.format(4)
    )
    building = 'if __name__ == "__main__":\n    build = lambda c: Platform(c, boost={})\n'
    assert digest("PRICE = 0.4\n" + building.format(2)) != digest(
        "PRICE = 0.4\n" + building.format(4)
    )
    otherwise = sweep.format(1) + "else:\n    PRICE = {}\n"
    assert digest("PRICE = 0.4\n" + otherwise.format(0.5)) != digest(
        "PRICE = 0.4\n" + otherwise.format(0.6)
    )
    # a file in another encoding, a compiled extension and a missing file do not crash
    latin = "# -*- coding: latin-1 -*-\nNAME = 'caf\u00e9'\n".encode("latin-1")
    assert digest(latin) is not None
    binary = b"\x7fELF\x00\xff" * 10
    assert digest(binary, "ext.so") == hashlib.sha256(binary).hexdigest()
    assert code_sha256(tmp_path / "gone.py") is None


def test_a_record_of_another_python_or_without_source_files_is_said(tmp_path, monkeypatch):
    """``ast.unparse`` writes some code differently across Python versions: a record names
    the scheme, and another scheme is a change; a module without a file (an interactive
    session) cannot be compared, and says so instead of passing as unchanged."""
    import importlib

    from market_sim.plugins.origin import CODE_HASH, changed_plugin_code, uncompared_modules

    (tmp_path / "scheme_plugin_file.py").write_text("PRICE = 0.4\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("scheme_plugin_file")
    from market_sim.plugins.origin import source_sha256

    record = {"sources": {"scheme_plugin_file": source_sha256("scheme_plugin_file")}}
    assert changed_plugin_code({**record, "code_hash": CODE_HASH}) == []
    assert changed_plugin_code({**record, "code_hash": "python3.10-ast"}) == [
        f"python3.10-ast -> {CODE_HASH}"
    ]
    interactive = {"sources": {"__main__": None}, "code_hash": CODE_HASH}
    assert changed_plugin_code(interactive) == [] and uncompared_modules(interactive) == [
        "__main__"
    ]
    sys.modules.pop("scheme_plugin_file", None)
