"""The generated reference of every scenario key is complete and in step with the code."""

from pathlib import Path

from test_mechanism_plugins import POSTED_PRICE

from market_sim.plugins import mechanism_plugins, registered
from market_sim.scenario import load, schema
from market_sim.scenario.key_reference import (
    mechanism_rows,
    render_key_reference,
    scenario_sections,
)

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "scenario-keys.md"


def test_the_shipped_reference_is_the_generated_one():
    # Fails after any change of a key, default, bound, allowed value or doc; regenerate with
    # python -m market_sim.scenario.key_reference > docs/scenario-keys.md
    assert REFERENCE.read_text(encoding="utf-8") == render_key_reference()


def test_every_key_has_a_row_with_a_doc():
    rows = [row for _, _, section in scenario_sections() for row in section]
    rows += [row for plugin in mechanism_plugins() for row in mechanism_rows(plugin)]
    assert [row.key for row in rows if not row.doc] == []
    keys = {row.key for row in rows}
    expected = set(load.SCENARIO_SPECS)
    expected |= {f"model.{name}" for name in load.MODEL_SPECS}
    expected |= {f"queries.{name}" for name in load.STATIC_QUERY_SPECS}
    expected |= {f"regret.{name}" for name in load.REGRET_SPECS}
    expected |= {f"eva.{name}" for name in load.EVA_SPECS}
    expected |= {f"eva.grammar.{name}" for name in load.GRAMMAR_SPECS}
    expected |= {f"audit.{name}" for name in load.AUDIT_SPECS}
    expected |= {f"lambda_sweep.{name}" for name in load.LAMBDA_SWEEP_SPECS}
    expected |= {f"convergence.{name}" for name in load.CONVERGENCE_SPECS}
    expected |= {f"advertisers[].{name}" for name in load.ADVERTISER_SPECS}
    expected |= {
        f"advertisers[].valuation.{name}"
        for specs in load.VALUATION_SPECS.values()
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


def test_a_registered_plugin_joins_the_reference():
    assert "posted_price" not in render_key_reference()
    with registered(POSTED_PRICE):
        text = render_key_reference()
    assert "### `posted_price`: the posted price" in text
    assert (
        "| `mechanism.price` | number [0, 1000000] | 0.5 | The posted price of the whole unit. |"
        in text
    )
