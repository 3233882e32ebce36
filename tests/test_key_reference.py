"""The generated reference of every scenario key is complete and in step with the code."""

import tomllib
from pathlib import Path

import pytest
from test_mechanism_plugins import POSTED_PRICE

from market_sim.config.fields import FloatRange, ScenarioError
from market_sim.plugins import BUILT_IN_PLUGINS, mechanism_plugins, registered
from market_sim.scenario import dump_scenario_toml, scenario_from_dict, schema, table_specs
from market_sim.scenario.key_reference import (
    describe_allowed,
    mechanism_rows,
    render_key_reference,
    scenario_sections,
)

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "scenario-keys.md"
EVA_SCENARIO = ROOT / "scenarios" / "eva_queries.toml"


def test_the_shipped_reference_is_the_generated_one():
    # Fails after any change of a key, default, bound, allowed value or doc
    assert REFERENCE.read_text(encoding="utf-8") == render_key_reference(), (
        "docs/scenario-keys.md is out of date: regenerate it with "
        "python -m market_sim.scenario.key_reference > docs/scenario-keys.md"
    )


def test_the_reference_documents_the_built_in_mechanisms_only():
    """A plugin installed or registered beside them used to enter the reference (and fail
    the test above on any machine that had one)."""
    with registered(POSTED_PRICE):
        assert "posted_price" in [plugin.name for plugin in mechanism_plugins()]
        assert "posted_price" not in render_key_reference()
        assert "posted_price" in [plugin.name for plugin in mechanism_plugins()]  # restored
    built_ins = [plugin.name for plugin in BUILT_IN_PLUGINS]
    assert [plugin.name for plugin in mechanism_plugins()][: len(built_ins)] == built_ins
    for name in built_ins:
        assert f"### `{name}`:" in render_key_reference()


def test_every_key_has_a_row_with_a_doc():
    rows = [row for _, _, section in scenario_sections() for row in section]
    rows += [row for plugin in mechanism_plugins() for row in mechanism_rows(plugin)]
    assert [row.key for row in rows if not row.doc] == []
    keys = {row.key for row in rows}
    expected = set(table_specs.SCENARIO_SPECS)
    expected |= {f"model.{name}" for name in table_specs.MODEL_SPECS}
    expected |= {f"queries.{name}" for name in table_specs.STATIC_QUERY_SPECS}
    expected |= {f"regret.{name}" for name in table_specs.REGRET_SPECS}
    expected |= {f"eva.{name}" for name in table_specs.EVA_SPECS}
    expected |= {f"eva.grammar.{name}" for name in table_specs.GRAMMAR_SPECS}
    expected |= {f"audit.{name}" for name in table_specs.AUDIT_SPECS}
    expected |= {f"lambda_sweep.{name}" for name in table_specs.LAMBDA_SWEEP_SPECS}
    expected |= {f"convergence.{name}" for name in table_specs.CONVERGENCE_SPECS}
    expected |= {f"advertisers[].{name}" for name in table_specs.ADVERTISER_SPECS}
    expected |= {
        f"advertisers[].valuation.{name}"
        for specs in table_specs.VALUATION_SPECS.values()
        for name in specs
    }
    expected |= {
        f"advertisers[].strategy.{name}"
        for params in schema.STRATEGY_PARAMS.values()
        for name in ("kind", *params)
    }
    expected |= {
        f"mechanism.{item.name}" for plugin in mechanism_plugins() for item in plugin.settings
    }
    assert keys == expected | {"mechanism.kind"}


def test_every_doc_is_a_whole_sentence():
    """Found by an audit: the reference takes a docstring's first line, and auctions_per_round's
    stopped mid-parenthesis ("... per round (1 .."): a doc must end its sentence there."""
    rows = [row for _, _, section in scenario_sections() for row in section]
    rows += [row for plugin in mechanism_plugins() for row in mechanism_rows(plugin)]
    cut = [f"{row.key}: {row.doc}" for row in rows if not row.doc.rstrip().endswith((".", ")"))]
    assert cut == []


def dotted_keys(table: dict, prefix: str = "") -> set[str]:
    """Dotted keys of a dumped scenario, ``[]`` for arrays of tables (audit entries skipped)."""
    keys = set()
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            keys |= dotted_keys(value, f"{key}.")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            if key == "audit.mechanisms":
                keys.add(key)  # partial [mechanism] tables, documented as one key
            else:
                for item in value:
                    keys |= dotted_keys(item, f"{key}[].")
        else:
            keys.add(key)
    return keys


def test_every_key_a_resolved_scenario_writes_is_in_the_reference():
    # Independent of the spec tables the rows are built from: a key that parsing fills and the
    # dump writes but the reference misses fails here.
    data = tomllib.loads(EVA_SCENARIO.read_text(encoding="utf-8"))
    data["lambda_sweep"] = {}
    data["convergence"] = {}
    data["advertisers"] = data["advertisers"][:2]
    data["advertisers"][0]["strategy"] = {"kind": "fixed"}
    data["advertisers"][1]["strategy"] = {"kind": "policy_gradient"}
    dumped = tomllib.loads(dump_scenario_toml(load_scenario_from(data)))
    rows = {row.key for _, _, section in scenario_sections() for row in section}
    rows |= {row.key for plugin in mechanism_plugins() for row in mechanism_rows(plugin)}
    rows.add("audit.mechanisms")
    assert dotted_keys(dumped) - rows == set()


def load_scenario_from(data: dict):
    return scenario_from_dict(data, base_dir=EVA_SCENARIO.parent)


def test_a_registered_plugin_joins_the_reference():
    assert "posted_price" not in render_key_reference()
    with registered(POSTED_PRICE):
        text = render_key_reference(every_plugin=True)
    assert "### `posted_price`: the posted price" in text
    assert (
        "| `mechanism.price` | number [0, 1000000] | 0.5 | The posted price of the whole unit. |"
        in text
    )


@pytest.mark.parametrize(
    ("spec", "accepted", "refused", "message", "described"),
    [
        (FloatRange(0.0, 1.0, exclusive_max=True), 0.0, 1.0, "must be >= 0 and < 1", "[0, 1)"),
        (FloatRange(0.0, 1.0, exclusive_min=True), 1.0, 0.0, "must be > 0 and <= 1", "(0, 1]"),
        (
            FloatRange(0.0, 1.0, exclusive_min=True, exclusive_max=True),
            0.5,
            0.0,
            "must be > 0 and < 1",
            "(0, 1)",
        ),
        (FloatRange(max=1.0, exclusive_max=True), -5.0, 1.0, "must be < 1", "< 1"),
    ],
)
def test_strict_bounds_are_checked_and_described_alike(spec, accepted, refused, message, described):
    """Both strict flags together once ignored the lower one; a strict upper bound without a
    lower one was described as '<= )'."""
    assert spec.parse(accepted, "k") == accepted
    with pytest.raises(ScenarioError) as caught:
        spec.parse(refused, "k")
    assert str(caught.value) == f"k: {message}, got {refused!r}"
    assert describe_allowed(spec) == f"number {described}"
