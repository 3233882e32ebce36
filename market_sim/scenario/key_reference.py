"""The reference of every scenario key, generated from the specs the loader validates with.

Each row gives a key's type and bounds or allowed values, its default and one line of doc. The
docs come from where each key is declared: a mechanism plugin's
:func:`~market_sim.config.settings.setting`, a strategy parameter's entry in
:data:`~market_sim.scenario.schema.STRATEGY_PARAM_DOCS`, and otherwise the ``Attributes`` section
of the schema dataclass the table fills. Mechanism keys also say which kinds read them.

``docs/scenario-keys.md`` is this module's output; a test keeps the file in step with the code.
Regenerate it with ``python -m market_sim.scenario.key_reference > docs/scenario-keys.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from market_sim.config.fields import (
    REQUIRED,
    Choice,
    ChoiceList,
    FieldSpec,
    Flag,
    FloatList,
    FloatRange,
    IntList,
    IntRange,
    Slug,
    Text,
    TextList,
    format_number,
)
from market_sim.plugins import BUILT_IN_PLUGINS, MechanismPlugin, mechanism_plugins
from market_sim.plugins.registry import only_registered
from market_sim.scenario import schema, table_specs
from market_sim.scenario.mechanism_table import kind_spec
from market_sim.scenario.strategy_plugins import (
    only_built_in_strategies,
    strategy_kind_doc,
    strategy_param_docs,
    strategy_params,
)


@dataclass(frozen=True)
class KeyRow:
    """One documented key.

    Attributes:
        key: Its dotted key (``[]`` marks an array of tables).
        allowed: Type and bounds or allowed values.
        default: Its default, or ``required``.
        doc: One line saying what it is.
    """

    key: str
    allowed: str
    default: str
    doc: str


def describe_allowed(spec: FieldSpec) -> str:
    """Type and bounds or allowed values of a spec, e.g. ``number in [0.001, 1000]``."""
    if isinstance(spec, Choice):
        return "one of " + ", ".join(f"`{value}`" for value in spec.values)
    if isinstance(spec, ChoiceList):
        return "list of " + ", ".join(f"`{value}`" for value in spec.values)
    if isinstance(spec, IntRange):
        return f"integer {interval(spec.min, spec.max, False)}"
    if isinstance(spec, FloatRange):
        return f"number {interval(spec.min, spec.max, spec.exclusive_min, spec.exclusive_max)}"
    if isinstance(spec, FloatList):
        element = spec.element
        bounds = interval(element.min, element.max, element.exclusive_min, element.exclusive_max)
        return f"list of {'distinct ' if spec.distinct else ''}numbers {bounds}"
    if isinstance(spec, IntList):
        bounds = interval(spec.element.min, spec.element.max, False)
        return f"list of {'distinct ' if spec.distinct else ''}integers {bounds}"
    if isinstance(spec, Flag):
        return "true or false"
    if isinstance(spec, Slug):
        return "folder-safe name"
    if isinstance(spec, TextList):
        return "list of strings"
    if isinstance(spec, Text):
        return "non-empty string" if spec.non_empty else "string"
    raise TypeError(f"no description for {type(spec).__name__}")


def interval(
    low: float | None, high: float | None, exclusive_low: bool, exclusive_high: bool = False
) -> str:
    """``[low, high]`` (``(`` and ``)`` for strict ends), ``>= low``, ``< high``, ..."""
    if low is not None and high is not None:
        opening = "(" if exclusive_low else "["
        closing = ")" if exclusive_high else "]"
        return f"{opening}{format_number(low)}, {format_number(high)}{closing}"
    if low is not None:
        return f"{'>' if exclusive_low else '>='} {format_number(low)}"
    if high is not None:
        return f"{'<' if exclusive_high else '<='} {format_number(high)}"
    return "(any)"


def describe_default(spec: FieldSpec) -> str:
    """The default as TOML would write it; ``required`` or ``none`` when there is none."""
    default = spec.default
    if default is REQUIRED:
        return "required"
    if default is None:
        return "none"
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, str):
        return f'"{default}"'
    if isinstance(default, tuple | list):
        if len(default) > 4:
            return f"{len(default)} built-in values"
        return "[" + ", ".join(describe_value(value) for value in default) + "]"
    return describe_value(default)


def describe_value(value: object) -> str:
    """One scalar of a default."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float):
        return format_number(value)
    return str(value)


ATTRIBUTE = re.compile(r"^(\s+)(\w+): (.*)$")


def attribute_docs(config_type: type) -> dict[str, str]:
    """Field name -> the first sentence of its entry in the class's ``Attributes`` section."""
    docs: dict[str, str] = {}
    lines = (config_type.__doc__ or "").splitlines()
    if not any(line.strip() == "Attributes:" for line in lines):
        return docs
    start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:") + 1
    current, indent = "", None
    for line in lines[start:]:
        match = ATTRIBUTE.match(line)
        if match and (indent is None or len(match.group(1)) == indent):
            indent = len(match.group(1))
            current = match.group(2)
            docs[current] = match.group(3).strip()
        elif (
            line.strip()
            and current
            and indent is not None
            and len(line) - len(line.lstrip()) > indent
        ):
            docs[current] += " " + line.strip()
        elif line.strip():
            break
    return {name: first_sentence(text) for name, text in docs.items()}


def first_sentence(text: str) -> str:
    """Text up to the first full stop followed by a space (or all of it)."""
    cut = re.search(r"\.\s", text)
    return text[: cut.start() + 1] if cut else text


def spec_rows(
    prefix: str, specs: Mapping[str, FieldSpec], docs: Mapping[str, str]
) -> Iterator[KeyRow]:
    """One row per spec of a table."""
    for name, spec in specs.items():
        key = f"{prefix}.{name}" if prefix else name
        yield KeyRow(key, describe_allowed(spec), describe_default(spec), docs.get(name, ""))


QUERY_EXTRA_DOCS = {
    "file_merged": "Written by the resolved dump: `items` already holds the file's queries.",
    "stream": "`static` (a fixed pool) or `eva` (a pool evolved by a creator, see `[eva]`).",
}


def scenario_sections() -> list[tuple[str, str, list[KeyRow]]]:
    """``(title, note, rows)`` of every table but ``[mechanism]``, in file order."""
    sections = [
        (
            "Top level",
            "",
            list(spec_rows("", table_specs.SCENARIO_SPECS, attribute_docs(schema.Scenario))),
        ),
        (
            "`[model]`",
            "",
            list(spec_rows("model", table_specs.MODEL_SPECS, attribute_docs(schema.ModelConfig))),
        ),
        (
            "`[queries]`",
            "",
            list(
                spec_rows(
                    "queries",
                    table_specs.STATIC_QUERY_SPECS,
                    {**attribute_docs(schema.QueryConfig), **QUERY_EXTRA_DOCS},
                )
            ),
        ),
        (
            "`[[advertisers]]`",
            "",
            list(
                spec_rows(
                    "advertisers[]",
                    table_specs.ADVERTISER_SPECS,
                    attribute_docs(schema.AdvertiserConfig),
                )
            ),
        ),
    ]
    valuation_docs = attribute_docs(schema.ValuationConfig)
    for dist, specs in table_specs.VALUATION_SPECS.items():
        sections.append(
            (
                f'`advertisers[].valuation` with `dist = "{dist}"`',
                "",
                list(spec_rows("advertisers[].valuation", specs, valuation_docs)),
            )
        )
    every_kind = strategy_params()
    for kind, params in every_kind.items():
        specs = {"kind": Choice(tuple(every_kind), default="truthful"), **params}
        docs = {"kind": f"`{kind}`: {strategy_kind_doc(kind)}", **strategy_param_docs(kind)}
        sections.append(
            (
                f'`advertisers[].strategy` with `kind = "{kind}"`',
                "",
                list(spec_rows("advertisers[].strategy", specs, docs)),
            )
        )
    tables: list[tuple[str, Mapping[str, FieldSpec], type, str]] = [
        ("regret", table_specs.REGRET_SPECS, schema.RegretConfig, ""),
        ("lambda_sweep", table_specs.LAMBDA_SWEEP_SPECS, schema.LambdaSweepConfig, "Optional."),
        ("convergence", table_specs.CONVERGENCE_SPECS, schema.ConvergenceConfig, "Optional."),
        ("eva", table_specs.EVA_SPECS, schema.EvaConfig, 'Read with `queries.stream = "eva"`.'),
        ("eva.grammar", table_specs.GRAMMAR_SPECS, schema.QueryGrammarConfig, ""),
        (
            "audit",
            table_specs.AUDIT_SPECS,
            schema.AuditConfig,
            "Optional. `mechanisms` is a list of partial `[mechanism]` tables merged over the "
            "scenario's.",
        ),
    ]
    for name, specs, config_type, note in tables:
        sections.append(
            (f"`[{name}]`", note, list(spec_rows(name, specs, attribute_docs(config_type))))
        )
    return sections


def mechanism_rows(plugin: MechanismPlugin) -> list[KeyRow]:
    """The keys of one plugin; a gated key says when it is read."""
    rows = [
        KeyRow(
            "mechanism.kind",
            "one of " + ", ".join(f"`{kind}`" for kind in plugin.kinds),
            describe_default(kind_spec()),
            "Selects this plugin (the default kind is the token auction).",
        )
    ]
    for item in plugin.settings:
        gate = "; ".join(
            f"read only with `{name} = {' or '.join(values)}`" for name, values in item.when.items()
        )
        doc = f"{item.doc} ({gate})" if gate else item.doc
        rows.append(
            KeyRow(
                f"mechanism.{item.name}",
                describe_allowed(item.spec),
                describe_default(item.spec),
                doc,
            )
        )
    return rows


def readers_table() -> list[str]:
    """A key x plugin matrix: which kinds read each mechanism key."""
    plugins = mechanism_plugins()
    names = list(dict.fromkeys(item.name for plugin in plugins for item in plugin.settings))
    header = "| key | " + " | ".join(f"`{plugin.name}`" for plugin in plugins) + " |"
    lines = [header, "|---|" + "---|" * len(plugins)]
    for name in names:
        cells = []
        for plugin in plugins:
            item = next((item for item in plugin.settings if item.name == name), None)
            cells.append("" if item is None else ("gated" if item.when else "yes"))
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return lines


def render_rows(rows: list[KeyRow]) -> list[str]:
    """A markdown table of rows."""
    lines = ["| key | allowed | default | what it is |", "|---|---|---|---|"]
    for row in rows:
        doc = row.doc.replace("|", "\\|")
        lines.append(f"| `{row.key}` | {row.allowed} | {row.default} | {doc} |")
    return lines


def render_key_reference(every_plugin: bool = False) -> str:
    """The whole reference as markdown (what ``docs/scenario-keys.md`` holds).

    Args:
        every_plugin: Also document the plugins installed (entry points) or registered beside
            the built-in ones (``python -m market_sim.scenario.key_reference --every-plugin``,
            a plugin author's reference). Off: the built-in mechanisms only, whatever else is
            installed, so the shipped file does not depend on the machine that generates it.
    """
    if every_plugin:
        return render_registered_reference()
    with only_registered(BUILT_IN_PLUGINS), only_built_in_strategies():
        return render_registered_reference()


def render_registered_reference() -> str:
    """:func:`render_key_reference` of every plugin registered now."""
    lines = [
        "# Scenario keys",
        "",
        "Generated by `python -m market_sim.scenario.key_reference` from the specs the loader",
        "validates with; `tests/test_key_reference.py` fails when this file and the code differ.",
        "Any key can be overridden with `--set dotted.key=value` and swept with `--grid`.",
        "",
        "## `[mechanism]`",
        "",
        "`kind` picks a mechanism plugin (`market_sim/plugins/`); the table's other keys must be",
        "keys that plugin reads, else loading fails naming the kind and the keys it reads. A",
        "scenario swept across kinds keeps a kind's keys in a `[mechanism.<plugin>]` table, read",
        "only when that kind runs. Which plugin reads which key (`gated`: only under a value of",
        "another key, see the plugin's table):",
        "",
        *readers_table(),
        "",
    ]
    for plugin in mechanism_plugins():
        lines += [
            f"### `{plugin.name}`: {plugin.title}",
            "",
            f"{plugin.summary} Kinds: {', '.join(f'`{kind}`' for kind in plugin.kinds)}.",
            "",
            *render_rows(mechanism_rows(plugin)),
            "",
        ]
    for title, note, rows in scenario_sections():
        lines += [f"## {title}", ""]
        if note:
            lines += [note, ""]
        lines += [*render_rows(rows), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(render_key_reference(every_plugin="--every-plugin" in sys.argv[1:]), end="")
