"""Scenario schema of the eva query stream ([queries] held-out keys, [eva]) and [audit]."""

import tomllib
from pathlib import Path

import pytest

from market_sim.plugins import mechanism_plugin
from market_sim.plugins.mosaic import MosaicConfig
from market_sim.plugins.token_auction import TokenAuctionConfig
from market_sim.scenario import (
    INFORMATIVENESS_MEASURES,
    QUERY_STREAMS,
    REWRITERS,
    AuditConfig,
    EvaConfig,
    QueryGrammarConfig,
    ScenarioError,
    dump_scenario_toml,
    load_scenario,
    scenario_from_dict,
)
from market_sim.scenario.eva_vocabulary import (
    DEFAULT_CONSTRAINTS,
    DEFAULT_DETAILS,
    DEFAULT_INTENTS,
    DEFAULT_PERSONAS,
    EVOLVE_OPERATORS,
)
from market_sim.scenario.table_specs import SCENARIO_TABLES

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"

BASE_TOML = """
name = "eva"
seed = 3
rounds = 20

[mechanism]
kind = "token_auction"
aggregation = "linear"
max_new_tokens = 12

[queries]
stream = "eva"
items = ["vacation in Hawaii", "family trip to Maui", "cheap flights to Honolulu"]

[[advertisers]]
name = "Alpha"
context = "Alpha Airlines: nonstop flights to Hawaii."
valuation = { dist = "fixed", value = 1.0 }
"""

FULL_TOML = (
    BASE_TOML
    + """
[eva]
replies = 4
informativeness = "variance"
sample_fraction = 0.5
operators = ["deepen", "mix"]
rewriter = "grammar"
beta = 0.2
steps = 0
evolve_every = 10

[eva.grammar]
topics = ["ski trip to Colorado"]
intents = ["", "best"]
constraints = ["on a budget"]
details = ["for 3 days"]
personas = ["", "for a student"]

[audit]
top = 5
uniform = false

[[audit.mechanisms]]
kind = "mosaic"
candidates = 8

[[audit.mechanisms]]
aggregation = "log_linear"
"""
)


def base_data() -> dict:
    return tomllib.loads(BASE_TOML)


def error_for(data: dict) -> ScenarioError:
    with pytest.raises(ScenarioError) as caught:
        scenario_from_dict(data)
    error = caught.value
    assert "\n" not in str(error)
    return error


# ----------------------------------------------------------------------------- registries


def test_registries() -> None:
    assert QUERY_STREAMS == ("static", "eva")
    assert INFORMATIVENESS_MEASURES == ("gap", "variance", "max_mean")
    assert REWRITERS == ("auto", "lm", "grammar")
    assert "eva" in SCENARIO_TABLES and "audit" in SCENARIO_TABLES


# ----------------------------------------------------------------------------- defaults


def test_eva_stream_fills_eva_defaults() -> None:
    scenario = scenario_from_dict(base_data())
    assert scenario.queries.stream == "eva"
    assert scenario.queries.heldout == ()
    assert scenario.queries.heldout_fraction == 0.25
    assert scenario.eva == EvaConfig()
    eva = scenario.eva
    assert eva is not None
    assert (eva.replies, eva.informativeness, eva.sample_fraction, eva.variants) == (
        6,
        "gap",
        0.25,
        4,
    )
    assert eva.operators == EVOLVE_OPERATORS
    assert (eva.rewriter, eva.max_pool, eva.max_constraints, eva.user_weight) == (
        "auto",
        256,
        3,
        1.0,
    )
    assert (eva.pairs, eva.original_share, eva.beta, eva.steps) == (32, 0.2, 0.1, 16)
    assert (eva.learning_rate, eva.batch_size, eva.heldout_replies, eva.evolve_every) == (
        5e-5,
        8,
        8,
        50,
    )
    assert eva.grammar == QueryGrammarConfig(
        topics=(),
        intents=DEFAULT_INTENTS,
        constraints=DEFAULT_CONSTRAINTS,
        details=DEFAULT_DETAILS,
        personas=DEFAULT_PERSONAS,
    )
    assert scenario.audit is None


def test_eva_table_alone_fills_eva_for_a_static_stream() -> None:
    data = base_data()
    data["queries"]["stream"] = "static"
    assert scenario_from_dict(data).eva is None
    data["eva"] = {}
    assert scenario_from_dict(data).eva == EvaConfig()


def test_eva_stream_dump_writes_eva_and_heldout_keys() -> None:
    dumped = tomllib.loads(dump_scenario_toml(scenario_from_dict(base_data())))
    assert dumped["queries"]["heldout"] == []
    assert dumped["queries"]["heldout_fraction"] == 0.25
    assert dumped["eva"]["beta"] == 0.1
    assert dumped["eva"]["grammar"]["intents"] == list(DEFAULT_INTENTS)
    assert "audit" not in dumped


def uses_eva_or_audit(path: Path) -> bool:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    queries = data.get("queries", {})
    eva_queries = queries.get("stream") == "eva" or "heldout" in queries
    return "eva" in data or "audit" in data or eva_queries


SHIPPED_SCENARIOS = sorted(SCENARIOS.glob("*.toml"))
STATIC_SCENARIOS = [path for path in SHIPPED_SCENARIOS if not uses_eva_or_audit(path)]


def test_some_shipped_scenarios_are_static() -> None:
    assert (SCENARIOS / "hawaii.toml") in STATIC_SCENARIOS


@pytest.mark.parametrize("path", STATIC_SCENARIOS, ids=lambda path: path.name)
def test_static_scenarios_resolve_and_dump_as_before(path: Path, shipped_scenario_models) -> None:
    """No eva, audit or held-out keys in the dump of a static scenario: its run id is unchanged."""
    shipped_scenario_models(path)
    scenario = load_scenario(path)
    assert scenario.eva is None and scenario.audit is None
    text = dump_scenario_toml(scenario)
    dumped = tomllib.loads(text)
    assert "eva" not in dumped and "audit" not in dumped
    assert set(dumped["queries"]) <= {"stream", "items", "order", "file", "file_merged"}
    assert "heldout" not in text
    assert scenario_from_dict(dumped) == scenario


@pytest.mark.parametrize("path", SHIPPED_SCENARIOS, ids=lambda path: path.name)
def test_shipped_scenarios_round_trip(path: Path, shipped_scenario_models) -> None:
    shipped_scenario_models(path)
    scenario = load_scenario(path)
    assert scenario_from_dict(tomllib.loads(dump_scenario_toml(scenario))) == scenario


def test_static_dump_keeps_non_default_heldout_keys() -> None:
    data = base_data()
    data["queries"]["stream"] = "static"
    data["queries"]["heldout_fraction"] = 0.5
    scenario = scenario_from_dict(data)
    dumped = tomllib.loads(dump_scenario_toml(scenario))
    assert dumped["queries"]["heldout_fraction"] == 0.5
    assert "heldout" not in dumped["queries"]
    assert scenario_from_dict(dumped) == scenario


# ----------------------------------------------------------------------------- full tables


def test_full_eva_grammar_and_audit_values() -> None:
    scenario = scenario_from_dict(tomllib.loads(FULL_TOML))
    eva = scenario.eva
    assert eva is not None
    assert eva.replies == 4 and eva.informativeness == "variance"
    assert eva.operators == ("deepen", "mix")
    assert eva.rewriter == "grammar" and eva.steps == 0 and eva.evolve_every == 10
    assert eva.grammar == QueryGrammarConfig(
        topics=("ski trip to Colorado",),
        intents=("", "best"),
        constraints=("on a budget",),
        details=("for 3 days",),
        personas=("", "for a student"),
    )
    audit = scenario.audit
    assert isinstance(audit, AuditConfig)
    assert (audit.top, audit.uniform) == (5, False)
    mosaic, log_linear = audit.mechanisms
    # Each entry is merged over [mechanism]: its own keys win, the rest is inherited.
    assert mosaic == MosaicConfig(candidates=8, max_new_tokens=12)
    assert mosaic.payment == "mosaic"  # a new kind without a payment takes its default rule
    assert log_linear == TokenAuctionConfig(aggregation="log_linear", max_new_tokens=12)
    assert log_linear.payment == "second_price"


def test_round_trip_with_eva_audit_and_grammar() -> None:
    scenario = scenario_from_dict(tomllib.loads(FULL_TOML))
    dumped = tomllib.loads(dump_scenario_toml(scenario))
    # Audit mechanisms are written as full, resolved tables of their own kind's keys.
    assert set(dumped["audit"]["mechanisms"][0]) == {
        "kind",
        *(item.name for item in mechanism_plugin("mosaic").settings),
    }
    assert set(dumped["audit"]["mechanisms"][1]) == set(dumped["mechanism"])
    assert dumped["audit"]["mechanisms"][0]["payment"] == "mosaic"
    assert scenario_from_dict(dumped) == scenario
    # The dump is self-contained: it loads to the same scenario under a different [mechanism].
    dumped["mechanism"]["max_new_tokens"] = 30
    assert scenario_from_dict(dumped).audit == scenario.audit


def test_empty_audit_audits_the_scenario_mechanism() -> None:
    data = base_data()
    data["audit"] = {}
    scenario = scenario_from_dict(data)
    assert scenario.audit == AuditConfig(mechanisms=(), top=10, uniform=True)
    assert scenario_from_dict(tomllib.loads(dump_scenario_toml(scenario))) == scenario


def test_explicit_heldout_round_trips() -> None:
    data = base_data()
    data["queries"]["heldout"] = ["honeymoon in Hawaii"]
    scenario = scenario_from_dict(data)
    assert scenario.queries.heldout == ("honeymoon in Hawaii",)
    assert scenario_from_dict(tomllib.loads(dump_scenario_toml(scenario))) == scenario


# ----------------------------------------------------------------------------- overrides


def test_set_overrides_for_eva_keys(tmp_path: Path) -> None:
    path = tmp_path / "eva.toml"
    path.write_text(BASE_TOML, encoding="utf-8")
    scenario = load_scenario(
        path,
        overrides=[
            "eva.beta=0.05",
            "eva.rewriter=lm",
            'eva.operators=["mix"]',
            'eva.grammar.personas=["", "for a chef"]',
            "queries.heldout_fraction=0",
        ],
    )
    eva = scenario.eva
    assert eva is not None
    assert eva.beta == 0.05 and eva.rewriter == "lm" and eva.operators == ("mix",)
    assert eva.grammar.personas == ("", "for a chef")
    assert eva.grammar.intents == DEFAULT_INTENTS
    assert scenario.queries.heldout_fraction == 0.0


def test_set_override_creates_eva_table_on_a_static_scenario() -> None:
    scenario = load_scenario(SCENARIOS / "hawaii.toml", overrides=["eva.beta=0.05"])
    assert scenario.eva == EvaConfig(beta=0.05)


def test_set_override_then_validation_error(tmp_path: Path) -> None:
    path = tmp_path / "eva.toml"
    path.write_text(BASE_TOML, encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path, overrides=["eva.beta=0"])
    assert str(caught.value) == "eva.beta: must be between 0.001 and 1000, got 0.0"


# ----------------------------------------------------------------------------- bad [queries]


def test_heldout_query_in_training_pool() -> None:
    data = base_data()
    data["queries"]["heldout"] = ["family trip to Maui"]
    error = error_for(data)
    assert error.key == "queries.heldout"
    assert "'family trip to Maui'" in error.message
    assert "held-out queries must not be in the training pool" in error.message


def test_duplicate_heldout_query() -> None:
    data = base_data()
    data["queries"]["heldout"] = ["a", "b", "a"]
    error = error_for(data)
    assert error.key == "queries.heldout[2]"
    assert "duplicate" in error.message and "'a'" in error.message


def test_empty_heldout_query() -> None:
    data = base_data()
    data["queries"]["heldout"] = [""]
    assert str(error_for(data)) == "queries.heldout[0]: must be a non-empty string"


@pytest.mark.parametrize("fraction", [1, 1.0, 1.5, -0.1])
def test_heldout_fraction_range(fraction: float) -> None:
    data = base_data()
    data["queries"]["heldout_fraction"] = fraction
    assert str(error_for(data)) == (
        f"queries.heldout_fraction: must be >= 0 and < 1, got {float(fraction)!r}"
    )


def test_eva_split_needs_two_queries() -> None:
    data = base_data()
    data["queries"]["items"] = ["only one"]
    error = error_for(data)
    assert error.key == "queries.items"
    assert "at least 2 queries" in error.message and "each side of the split" in error.message


def test_one_query_is_enough_without_a_fractional_split() -> None:
    data = base_data()
    data["queries"]["items"] = ["only one"]
    data["queries"]["heldout_fraction"] = 0.0
    assert scenario_from_dict(data).queries.items == ("only one",)
    data["queries"]["heldout_fraction"] = 0.25
    data["queries"]["heldout"] = ["another"]
    assert scenario_from_dict(data).queries.heldout == ("another",)
    data["queries"]["stream"] = "static"
    del data["queries"]["heldout"]
    assert scenario_from_dict(data).eva is None  # the static stream does not split


def test_unknown_query_stream_lists_both() -> None:
    data = base_data()
    data["queries"]["stream"] = "evolving"
    assert str(error_for(data)) == (
        "queries.stream: unknown value 'evolving'; allowed: static, eva"
    )


# ----------------------------------------------------------------------------- bad [eva]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("replies", 1, "eva.replies: must be between 2 and 256, got 1"),
        ("replies", 257, "eva.replies: must be between 2 and 256, got 257"),
        (
            "informativeness",
            "entropy",
            "eva.informativeness: unknown value 'entropy'; allowed: gap, variance, max_mean",
        ),
        ("sample_fraction", 0, "eva.sample_fraction: must be > 0 and <= 1, got 0.0"),
        ("sample_fraction", 1.5, "eva.sample_fraction: must be > 0 and <= 1, got 1.5"),
        ("variants", 0, "eva.variants: must be between 1 and 64, got 0"),
        ("rewriter", "human", "eva.rewriter: unknown value 'human'; allowed: auto, lm, grammar"),
        ("max_pool", 0, "eva.max_pool: must be between 1 and 100000, got 0"),
        ("max_constraints", 17, "eva.max_constraints: must be between 1 and 16, got 17"),
        ("user_weight", -1, "eva.user_weight: must be between 0 and 1000000, got -1.0"),
        ("pairs", 0, "eva.pairs: must be between 1 and 100000, got 0"),
        ("original_share", 1.5, "eva.original_share: must be between 0 and 1, got 1.5"),
        ("beta", 0, "eva.beta: must be between 0.001 and 1000, got 0.0"),
        ("steps", -1, "eva.steps: must be between 0 and 100000, got -1"),
        ("learning_rate", 0.0, "eva.learning_rate: must be > 0 and <= 1, got 0.0"),
        ("batch_size", 0, "eva.batch_size: must be between 1 and 4096, got 0"),
        ("heldout_replies", 0, "eva.heldout_replies: must be between 1 and 4096, got 0"),
        ("evolve_every", 0, "eva.evolve_every: must be between 1 and 10000000, got 0"),
        ("replies", "six", "eva.replies: expected an integer between 2 and 256, got 'six'"),
    ],
)
def test_eva_field_errors(name: str, value: object, expected: str) -> None:
    data = base_data()
    data["eva"] = {name: value}
    assert str(error_for(data)) == expected


def test_eva_operators_errors() -> None:
    data = base_data()
    data["eva"] = {"operators": []}
    assert str(error_for(data)) == "eva.operators: needs at least 1 element, got 0"
    data["eva"] = {"operators": ["deepen", "shuffle"]}
    assert str(error_for(data)) == (
        "eva.operators[1]: unknown value 'shuffle'; allowed: " + ", ".join(EVOLVE_OPERATORS)
    )
    data["eva"] = {"operators": ["mix", "mix"]}
    assert str(error_for(data)) == "eva.operators[1]: duplicate value 'mix'"


def test_unknown_eva_key_lists_allowed_keys() -> None:
    data = base_data()
    data["eva"] = {"temperature": 1.0}
    error = error_for(data)
    assert error.key == "eva.temperature"
    assert error.message.startswith("unknown key; allowed keys: batch_size, beta, evolve_every,")
    assert "grammar" in error.message and "replies" in error.message


def test_eva_must_be_a_table() -> None:
    data = base_data()
    data["eva"] = 3
    assert str(error_for(data)) == "eva: expected a table, got 3"


# ----------------------------------------------------------------------------- bad [eva.grammar]


def test_unknown_grammar_key_lists_allowed_keys() -> None:
    data = base_data()
    data["eva"] = {"grammar": {"verbs": ["go"]}}
    assert str(error_for(data)) == (
        "eva.grammar.verbs: unknown key; allowed keys: constraints, details, intents, personas, "
        "topics"
    )


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("intents", [], "eva.grammar.intents: needs at least 1 element, got 0"),
        ("intents", ["", "best", ""], "eva.grammar.intents[2]: duplicate value ''"),
        ("intents", ["  "], "eva.grammar.intents[0]: must be a non-empty string"),
        ("intents", "best", "eva.grammar.intents: expected a list of strings, got 'best'"),
        ("personas", ["", 3], "eva.grammar.personas[1]: expected a string, got 3"),
        ("constraints", [], "eva.grammar.constraints: needs at least 1 element, got 0"),
        ("constraints", [""], "eva.grammar.constraints[0]: must be a non-empty string"),
        ("constraints", ["a", "a"], "eva.grammar.constraints[1]: duplicate value 'a'"),
        ("details", [], "eva.grammar.details: needs at least 1 element, got 0"),
        ("details", ["x", ""], "eva.grammar.details[1]: must be a non-empty string"),
        ("topics", [""], "eva.grammar.topics[0]: must be a non-empty string"),
        ("topics", ["t", "t"], "eva.grammar.topics[1]: duplicate value 't'"),
    ],
)
def test_grammar_errors(name: str, value: object, expected: str) -> None:
    data = base_data()
    data["eva"] = {"grammar": {name: value}}
    assert str(error_for(data)) == expected


def test_grammar_empty_strings_allowed_only_in_intents_and_personas() -> None:
    data = base_data()
    data["eva"] = {"grammar": {"intents": [""], "personas": [""], "topics": []}}
    grammar = scenario_from_dict(data).eva.grammar  # type: ignore[union-attr]
    assert grammar.intents == ("",) and grammar.personas == ("",) and grammar.topics == ()


# ----------------------------------------------------------------------------- bad [audit]


def test_unknown_audit_key() -> None:
    data = base_data()
    data["audit"] = {"bottom": 3}
    assert str(error_for(data)) == (
        "audit.bottom: unknown key; allowed keys: draws, mechanisms, top, uniform"
    )


def test_audit_top_and_uniform() -> None:
    data = base_data()
    data["audit"] = {"top": 0}
    assert str(error_for(data)) == "audit.top: must be between 1 and 10000, got 0"
    data["audit"] = {"uniform": "yes"}
    assert str(error_for(data)) == "audit.uniform: expected true or false, got 'yes'"


def test_audit_mechanisms_must_be_a_list_of_tables() -> None:
    data = base_data()
    data["audit"] = {"mechanisms": {"kind": "mosaic"}}
    assert str(error_for(data)) == (
        "audit.mechanisms: expected a list of mechanism tables, got a table"
    )
    data["audit"] = {"mechanisms": ["mosaic"]}
    assert str(error_for(data)) == "audit.mechanisms[0]: expected a table, got 'mosaic'"


def test_audit_mechanism_errors_are_keyed_by_entry() -> None:
    data = base_data()
    data["audit"] = {"mechanisms": [{}, {"kind": "dutch"}]}
    error = error_for(data)
    assert error.key == "audit.mechanisms[1].kind"
    assert error.message.startswith("unknown value 'dutch'; allowed: token_auction, mosaic")
    data["audit"] = {"mechanisms": [{"bids": 2}]}
    error = error_for(data)
    assert error.key == "audit.mechanisms[0].bids"
    assert error.message.startswith(
        "the token auction (kind 'token_auction') does not read this key; it reads: "
    )
    data["audit"] = {"mechanisms": [{"kind": "mosaic", "payment": "second_price"}]}
    assert str(error_for(data)) == (
        "audit.mechanisms[0].payment: unknown value 'second_price' for "
        "audit.mechanisms[0].kind 'mosaic'; allowed: mosaic, none"
    )
    data["audit"] = {"mechanisms": [{"kind": "gsp", "click_through_rates": [0.5, 0.9]}]}
    assert error_for(data).key == "audit.mechanisms[0].click_through_rates[1]"
    data["audit"] = {"mechanisms": [{"aggregation": "log_linear", "settlement": "ex_post"}]}
    error = error_for(data)
    assert error.key == "audit.mechanisms[0].settlement"
    assert "audit.mechanisms[0].aggregation = 'linear'" in error.message


def test_audit_entry_inherits_the_scenario_payment_for_the_same_kind() -> None:
    data = base_data()
    data["mechanism"]["payment"] = "first_price"
    data["audit"] = {"mechanisms": [{"max_new_tokens": 4}, {"kind": "affine_maximizer"}]}
    same, other = scenario_from_dict(data).audit.mechanisms  # type: ignore[union-attr]
    assert same.payment == "first_price" and same.max_new_tokens == 4
    assert other.payment == "affine_maximizer" and other.max_new_tokens == 12


def test_audit_draws_default_and_range() -> None:
    data = base_data()
    data["audit"] = {}
    assert scenario_from_dict(data).audit.draws == 4  # type: ignore[union-attr]
    data["audit"] = {"draws": 0}
    assert str(error_for(data)) == "audit.draws: must be between 1 and 1000, got 0"


def test_fine_tuned_affine_maximizer_is_refused_where_queries_evolve() -> None:
    """It used to load, fine-tune for minutes, then stop at the first evolved query."""
    data = base_data()
    data["mechanism"] = {"kind": "affine_maximizer", "policy_space": "fine_tuned"}
    built = "fine_tuned builds its policies before round 0 for the queries known then"
    error = error_for(data)
    assert error.key == "mechanism.policy_space"
    assert error.message == f"{built}, but queries.stream = eva serves evolved queries"
    data["queries"]["stream"] = "static"
    data["audit"] = {}  # audits the scenario's mechanism
    assert error_for(data).message == f"{built}, but [audit] scores evolved queries"
    data["mechanism"] = {"kind": "affine_maximizer"}
    data["audit"] = {"mechanisms": [{"policy_space": "candidates"}, {"policy_space": "fine_tuned"}]}
    assert error_for(data).key == "audit.mechanisms[1].policy_space"
    del data["audit"]
    data["mechanism"]["policy_space"] = "fine_tuned"
    scenario_from_dict(data)  # a fixed pool: fine
