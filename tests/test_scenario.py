import copy
import dataclasses
import hashlib
import pickle
import tomllib
from pathlib import Path

import pytest

from market_sim.plugins import mechanism_kinds, mechanism_plugin
from market_sim.plugins.token_auction import TokenAuctionConfig
from market_sim.scenario import (
    STRATEGY_KINDS,
    AdvertiserConfig,
    LambdaSweepConfig,
    ModelConfig,
    QueryConfig,
    Scenario,
    ScenarioError,
    StrategyConfig,
    ValuationConfig,
    apply_overrides,
    dump_scenario_toml,
    load_scenario,
    scenario_from_dict,
    scenario_to_dict,
)

SAMPLE_TOML = """
name = "hawaii"
description = "two airlines"
seed = 7
rounds = 200

[model]
path = "bundled:tiny-ads"
device = "cuda:1"

[mechanism]
kind = "token_auction"
aggregation = "linear"
payment = "second_price"
settlement = "ex_post"
max_new_tokens = 16

[queries]
stream = "static"
items = ["vacation in Hawaii", "family trip to Maui"]
order = "sample"

[[advertisers]]
name = "Alpha Airlines"
context = "Alpha Airlines: nonstop flights to Hawaii."
mentions = ["Alpha", "Alpha Airlines"]
valuation = { dist = "uniform", low = 0.5, high = 1.5 }
strategy = { kind = "truthful" }

[[advertisers]]
name = "Beta Resorts"
context = "Beta Resorts: beachfront rooms on Maui."
valuation = { dist = "fixed", value = 1 }
strategy = { kind = "fixed", bid_multiplier = 0.8 }

[lambda_sweep]
samples = 4
"""


def sample_data() -> dict:
    return tomllib.loads(SAMPLE_TOML)


def make_model_folder(path: Path) -> Path:
    """A folder the validator accepts: a JSON-object config.json and a *.safetensors file."""
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}", encoding="utf-8")
    (path / "model.safetensors").write_bytes(b"")
    return path


def error_for(data: dict, base_dir: Path | None = None) -> ScenarioError:
    with pytest.raises(ScenarioError) as caught:
        scenario_from_dict(data, base_dir)
    error = caught.value
    assert "\n" not in str(error)
    assert str(error) == f"{error.key}: {error.message}"
    return error


# ----------------------------------------------------------------------------- valid input


def test_minimal_file_loads_with_documented_defaults(tmp_path: Path) -> None:
    path = tmp_path / "minimal.toml"
    path.write_text(
        """
[queries]
items = ["q"]

[[advertisers]]
name = "A"
context = "brand A"
valuation = { dist = "fixed", value = 2.0 }
""",
        encoding="utf-8",
    )
    scenario = load_scenario(path)
    assert scenario.name == "scenario"
    assert scenario.description == ""
    assert scenario.seed == 0
    assert scenario.rounds == 100
    # prompt_format "auto" is resolved from the tokenizer's files: the bundled LM has no template.
    assert scenario.model == ModelConfig(
        path="bundled:tiny-ads", device="auto", dtype="auto", prompt_format="plain"
    )
    assert scenario.mechanism == TokenAuctionConfig(
        kind="token_auction",
        aggregation="linear",
        payment="second_price",
        settlement="expected",
        max_new_tokens=24,
        platform_weight=0.0,
        temperature=1.0,
        integration_nodes=64,
    )
    assert scenario.queries == QueryConfig(stream="static", items=("q",), file=None, order="cycle")
    (advertiser,) = scenario.advertisers
    assert advertiser.mentions == ("A",)
    assert advertiser.valuation == ValuationConfig(dist="fixed", value=2.0)
    assert advertiser.strategy == StrategyConfig(kind="truthful")
    assert advertiser.strategy.params == {}
    assert scenario.lambda_sweep is None


def test_sample_scenario_values() -> None:
    scenario = scenario_from_dict(sample_data())
    assert scenario.name == "hawaii"
    assert scenario.model.device == "cuda:1"
    assert scenario.mechanism.settlement == "ex_post"
    alpha, beta = scenario.advertisers
    assert alpha.mentions == ("Alpha", "Alpha Airlines")
    assert alpha.valuation == ValuationConfig(
        dist="uniform", value=None, low=0.5, high=1.5, redraw="round"
    )
    assert beta.valuation.value == 1.0 and isinstance(beta.valuation.value, float)
    assert beta.strategy.kind == "fixed"
    assert beta.strategy.bid_multiplier == 0.8
    assert beta.strategy.distortion == 1.0
    assert beta.strategy.param("distortion") == 1.0
    assert scenario.lambda_sweep == LambdaSweepConfig(
        lambdas=tuple(i / 10 for i in range(11)), samples=4, aggregations=("linear", "log_linear")
    )
    assert scenario.advertiser("Beta Resorts") is beta


def test_scenario_is_frozen_hashable_and_picklable() -> None:
    scenario = scenario_from_dict(sample_data())
    with pytest.raises(AttributeError):
        scenario.rounds = 3  # type: ignore[misc]
    assert hash(scenario) == hash(scenario_from_dict(sample_data()))
    assert pickle.loads(pickle.dumps(scenario)) == scenario


def test_registries() -> None:
    assert mechanism_kinds() == (
        "token_auction",
        "mosaic",
        "affine_maximizer",
        "first_price",
        "second_price",
        "gsp",
        "vcg",
    )
    assert set(STRATEGY_KINDS) == {
        "truthful",
        "fixed",
        "hedge",
        "exp3",
        "epsilon_greedy",
        "ucb1",
        "policy_gradient",
    }


def test_lognormal_valuation_once() -> None:
    data = sample_data()
    data["advertisers"][0]["valuation"] = {
        "dist": "lognormal",
        "mean": -0.5,
        "sigma": 0.25,
        "redraw": "once",
    }
    valuation = scenario_from_dict(data).advertisers[0].valuation
    assert valuation == ValuationConfig(
        dist="lognormal", value=None, mean=-0.5, sigma=0.25, redraw="once"
    )


def test_local_model_folder_resolved_relative_to_scenario(tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "models" / "tiny")
    path = tmp_path / "s.toml"
    path.write_text(SAMPLE_TOML.replace('"bundled:tiny-ads"', '"models/tiny"'), encoding="utf-8")
    scenario = load_scenario(path)
    assert scenario.model.path == str(folder.resolve())


def test_hub_id_kept_as_is(tmp_path: Path) -> None:
    data = sample_data()
    data["model"]["path"] = "hub:openai-community/gpt2"
    assert scenario_from_dict(data, tmp_path).model.path == "hub:openai-community/gpt2"


def test_query_file_appended_after_items(tmp_path: Path) -> None:
    (tmp_path / "queries.txt").write_text("first\n\n  second  \n", encoding="utf-8")
    data = sample_data()
    data["queries"]["file"] = "queries.txt"
    queries = scenario_from_dict(data, tmp_path).queries
    assert queries.items == ("vacation in Hawaii", "family trip to Maui", "first", "second")
    assert queries.file == "queries.txt"
    assert queries.file_sha256 == hashlib.sha256(b"first\n\n  second  \n").hexdigest()


def test_query_file_alone_is_enough(tmp_path: Path) -> None:
    (tmp_path / "q.txt").write_text("only\n", encoding="utf-8")
    data = sample_data()
    data["queries"] = {"file": "q.txt"}
    assert scenario_from_dict(data, tmp_path).queries.items == ("only",)


# ----------------------------------------------------------------------------- dump


def test_dump_round_trips_to_equal_scenario() -> None:
    scenario = scenario_from_dict(sample_data())
    text = dump_scenario_toml(scenario)
    assert scenario_from_dict(tomllib.loads(text)) == scenario


def test_dump_round_trips_with_query_file_and_local_model(tmp_path: Path) -> None:
    make_model_folder(tmp_path / "model")
    (tmp_path / "q.txt").write_text("from file\n", encoding="utf-8")
    data = sample_data()
    data["model"]["path"] = "./model"
    data["queries"]["file"] = "q.txt"
    scenario = scenario_from_dict(data, tmp_path)
    text = dump_scenario_toml(scenario)
    (tmp_path / "q.txt").unlink()  # the dump is self-contained: the file is not read again
    assert scenario_from_dict(tomllib.loads(text), tmp_path / "elsewhere") == scenario


def test_rounds_times_auctions_per_round_is_bounded() -> None:
    data = sample_data()
    data["auctions_per_round"] = 4096
    data["rounds"] = 2441  # 2441 * 4096 = 9_998_336 <= 1e7: accepted
    assert scenario_from_dict(data).rounds == 2441
    data["rounds"] = 2442  # 10_002_432 > 1e7
    with pytest.raises(ScenarioError) as caught:
        scenario_from_dict(data)
    assert str(caught.value) == (
        "rounds: rounds * auctions_per_round must be at most 10000000 (one row per auction, all "
        "kept in memory), got 2442 * 4096 = 10002432"
    )


def test_dump_contains_every_default_and_no_none() -> None:
    data = sample_data()
    del data["lambda_sweep"]
    dumped = tomllib.loads(dump_scenario_toml(scenario_from_dict(data)))
    assert "lambda_sweep" not in dumped
    assert set(dumped) == {
        "name",
        "description",
        "seed",
        "rounds",
        "auctions_per_round",
        "model",
        "mechanism",
        "queries",
        "advertisers",
        "regret",
    }
    assert dumped["regret"]["every"] == 1
    # The dump holds the keys the token auction reads, every default filled, and nothing else.
    assert list(dumped["mechanism"]) == [
        "kind",
        "max_new_tokens",
        "temperature",
        "aggregation",
        "payment",
        "settlement",
        "platform_weight",
        "integration_nodes",
    ]
    assert dumped["mechanism"]["integration_nodes"] == 64
    assert dumped["mechanism"]["platform_weight"] == 0.0
    assert dumped["queries"] == {
        "stream": "static",
        "items": ["vacation in Hawaii", "family trip to Maui"],
        "order": "sample",
    }
    assert dumped["advertisers"][0]["valuation"] == {
        "dist": "uniform",
        "low": 0.5,
        "high": 1.5,
        "redraw": "round",
    }
    assert dumped["advertisers"][1]["valuation"] == {"dist": "fixed", "value": 1.0}
    assert dumped["advertisers"][1]["strategy"] == {
        "kind": "fixed",
        "bid_multiplier": 0.8,
        "distortion": 1.0,
    }
    assert dumped["advertisers"][1]["mentions"] == ["Beta Resorts"]


def test_scenario_to_dict_of_code_built_scenario() -> None:
    scenario = Scenario(
        queries=QueryConfig(items=("q",)),
        advertisers=(
            AdvertiserConfig(name="A", context="a", strategy=StrategyConfig(kind="fixed")),
        ),
    )
    data = scenario_to_dict(scenario)
    assert data["advertisers"][0]["strategy"] == {
        "kind": "fixed",
        "bid_multiplier": 1.0,
        "distortion": 1.0,
    }
    # Loading resolves model.prompt_format "auto" (the code-built default) from the files.
    resolved_model = dataclasses.replace(scenario.model, prompt_format="plain")
    assert scenario_from_dict(data) == dataclasses.replace(scenario, model=resolved_model)


# ----------------------------------------------------------------------------- bad input


def test_unknown_top_level_key() -> None:
    data = sample_data()
    data["colour"] = "red"
    error = error_for(data)
    assert error.key == "colour"
    assert "unknown key; allowed keys:" in error.message
    assert "advertisers" in error.message and "rounds" in error.message


def test_unknown_nested_key() -> None:
    data = sample_data()
    data["model"]["colour"] = "red"
    assert str(error_for(data)) == (
        "model.colour: unknown key; allowed keys: device, dtype, path, prompt_format, "
        "weights_sha256"
    )


def test_unknown_valuation_key_lists_keys_of_its_dist() -> None:
    data = sample_data()
    data["advertisers"][1]["valuation"]["low"] = 0.0
    assert str(error_for(data)) == (
        "advertisers[1].valuation.low: unknown key; allowed keys: dist, value"
    )


def test_truthful_strategy_takes_no_parameters() -> None:
    data = sample_data()
    data["advertisers"][0]["strategy"]["distortion"] = 2.0
    assert str(error_for(data)) == (
        "advertisers[0].strategy.distortion: unknown key; allowed keys: kind"
    )


def test_negative_valuation() -> None:
    data = sample_data()
    data["advertisers"][1]["valuation"]["value"] = -1
    assert str(error_for(data)) == (
        "advertisers[1].valuation.value: must be between 0 and 1000000, got -1.0"
    )


def test_no_advertisers() -> None:
    data = sample_data()
    del data["advertisers"]
    del data["lambda_sweep"]
    assert str(error_for(data)) == "advertisers: at least one advertiser is required"
    data["advertisers"] = []
    assert str(error_for(data)) == "advertisers: at least one advertiser is required"


def test_duplicate_advertiser_names() -> None:
    data = sample_data()
    data["advertisers"][1]["name"] = "Alpha Airlines"
    error = error_for(data)
    assert error.key == "advertisers[1].name"
    assert "duplicate" in error.message and "unique" in error.message


def test_missing_valuation() -> None:
    data = sample_data()
    del data["advertisers"][0]["valuation"]
    error = error_for(data)
    assert error.key == "advertisers[0].valuation"
    assert "fixed, uniform, lognormal" in error.message


def test_unknown_mechanism() -> None:
    data = sample_data()
    data["mechanism"]["kind"] = "foo"
    assert str(error_for(data)) == (
        "mechanism.kind: unknown value 'foo'; allowed: "
        "token_auction, mosaic, affine_maximizer, first_price, second_price, gsp, vcg (a "
        "plugin's kind is known where it is registered: register_mechanism in a script's "
        "process, or a market_sim.mechanisms entry point of an installed package for the "
        "market-sim commands)"
    )


@pytest.mark.parametrize(
    ("kind", "default", "allowed"),
    [
        ("mosaic", "mosaic", "mosaic, none"),
        ("affine_maximizer", "affine_maximizer", "affine_maximizer, none"),
    ],
)
def test_each_kind_has_its_own_payment_rules(kind: str, default: str, allowed: str) -> None:
    data = sample_data()
    data["mechanism"] = {"kind": kind}
    assert scenario_from_dict(data).mechanism.payment == default
    assert mechanism_plugin(kind).config_type().payment == default
    data["mechanism"] = {"kind": kind, "payment": "none"}
    assert scenario_from_dict(data).mechanism.payment == "none"
    data["mechanism"] = {"kind": kind, "payment": "second_price"}
    assert str(error_for(data)) == (
        f"mechanism.payment: unknown value 'second_price' for mechanism.kind '{kind}'; "
        f"allowed: {allowed}"
    )
    data["mechanism"] = {"kind": "token_auction", "payment": "mosaic"}
    assert str(error_for(data)) == (
        "mechanism.payment: unknown value 'mosaic' for mechanism.kind 'token_auction'; "
        "allowed: second_price, first_price, none"
    )


def test_sequence_mechanism_keys_are_validated() -> None:
    data = sample_data()
    data["mechanism"] = {"kind": "mosaic", "proposal": "brand"}
    assert str(error_for(data)) == (
        "mechanism.proposal: unknown value 'brand' for mechanism.kind 'mosaic'; allowed: "
        "reference, context_aware"
    )
    data["mechanism"] = {"kind": "affine_maximizer", "divergence": "js"}
    assert str(error_for(data)) == (
        "mechanism.divergence: unknown value 'js' for mechanism.kind 'affine_maximizer'; "
        "allowed: kl, chi2, tv"
    )
    data["mechanism"] = {"kind": "mosaic", "tau": 1e-308}
    assert str(error_for(data)) == "mechanism.tau: must be between 0.001 and 1000, got 1e-308"


def test_click_through_rates_must_not_increase() -> None:
    data = sample_data()
    data["mechanism"] = {"kind": "gsp", "click_through_rates": [0.5, 0.7]}
    assert str(error_for(data)) == (
        "mechanism.click_through_rates[1]: click-through rates must be non-increasing "
        "(slot 1 first), got [0.5, 0.7]"
    )
    data["mechanism"] = {"kind": "gsp", "click_through_rates": [1.5]}
    assert str(error_for(data)) == (
        "mechanism.click_through_rates[0]: must be > 0 and <= 1, got 1.5"
    )
    # A slot nobody clicks would still count among the k slots of the uniform price.
    data["mechanism"] = {"kind": "second_price", "click_through_rates": [1.0, 0.0]}
    assert str(error_for(data)) == (
        "mechanism.click_through_rates[1]: must be > 0 and <= 1, got 0.0"
    )


def test_a_blend_needs_another_group_in_the_main_and_audited_mechanisms() -> None:
    # It used to load, then raise "a blend needs at least one other group" in round 0.
    data = sample_data()
    data["advertisers"] = data["advertisers"][:1]
    data.pop("lambda_sweep", None)  # it needs two advertisers of its own
    data["mechanism"] = {"kind": "affine_maximizer", "group_distortion": "blend"}
    message = (
        "advertisers: {key}.group_distortion = blend mixes in the other groups' reward "
        "models, so it needs at least 2 advertisers, got 1"
    )
    assert str(error_for(data)) == message.format(key="mechanism")
    data["mechanism"] = {"kind": "affine_maximizer"}
    scenario_from_dict(data)  # reward_scale runs with one group
    data["audit"] = {
        "mechanisms": [{"group_distortion": "reward_scale"}, {"group_distortion": "blend"}]
    }
    assert str(error_for(data)) == message.format(key="audit.mechanisms[1]")


def test_learner_parameters_are_validated() -> None:
    data = sample_data()
    data["advertisers"][0]["strategy"] = {"kind": "hedge", "multiplier_count": 0}
    assert str(error_for(data)) == (
        "advertisers[0].strategy.multiplier_count: must be between 1 and 10000, got 0"
    )
    data["advertisers"][0]["strategy"] = {"kind": "hedge", "multiplier_count": 1}
    assert str(error_for(data)) == (
        "advertisers[0].strategy.multiplier_max: multiplier_count = 1 fixes the bid multiplier: "
        "it must equal multiplier_min = 0.0, got 2.0"
    )
    data["advertisers"][0]["strategy"] = {
        "kind": "hedge",
        "multiplier_count": 1,
        "multiplier_min": 1.0,
        "multiplier_max": 1.0,
    }
    assert scenario_from_dict(data).advertisers[0].strategy.params["multiplier_count"] == 1
    data["advertisers"][0]["strategy"] = {"kind": "exp3", "contextual": "yes"}
    assert "advertisers[0].strategy.contextual" in str(error_for(data))
    data["advertisers"][0]["strategy"] = {"kind": "hedge"}
    defaults = scenario_from_dict(data).advertisers[0].strategy.params
    assert defaults["learning_rate"] == 0.0 and defaults["multiplier_count"] == 21


def test_regret_table() -> None:
    data = sample_data()
    data["regret"] = {"every": 0}
    assert str(error_for(data)) == "regret.every: must be between 1 and 10000000, got 0"
    data["regret"] = {"grid": 5}
    assert str(error_for(data)).startswith("regret.grid: unknown key; allowed keys: distortion")


def test_unknown_query_stream_names_the_allowed_ones() -> None:
    data = sample_data()
    data["queries"]["stream"] = "evolving"
    assert str(error_for(data)) == (
        "queries.stream: unknown value 'evolving'; allowed: static, eva"
    )


def test_missing_model_folder(tmp_path: Path) -> None:
    data = sample_data()
    data["model"]["path"] = "/x/y"
    assert str(error_for(data, tmp_path)) == (
        "model.path: no local model folder at '/x/y' (expected a transformers folder with "
        "config.json and *.safetensors, 'bundled:<name>' or 'hub:<id>')"
    )


def test_folder_without_config_json(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    data = sample_data()
    data["model"]["path"] = "./empty"
    error = error_for(data, tmp_path)
    assert error.key == "model.path"
    assert error.message == f"'{(tmp_path / 'empty').resolve()}' has no config.json"


def test_unknown_bundled_model() -> None:
    data = sample_data()
    data["model"]["path"] = "bundled:huge"
    assert str(error_for(data)) == (
        "model.path: unknown bundled model 'huge'; allowed: 'bundled:tiny-ads'"
    )


def test_negative_rounds() -> None:
    data = sample_data()
    data["rounds"] = -5
    assert str(error_for(data)) == "rounds: must be between 1 and 10000000, got -5"


def test_rounds_as_string() -> None:
    data = sample_data()
    data["rounds"] = "abc"
    assert str(error_for(data)) == "rounds: expected an integer between 1 and 10000000, got 'abc'"


def test_seed_as_string() -> None:
    data = sample_data()
    data["seed"] = "abc"
    assert str(error_for(data)) == f"seed: expected an integer between 0 and {2**63 - 1}, got 'abc'"


def test_bool_is_not_an_int() -> None:
    data = sample_data()
    data["mechanism"]["max_new_tokens"] = True
    assert (
        str(error_for(data))
        == "mechanism.max_new_tokens: expected an integer between 1 and 512, got true"
    )


def test_bool_is_not_a_float() -> None:
    data = sample_data()
    data["advertisers"][1]["valuation"]["value"] = False
    assert str(error_for(data)) == "advertisers[1].valuation.value: expected a number, got false"


def test_int_range_with_both_bounds() -> None:
    data = sample_data()
    data["mechanism"]["max_new_tokens"] = 600
    assert str(error_for(data)) == ("mechanism.max_new_tokens: must be between 1 and 512, got 600")


def test_temperature_must_be_positive() -> None:
    data = sample_data()
    data["mechanism"]["temperature"] = 0
    assert str(error_for(data)) == "mechanism.temperature: must be between 0.001 and 1000, got 0.0"


def test_uniform_high_below_low() -> None:
    data = sample_data()
    data["advertisers"][0]["valuation"] = {"dist": "uniform", "low": 2.0, "high": 1.0}
    assert str(error_for(data)) == ("advertisers[0].valuation.high: must be >= low (2.0), got 1.0")


def test_ex_post_with_log_linear() -> None:
    data = sample_data()
    data["mechanism"]["aggregation"] = "log_linear"
    error = error_for(data)
    assert error.key == "mechanism.settlement"
    assert "mechanism.aggregation" in error.message and "mechanism.payment" in error.message


def test_ex_post_with_first_price() -> None:
    data = sample_data()
    data["mechanism"]["payment"] = "first_price"
    assert error_for(data).key == "mechanism.settlement"


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "CPU", ""])
def test_bad_device_string(device: str) -> None:
    data = sample_data()
    data["model"]["device"] = device
    error = error_for(data)
    assert error.key == "model.device"
    assert "auto, cpu, cuda, cuda:N" in error.message or "non-empty" in error.message


def test_bad_device_message() -> None:
    data = sample_data()
    data["model"]["device"] = "gpu"
    assert str(error_for(data)) == (
        "model.device: unknown value 'gpu'; allowed: auto, cpu, cuda, cuda:N (N >= 0), mps"
    )


def test_unknown_strategy_kind_and_planned_one() -> None:
    data = sample_data()
    data["advertisers"][0]["strategy"] = {"kind": "psychic"}
    assert str(error_for(data)) == (
        "advertisers[0].strategy.kind: unknown value 'psychic'; allowed: "
        "truthful, fixed, hedge, exp3, epsilon_greedy, ucb1, policy_gradient (a plugin's kind "
        "is known where it is registered: register_strategy in a script's process, or a "
        "market_sim.strategies entry point of an installed package)"
    )
    data["advertisers"][0]["strategy"] = {"kind": "hedge", "eta": 0.1}
    assert str(error_for(data)).startswith("advertisers[0].strategy.eta: unknown key; allowed")


def test_distortion_must_be_positive() -> None:
    data = sample_data()
    data["advertisers"][1]["strategy"]["distortion"] = 0.0
    assert str(error_for(data)) == (
        "advertisers[1].strategy.distortion: must be > 0 and <= 100, got 0.0"
    )


def test_lambda_sweep_needs_two_advertisers() -> None:
    data = sample_data()
    data["advertisers"].append(
        {"name": "C", "context": "c", "valuation": {"dist": "fixed", "value": 1.0}}
    )
    assert str(error_for(data)) == "lambda_sweep: needs exactly 2 advertisers, got 3"


def test_lambda_out_of_range() -> None:
    data = sample_data()
    data["lambda_sweep"]["lambdas"] = [0.0, 1.5]
    assert str(error_for(data)) == "lambda_sweep.lambdas[1]: must be between 0 and 1, got 1.5"


@pytest.mark.parametrize(
    ("table", "key", "values", "message"),
    [
        ("lambda_sweep", "lambdas", [0.0, 0.5, 0.50, 1.0], "lambdas[2]: duplicate value 0.5"),
        ("convergence", "sizes", [1, 4, 2, 4], "sizes[3]: duplicate value 4"),
    ],
)
def test_sweep_axis_refuses_a_repeated_value(table, key, values, message) -> None:
    # A repeated lambda or M would be sampled twice and counted twice in every mean.
    data = sample_data()
    data[table] = {key: values}
    assert str(error_for(data)) == f"{table}.{message}"


def test_empty_query_items() -> None:
    data = sample_data()
    data["queries"]["items"] = []
    assert error_for(data).key == "queries.items"
    data["queries"]["items"] = ["ok", "  "]
    assert str(error_for(data)) == "queries.items[1]: must be a non-empty string"


def test_missing_query_file(tmp_path: Path) -> None:
    data = sample_data()
    data["queries"]["file"] = "nope.txt"
    error = error_for(data, tmp_path)
    assert error.key == "queries.file"
    assert "nope.txt" in error.message


def test_empty_advertiser_name() -> None:
    data = sample_data()
    data["advertisers"][0]["name"] = " "
    assert str(error_for(data)) == "advertisers[0].name: must be a non-empty string"


def test_multiline_values_stay_on_one_line() -> None:
    data = sample_data()
    data["rounds"] = "a\nb"
    assert str(error_for(data)) == "rounds: expected an integer between 1 and 10000000, got 'a\\nb'"


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("rounds = \n[model\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.key == str(path)
    assert "invalid TOML" in caught.value.message
    assert "\n" not in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(tmp_path / "missing.toml")
    assert caught.value.key == str(tmp_path / "missing.toml")


# ----------------------------------------------------------------------------- overrides


def test_override_int_str_list_and_nested_list_paths() -> None:
    data = sample_data()
    original = copy.deepcopy(data)
    result = apply_overrides(
        data,
        [
            "rounds=50",
            "mechanism.payment=first_price",
            "mechanism.settlement=expected",
            'queries.items=["a", "b"]',
            "advertisers.0.strategy.kind=fixed",
            "advertisers.1.valuation.value=2.5",
            "model.dtype = 'float32'",
        ],
    )
    assert data == original  # the input is not modified
    assert result["rounds"] == 50
    assert result["mechanism"]["payment"] == "first_price"
    assert result["queries"]["items"] == ["a", "b"]
    assert result["advertisers"][0]["strategy"]["kind"] == "fixed"
    assert result["advertisers"][1]["valuation"]["value"] == 2.5
    assert result["model"]["dtype"] == "float32"
    scenario = scenario_from_dict(result)
    assert scenario.rounds == 50
    assert scenario.mechanism.payment == "first_price"
    assert scenario.queries.items == ("a", "b")
    assert scenario.advertisers[0].strategy == StrategyConfig(kind="fixed")


def test_override_value_with_equals_sign_and_raw_string() -> None:
    result = apply_overrides({}, ["description=a=b c"])
    assert result["description"] == "a=b c"


@pytest.mark.parametrize(
    ("override", "key", "reason"),
    [
        ('description="unterminated', "description", "Unterminated string"),
        ("mechanism.click_through_rates=[0.5,", "mechanism.click_through_rates", "Invalid"),
        ("advertisers[0].valuation={dist=", "advertisers[0].valuation", "Invalid"),
    ],
)
def test_an_override_that_opens_like_toml_must_be_toml(override: str, key: str, reason: str):
    """Found by an audit: a value opening with a quote, [ or { that did not parse was kept as
    a plain string, quote and all."""
    with pytest.raises(ScenarioError) as error:
        apply_overrides({}, [override])
    assert error.value.key == key
    assert " is not a TOML value (" in error.value.message and reason in error.value.message
    assert "line 1, column" not in error.value.message  # positions counted a hidden prefix
    assert apply_overrides({}, ["name=hawaii"]) == {"name": "hawaii"}  # bare words still strings
    from market_sim.sweep import SweepError, parse_grid

    with pytest.raises(SweepError, match="--grid: description: '\"a,b' is not a TOML value"):
        parse_grid(['description="a,b'])


def test_override_creates_missing_tables() -> None:
    result = apply_overrides({}, ["lambda_sweep.samples=8", "model.device=cpu"])
    assert result == {"lambda_sweep": {"samples": 8}, "model": {"device": "cpu"}}


def test_override_index_into_list_of_floats() -> None:
    result = apply_overrides(
        {"lambda_sweep": {"lambdas": [0.0, 1.0]}}, ["lambda_sweep.lambdas.1=0.5"]
    )
    assert result["lambda_sweep"]["lambdas"] == [0.0, 0.5]


def test_load_scenario_applies_overrides(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SAMPLE_TOML, encoding="utf-8")
    scenario = load_scenario(path, ["rounds=5", "advertisers.1.strategy.distortion=2"])
    assert scenario.rounds == 5
    assert scenario.advertisers[1].strategy.distortion == 2.0


def test_override_then_validation_error_names_schema_key(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SAMPLE_TOML, encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path, ["rounds=abc"])
    assert str(caught.value) == "rounds: expected an integer between 1 and 10000000, got 'abc'"


@pytest.mark.parametrize("override", ["rounds", "=5", "a..b=1", ".x=1"])
def test_bad_override_syntax(override: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        apply_overrides({}, [override])
    assert caught.value.key == "--set"
    assert "dotted.key=value" in caught.value.message
    assert "\n" not in str(caught.value)


def test_override_index_out_of_range() -> None:
    with pytest.raises(ScenarioError) as caught:
        apply_overrides(sample_data(), ["advertisers.5.name=X"])
    assert str(caught.value) == (
        "advertisers[5].name: index 5 out of range for advertisers (allowed: 0..1)"
    )


def test_override_non_index_into_list() -> None:
    with pytest.raises(ScenarioError) as caught:
        apply_overrides(sample_data(), ["advertisers.first.name=X"])
    assert caught.value.key == "advertisers.first.name"
    assert "expected an index" in caught.value.message
    for not_ascii in ("²", "\u0663"):  # a superscript and an Arabic-Indic digit
        with pytest.raises(ScenarioError, match="expected an index"):
            apply_overrides(sample_data(), [f"advertisers.{not_ascii}.name=X"])
    with pytest.raises(ScenarioError, match="index of 5000 digits out of range"):
        apply_overrides(sample_data(), [f"advertisers.{'9' * 5000}.name=X"])


def test_override_through_a_plain_value() -> None:
    with pytest.raises(ScenarioError) as caught:
        apply_overrides(sample_data(), ["rounds.x=1"])
    assert caught.value.key == "rounds.x"
    assert "not a table" in caught.value.message


def test_override_index_into_missing_list() -> None:
    with pytest.raises(ScenarioError) as caught:
        apply_overrides({}, ["advertisers.0.name=X"])
    assert caught.value.key == "advertisers[0].name"
    assert "out of range" in caught.value.message


def test_strategy_ranges_and_distortions_are_checked_before_running() -> None:
    data = sample_data()
    data["advertisers"][0]["strategy"] = {
        "kind": "hedge",
        "multiplier_min": 1.0,
        "multiplier_max": 0.5,
    }
    assert str(error_for(data)) == (
        "advertisers[0].strategy.multiplier_max: must exceed multiplier_min = 1.0, got 0.5"
    )
    data["advertisers"][0]["strategy"] = {"kind": "policy_gradient", "initial_multiplier": 3.0}
    assert str(error_for(data)).startswith("advertisers[0].strategy.initial_multiplier: must lie")
    data["advertisers"][0]["strategy"] = {"kind": "fixed", "distortion": 2.0}
    data["mechanism"] = {"kind": "gsp"}
    assert str(error_for(data)) == (
        "advertisers[0].strategy.distortion: the ad-slot auction (kind 'gsp') reads bids only; a "
        "report distortion needs one of token_auction, mosaic, affine_maximizer (or distortion = 1)"
    )


# ----------------------------------------------------------------------------- input hardening


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    plain, marked = tmp_path / "plain.toml", tmp_path / "marked.toml"
    plain.write_text(SAMPLE_TOML, encoding="utf-8")
    marked.write_bytes(b"\xef\xbb\xbf" + SAMPLE_TOML.encode("utf-8"))
    assert load_scenario(marked) == load_scenario(plain)


def test_unknown_key_suggests_the_closest_one() -> None:
    data = sample_data()
    data["mechanism"]["paymnet"] = "none"
    error = error_for(data)
    assert error.key == "mechanism.paymnet"
    assert error.message == (
        "the token auction (kind 'token_auction') does not read this key (did you mean "
        "`payment`?); it reads: max_new_tokens, temperature, aggregation, payment, settlement, "
        "platform_weight, integration_nodes"
    )
    data = sample_data()
    data["mechanism"]["zzz"] = 1  # nothing close: no suggestion
    assert error_for(data).message.startswith(
        "the token auction (kind 'token_auction') does not read this key; it reads: "
    )


def test_a_per_kind_table_named_after_a_kind_points_to_its_plugins_name() -> None:
    """[mechanism.gsp] reads as an unknown key; the gsp kind's table is [mechanism.ad_slots]."""
    data = sample_data()
    data["mechanism"]["gsp"] = {"slot_value": 12.0}
    error = error_for(data)
    assert error.key == "mechanism.gsp"
    assert error.message.endswith(
        "; a table of settings for kind 'gsp' is named after its plugin: [mechanism.ad_slots]"
    )


def test_override_index_in_either_spelling() -> None:
    brackets = apply_overrides(sample_data(), ["advertisers[0].valuation.low=0.25"])
    dots = apply_overrides(sample_data(), ["advertisers.0.valuation.low=0.25"])
    assert brackets == dots
    assert brackets["advertisers"][0]["valuation"]["low"] == 0.25
    with pytest.raises(ScenarioError) as caught:
        apply_overrides(sample_data(), ["advertisers[7].name=X"])
    assert str(caught.value) == (
        "advertisers[7].name: index 7 out of range for advertisers (allowed: 0..1)"
    )


@pytest.mark.parametrize(
    "name", ["../../../escape", "/tmp/x", "a/b", "..", ".hidden", "a\x00b", "a\nb", "x" * 129]
)
def test_scenario_name_must_be_a_safe_folder_name(name: str) -> None:
    data = sample_data()
    data["name"] = name
    error = error_for(data)
    assert error.key == "name"
    assert error.message.startswith("must be a safe folder name (1-128 letters, digits")


@pytest.mark.parametrize("name", ["hawaii", "hawaii_learning", "b0-sweep.v2", "X" * 128])
def test_safe_scenario_names_are_accepted(name: str) -> None:
    data = sample_data()
    data["name"] = name
    assert scenario_from_dict(data).name == name


@pytest.mark.parametrize("name", ["alpha AIRLINES", " Alpha Airlines ", "Alpha\tAIRLINES"])
def test_advertiser_names_unique_ignoring_case_and_spacing(name) -> None:
    """' Alpha Airlines ' was accepted beside 'Alpha Airlines': both credited one mention."""
    data = sample_data()
    data["advertisers"][1]["name"] = name
    assert str(error_for(data)) == (
        f"advertisers[1].name: duplicate advertiser name {name!r} (also "
        "advertisers[0].name 'Alpha Airlines'); names must be unique ignoring case and spacing"
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("seed", 2**63, "seed: must be between 0 and 9223372036854775807, got 9223372036854775808"),
        ("rounds", 10**7 + 1, "rounds: must be between 1 and 10000000, got 10000001"),
        ("rounds", 2**64, "rounds: must be between 1 and 10000000, got 18446744073709551616"),
    ],
)
def test_seed_and_rounds_bounds(key: str, value: int, message: str) -> None:
    data = sample_data()
    data[key] = value
    assert str(error_for(data)) == message


def test_seed_bound_is_the_markets() -> None:
    from market_sim.config.bounds import SEED_MAX
    from market_sim.market.model import SEED_BOUND

    assert SEED_MAX == SEED_BOUND
    data = sample_data()
    data["seed"] = SEED_BOUND
    assert scenario_from_dict(data).seed == SEED_BOUND


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            ("mechanism", "temperature"),
            1e-308,
            "mechanism.temperature: must be between 0.001 and 1000, got 1e-308",
        ),
        (
            ("advertisers", 1, "strategy", "distortion"),
            1e308,
            "advertisers[1].strategy.distortion: must be > 0 and <= 100, got 1e+308",
        ),
        (
            ("advertisers", 1, "valuation", "value"),
            1e308,
            "advertisers[1].valuation.value: must be between 0 and 1000000, got 1e+308",
        ),
        (
            ("mechanism", "platform_weight"),
            10**400,
            "mechanism.platform_weight: must be a finite number, got inf",
        ),
    ],
)
def test_numbers_the_math_cannot_handle_are_refused(path, value, message) -> None:
    data = sample_data()
    container = data
    for step in path[:-1]:
        container = container[step]
    container[path[-1]] = value
    assert str(error_for(data)) == message


def test_lognormal_mean_bound() -> None:
    data = sample_data()
    data["advertisers"][0]["valuation"] = {"dist": "lognormal", "mean": 1000.0, "sigma": 1.0}
    assert str(error_for(data)) == (
        "advertisers[0].valuation.mean: must be between -20 and 13.8, got 1000.0"
    )


# ----------------------------------------------------------------------------- model paths


@pytest.mark.parametrize("path", ["models/my-gpt2", "./x", "gpt2", "~/no-such-model-folder"])
def test_path_like_model_that_does_not_exist_is_a_missing_folder(tmp_path, path) -> None:
    data = sample_data()
    data["model"]["path"] = path
    error = error_for(data, tmp_path)
    assert error.key == "model.path"
    assert error.message.startswith("no local model folder at ")


def test_hub_models_are_written_hub_and_refused_offline_when_not_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = sample_data()
    data["model"]["path"] = "models/my-gpt2"
    assert error_for(data, tmp_path).message.endswith(
        "; a hub model is written 'hub:models/my-gpt2'"
    )
    (tmp_path / "models").mkdir()  # a models/ folder here: the user meant a local folder
    local = error_for(data, tmp_path).message
    assert local.startswith("no local model folder at ") and "a hub model is written" not in local
    data["model"]["path"] = "gpt2"  # a bare name: its parent is the scenario's folder, which exists
    assert error_for(data, tmp_path).message.endswith("; a hub model is written 'hub:gpt2'")
    data["model"]["path"] = "hub:someone/not-cached-xyz"
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert scenario_from_dict(data, tmp_path).model.path == "hub:someone/not-cached-xyz"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert str(error_for(data, tmp_path)) == (
        "model.path: hub model 'someone/not-cached-xyz' is not in the local hub cache and the "
        "hub is offline (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set); download it once with "
        "network or use a local folder"
    )


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"config.json": b"{}", "pytorch_model.bin": b"x"}, "has no *.safetensors weights"),
        ({"config.json": b"{not json", "model.safetensors": b""}, "is not valid JSON"),
        ({"config.json": b"[1]", "model.safetensors": b""}, "must hold a JSON object"),
        ({"model.safetensors": b""}, "has no config.json"),
    ],
)
def test_malformed_model_folders_are_refused(tmp_path: Path, files, message) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_bytes(content)
    data = sample_data()
    data["model"]["path"] = "./m"
    error = error_for(data, tmp_path)
    assert error.key == "model.path" and message in error.message


# ----------------------------------------------------------------------------- query files


def test_query_file_hashes_contents_not_location(tmp_path: Path) -> None:
    """The same scenario and query file in two folders resolve (and dump) identically."""
    data = sample_data()
    data["queries"] = {"file": "queries.txt"}
    dumps = []
    for folder in (tmp_path / "a", tmp_path / "b" / "deeper"):
        folder.mkdir(parents=True)
        (folder / "queries.txt").write_text("one\ntwo\n", encoding="utf-8")
        dumps.append(dump_scenario_toml(scenario_from_dict(data, folder)))
    assert dumps[0] == dumps[1]
    queries = tomllib.loads(dumps[0])["queries"]
    assert queries["file"] == "queries.txt" and queries["file_merged"] is True
    assert queries["file_sha256"] == hashlib.sha256(b"one\ntwo\n").hexdigest()
    (tmp_path / "a" / "queries.txt").write_text("one\ntwo\nthree\n", encoding="utf-8")
    assert dump_scenario_toml(scenario_from_dict(data, tmp_path / "a")) != dumps[0]


def test_query_file_resolved_relative_to_the_scenario_file(tmp_path: Path) -> None:
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "q.txt").write_text("\ufefffrom the file\n", encoding="utf-8")
    text = SAMPLE_TOML.replace("[queries]\n", '[queries]\nfile = "q.txt"\n')
    (tmp_path / "scenarios" / "s.toml").write_text(text, encoding="utf-8")
    scenario = load_scenario(tmp_path / "scenarios" / "s.toml")
    assert scenario.queries.items[-1] == "from the file"  # BOM skipped
    assert scenario.queries.file == "q.txt"


def test_query_file_hash_mismatch_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "q.txt").write_text("one\n", encoding="utf-8")
    data = sample_data()
    data["queries"] = {"file": "q.txt", "file_sha256": "0" * 64}
    error = error_for(data, tmp_path)
    assert error.key == "queries.file_sha256"
    assert error.message.endswith("not " + "0" * 64 + ": the query file changed")


def test_the_renamed_sharpen_key_says_its_new_name() -> None:
    data = sample_data()
    data["advertisers"][1]["strategy"] = {"kind": "fixed", "sharpen": 2.0}
    assert str(error_for(data)) == (
        "advertisers[1].strategy.sharpen: renamed to distortion (the report distortion every "
        "mechanism reads as its report_scale)"
    )


def test_a_scenario_error_survives_pickling():
    """A sweep worker's ScenarioError crosses to the parent by pickle; it failed to unpickle
    (missing 'message'), and the sweep reported a dead worker instead."""
    error = ScenarioError("mechanism.reserve", "must be between 0 and 1, got 2")
    copied = pickle.loads(pickle.dumps(error))
    assert (type(copied), copied.key, copied.message, str(copied)) == (
        ScenarioError,
        "mechanism.reserve",
        "must be between 0 and 1, got 2",
        "mechanism.reserve: must be between 0 and 1, got 2",
    )


def test_a_choice_of_the_wrong_type_names_the_allowed_values():
    data = sample_data()
    data["mechanism"]["payment"] = 1
    assert str(error_for(data)) == (
        "mechanism.payment: expected a string, got 1; allowed: second_price, first_price, none"
    )
