"""Fuzz: generated malformed scenarios, overrides and options all fail the same clean way.

Every case runs ``market-sim run`` and must exit 2 with exactly one line on stderr that names the
offending key or option, print nothing on stdout, leave nothing behind (the ``--out`` folder is
never created, the scenario's folder is unchanged) and never load a model (the loader is
replaced by one that fails the test). The numeric cases are generated from the validator's own
spec tables, so a key added later is fuzzed too; the other classes are listed by hand.

Most cases call :func:`market_sim.cli.main` in-process; a few go through the real console script
in a subprocess, and one checks that torch is never imported on the error path.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from market_sim.cli import main
from market_sim.config.fields import FloatList, FloatRange, IntList, IntRange
from market_sim.lm.model import LanguageModel
from market_sim.plugins import mechanism_plugins
from market_sim.scenario import table_specs
from market_sim.scenario.schema import STRATEGY_PARAMS

BASE_TOML = """
name = "fuzz"
seed = 3
rounds = 5

[model]
path = "bundled:tiny-ads"
device = "cpu"

[mechanism]
kind = "token_auction"
max_new_tokens = 8

[queries]
items = ["vacation in Hawaii", "family trip to Maui"]

[[advertisers]]
name = "Alpha Airlines"
context = "Alpha Airlines: nonstop flights to Hawaii."
valuation = { dist = "fixed", value = 1.0 }
strategy = { kind = "fixed", bid_multiplier = 0.8 }

[[advertisers]]
name = "Beta Resort"
context = "Beta Resort: beachfront rooms on Maui."
valuation = { dist = "uniform", low = 0.5, high = 1.5 }
strategy = { kind = "hedge" }
"""

Mutation = Callable[[dict[str, Any], Path], None]


@dataclass(frozen=True)
class Case:
    """One malformed input.

    Attributes:
        name: Test id.
        key: What the one error line must name.
        mutate: Changes the valid base scenario data (``tmp_path`` for files it needs).
        raw: Scenario file bytes instead of the (mutated) base data.
        args: Extra command-line arguments.
    """

    name: str
    key: str
    mutate: Mutation | None = None
    raw: bytes | None = None
    args: tuple[str, ...] = ()


def base_data() -> dict[str, Any]:
    return tomllib.loads(BASE_TOML)


def setter(*path: Any, value: Any) -> Mutation:
    """A mutation that sets ``value`` at ``path`` (creating tables on the way)."""

    def mutate(data: dict[str, Any], _: Path) -> None:
        container = data
        for step in path[:-1]:
            container = container.setdefault(step, {}) if isinstance(step, str) else container[step]
        container[path[-1]] = value

    return mutate


def deleter(*path: Any) -> Mutation:
    """A mutation that removes the value at ``path``."""

    def mutate(data: dict[str, Any], _: Path) -> None:
        container = data
        for step in path[:-1]:
            container = container[step]
        del container[path[-1]]

    return mutate


# --------------------------------------------------------------------------- numeric keys

BAD_NUMBERS: dict[str, Any] = {
    "text": "abc",
    "bool": True,
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "1e308": 1e308,
    "-1e308": -1e308,
    "1e30int": 10**30,
    "-1e30int": -(10**30),
}
"""Values no numeric key accepts: wrong types, non-finite, and beyond every documented bound."""

VALID_VALUATIONS = {
    "fixed": {"dist": "fixed", "value": 1.0},
    "uniform": {"dist": "uniform", "low": 0.5, "high": 1.5},
    "lognormal": {"dist": "lognormal", "mean": 0.0, "sigma": 0.5},
}

NumericSpec = IntRange | FloatRange | IntList | FloatList


def mechanism_numeric_targets() -> Iterator[tuple[str, tuple[Any, ...], Mutation | None]]:
    """Every numeric key of every mechanism plugin, on a table of a kind (and gate) reading it."""
    seen: set[str] = set()
    for plugin in mechanism_plugins():
        for item in plugin.settings:
            if not isinstance(item.spec, NumericSpec) or item.name in seen:
                continue
            seen.add(item.name)
            gates = {gate: values[0] for gate, values in item.when.items()}
            table = {"kind": plugin.kinds[0], **gates}
            yield (
                f"mechanism.{item.name}",
                ("mechanism", item.name),
                setter("mechanism", value=table),
            )


def mechanism_settings() -> dict[str, Any]:
    """Mechanism key -> its spec, over every plugin (first declaration of each name)."""
    specs: dict[str, Any] = {}
    for plugin in mechanism_plugins():
        for item in plugin.settings:
            specs.setdefault(item.name, item.spec)
    return specs


def numeric_targets() -> Iterator[tuple[str, tuple[Any, ...], Mutation | None]]:
    """``(dotted key, path, preparation)`` of every numeric key of the validator's spec tables."""
    tables: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("", (), table_specs.SCENARIO_SPECS),
        ("regret", ("regret",), table_specs.REGRET_SPECS),
        ("lambda_sweep", ("lambda_sweep",), table_specs.LAMBDA_SWEEP_SPECS),
        ("convergence", ("convergence",), table_specs.CONVERGENCE_SPECS),
        ("eva", ("eva",), table_specs.EVA_SPECS),
        ("audit", ("audit",), table_specs.AUDIT_SPECS),
        ("queries", ("queries",), table_specs.STATIC_QUERY_SPECS),
    ]
    yield from mechanism_numeric_targets()
    for prefix, path, specs in tables:
        for name, spec in specs.items():
            if isinstance(spec, NumericSpec):
                key = f"{prefix}.{name}" if prefix else name
                yield key, (*path, name), None
    for dist, specs in table_specs.VALUATION_SPECS.items():
        for name, spec in specs.items():
            if isinstance(spec, NumericSpec):
                yield (
                    f"advertisers[0].valuation.{name}",
                    ("advertisers", 0, "valuation", name),
                    setter("advertisers", 0, "valuation", value=dict(VALID_VALUATIONS[dist])),
                )
    seen: set[str] = set()
    for kind, specs in STRATEGY_PARAMS.items():
        for name, spec in specs.items():
            if isinstance(spec, NumericSpec) and name not in seen:  # learners share a space
                seen.add(name)
                yield (
                    f"advertisers[0].strategy.{name}",
                    ("advertisers", 0, "strategy", name),
                    setter("advertisers", 0, "strategy", value={"kind": kind}),
                )


def numeric_case(key: str, path: tuple[Any, ...], prepare: Mutation | None, bad: str) -> Case:
    set_bad = setter(*path, value=BAD_NUMBERS[bad])

    def mutate(data: dict[str, Any], tmp_path: Path) -> None:
        if prepare is not None:
            prepare(data, tmp_path)
        set_bad(data, tmp_path)

    return Case(f"number-{key}-{bad}", key, mutate)


NUMERIC_CASES = [
    numeric_case(key, path, prepare, bad)
    for key, path, prepare in numeric_targets()
    for bad in BAD_NUMBERS
]

# --------------------------------------------------------------------------- other classes

TABLE_PATHS: list[tuple[str, tuple[Any, ...], str]] = [
    ("", (), "rounds"),
    ("model", ("model",), "device"),
    ("mechanism", ("mechanism",), "payment"),
    ("queries", ("queries",), "items"),
    ("regret", ("regret",), "every"),
    ("advertisers[0]", ("advertisers", 0), "context"),
    ("advertisers[0].valuation", ("advertisers", 0, "valuation"), "value"),
    ("advertisers[0].strategy", ("advertisers", 0, "strategy"), "bid_multiplier"),
    ("lambda_sweep", ("lambda_sweep",), "samples"),
    ("convergence", ("convergence",), "sizes"),
    ("eva", ("eva",), "replies"),
    ("eva.grammar", ("eva", "grammar"), "topics"),
    ("audit", ("audit",), "draws"),
]


def typo(name: str) -> str:
    """``name`` with its 3rd and 4th letters swapped (``payment`` -> ``paymnet``)."""
    return name[:2] + name[3] + name[2] + name[4:]


UNKNOWN_KEY_CASES = [
    case
    for prefix, path, known in TABLE_PATHS
    for case in (
        Case(
            f"unknown-{prefix or 'top'}",
            f"{prefix}.zzz_unknown" if prefix else "zzz_unknown",
            setter(*path, "zzz_unknown", value=1),
        ),
        Case(
            f"typo-{prefix or 'top'}",
            f"did you mean `{known}`?",
            setter(*path, typo(known), value=1),
        ),
    )
]

WRONG_TYPE_CASES = [
    Case("type-name", "name", setter("name", value=5)),
    Case("type-model", "model", setter("model", value="bundled:tiny-ads")),
    Case("type-model-path", "model.path", setter("model", "path", value=3)),
    Case("type-mechanism-kind", "mechanism.kind", setter("mechanism", "kind", value=1)),
    Case("type-payment", "mechanism.payment", setter("mechanism", "payment", value=[])),
    Case("type-items", "queries.items", setter("queries", "items", value="x")),
    Case("type-item", "queries.items[0]", setter("queries", "items", value=[1])),
    Case("type-advertisers", "advertisers", setter("advertisers", value={"name": "x"})),
    Case("type-advertiser", "advertisers[0]", setter("advertisers", 0, value="x")),
    Case(
        "type-valuation", "advertisers[0].valuation", setter("advertisers", 0, "valuation", value=3)
    ),
    Case(
        "type-strategy",
        "advertisers[0].strategy",
        setter("advertisers", 0, "strategy", value="hedge"),
    ),
    Case(
        "type-mentions", "advertisers[0].mentions", setter("advertisers", 0, "mentions", value="A")
    ),
    Case("type-flag", "regret.enabled", setter("regret", "enabled", value="yes")),
    Case(
        "type-contextual",
        "advertisers[1].strategy.contextual",
        setter("advertisers", 1, "strategy", "contextual", value=1),
    ),
    Case("type-lambdas", "lambda_sweep.lambdas", setter("lambda_sweep", "lambdas", value="0.5")),
    Case("type-operators", "eva.operators[0]", setter("eva", "operators", value=[3])),
    Case("type-audit-mechanisms", "audit.mechanisms", setter("audit", "mechanisms", value=3)),
]

EMPTY_CASES = [
    Case("empty-name", "name", setter("name", value="")),
    Case("empty-model-path", "model.path", setter("model", "path", value="")),
    Case("empty-device", "model.device", setter("model", "device", value="")),
    Case("empty-items", "queries.items", setter("queries", "items", value=[])),
    Case("empty-item", "queries.items[1]", setter("queries", "items", value=["a", " "])),
    Case("empty-advertisers", "advertisers", setter("advertisers", value=[])),
    Case("no-advertisers", "advertisers", deleter("advertisers")),
    Case("empty-adv-name", "advertisers[0].name", setter("advertisers", 0, "name", value="")),
    Case(
        "empty-context", "advertisers[1].context", setter("advertisers", 1, "context", value="  ")
    ),
    Case(
        "empty-mentions", "advertisers[0].mentions", setter("advertisers", 0, "mentions", value=[])
    ),
    Case(
        "empty-ctr",
        "mechanism.click_through_rates",
        setter("mechanism", "click_through_rates", value=[]),
    ),
    Case("empty-lambdas", "lambda_sweep.lambdas", setter("lambda_sweep", "lambdas", value=[])),
    Case("empty-sizes", "convergence.sizes", setter("convergence", "sizes", value=[])),
    Case("empty-operators", "eva.operators", setter("eva", "operators", value=[])),
    Case("empty-query-file", "queries.file", setter("queries", "file", value="")),
    Case(  # a character device: read to the end, it never ends
        "endless-query-file",
        "queries.file: '/dev/zero' is a device, not a file",
        setter("queries", "file", value="/dev/zero"),
    ),
    Case("missing-valuation", "advertisers[0].valuation", deleter("advertisers", 0, "valuation")),
    Case("missing-context", "advertisers[1].context", deleter("advertisers", 1, "context")),
]

DUPLICATE_CASES = [
    Case(
        "dup-name", "advertisers[1].name", setter("advertisers", 1, "name", value="Alpha Airlines")
    ),
    Case(
        "dup-name-case",
        "advertisers[1].name",
        setter("advertisers", 1, "name", value="alpha airlines"),
    ),
    Case(
        "dup-name-upper",
        "advertisers[1].name",
        setter("advertisers", 1, "name", value="ALPHA AIRLINES"),
    ),
    Case("dup-heldout", "queries.heldout[1]", setter("queries", "heldout", value=["x", "x"])),
    Case(
        "heldout-in-pool",
        "queries.heldout",
        setter("queries", "heldout", value=["vacation in Hawaii"]),
    ),
    Case(
        "dup-operator", "eva.operators[1]", setter("eva", "operators", value=["deepen", "deepen"])
    ),
    Case(
        "dup-aggregation",
        "lambda_sweep.aggregations[1]",
        setter("lambda_sweep", "aggregations", value=["linear", "linear"]),
    ),
    Case(
        "dup-proposal",
        "convergence.proposals[1]",
        setter("convergence", "proposals", value=["reference", "reference"]),
    ),
    Case(
        "dup-persona",
        "eva.grammar.personas[1]",
        setter("eva", "grammar", "personas", value=["a", "a"]),
    ),
]

UNSAFE_NAMES = {
    "parent": "../../../escape",
    "dotdot": "..",
    "absolute": "/tmp/escape",
    "separator": "a/b",
    "backslash": "a\\b",
    "home": "~root",
    "hidden": ".hidden",
    "nul": "a\x00b",
    "newline": "a\nb",
    "tab": "a\tb",
    "space": "my run",
    "long": "x" * 200,
    "inner-dotdot": "a..b",
}
UNSAFE_NAME_CASES = [
    Case(f"unsafe-name-{label}", "name", setter("name", value=value))
    for label, value in UNSAFE_NAMES.items()
]

ENUM_CASES = [
    Case(f"enum-{key}-{value}", key, setter(*path, value=value))
    for key, path, value in [
        ("mechanism.kind", ("mechanism", "kind"), "lottery"),
        ("mechanism.aggregation", ("mechanism", "aggregation"), "geometric"),
        ("mechanism.payment", ("mechanism", "payment"), "vickrey"),
        ("mechanism.payment", ("mechanism", "payment"), "mosaic"),
        ("mechanism.settlement", ("mechanism", "settlement"), "later"),
        ("mechanism.reply", ("mechanism", "reply"), "none"),
        ("mechanism.proposal", ("mechanism", "proposal"), "brand"),
        ("mechanism.divergence", ("mechanism", "divergence"), "js"),
        ("mechanism.policy_space", ("mechanism", "policy_space"), "all"),
        ("mechanism.group_distortion", ("mechanism", "group_distortion"), "x"),
        ("mechanism.normalization", ("mechanism", "normalization"), "l2"),
        ("model.dtype", ("model", "dtype"), "float8"),
        ("model.device", ("model", "device"), "gpu"),
        ("model.device", ("model", "device"), "cuda:x"),
        ("model.device", ("model", "device"), "cuda:-1"),
        ("model.prompt_format", ("model", "prompt_format"), "markdown"),
        ("queries.stream", ("queries", "stream"), "evolving"),
        ("queries.order", ("queries", "order"), "shuffle"),
        ("advertisers[0].valuation.dist", ("advertisers", 0, "valuation", "dist"), "normal"),
        ("advertisers[1].valuation.redraw", ("advertisers", 1, "valuation", "redraw"), "never"),
        ("advertisers[0].strategy.kind", ("advertisers", 0, "strategy", "kind"), "psychic"),
        ("lambda_sweep.aggregations[0]", ("lambda_sweep", "aggregations"), ["mean"]),
        ("convergence.proposals[0]", ("convergence", "proposals"), ["oracle"]),
        ("eva.informativeness", ("eva", "informativeness"), "entropy"),
        ("eva.rewriter", ("eva", "rewriter"), "human"),
        ("eva.operators[0]", ("eva", "operators"), ["shuffle"]),
    ]
]


def model_folder(files: dict[str, bytes]) -> Mutation:
    """A mutation that writes a model folder with ``files`` and points model.path at it."""

    def mutate(data: dict[str, Any], tmp_path: Path) -> None:
        folder = tmp_path / "model"
        folder.mkdir()
        for name, content in files.items():
            (folder / name).write_bytes(content)
        data["model"]["path"] = "./model"

    return mutate


MODEL_PATH_CASES = [
    Case(
        "model-relative-missing",
        "model.path: no local model folder",
        setter("model", "path", value="models/my-gpt2"),
    ),
    Case(
        "model-dot-missing",
        "model.path: no local model folder",
        setter("model", "path", value="./x"),
    ),
    Case(
        "model-absolute-missing",
        "model.path: no local model folder",
        setter("model", "path", value="/nonexistent/model"),
    ),
    Case(
        "model-home-missing",
        "model.path: no local model folder",
        setter("model", "path", value="~/no-such-model-here"),
    ),
    Case(
        "model-bare-missing",
        "model.path: no local model folder",
        setter("model", "path", value="gpt2"),
    ),
    Case(
        "model-bundled-unknown",
        "model.path: unknown bundled model",
        setter("model", "path", value="bundled:huge"),
    ),
    Case("model-hub-empty", "model.path", setter("model", "path", value="hub:")),
    Case("model-hub-dotdot", "model.path", setter("model", "path", value="hub:../etc")),
    Case(
        "model-hub-offline",
        "model.path: hub model",
        setter("model", "path", value="hub:someone/uncached-model-xyz"),
    ),
    Case("model-cache-unknown", "model.path", setter("model", "path", value="cache:no-such-model")),
    Case("model-no-config", "has no config.json", model_folder({"model.safetensors": b""})),
    Case(
        "model-bad-json",
        "config.json' is not valid JSON",
        model_folder({"config.json": b"{", "model.safetensors": b""}),
    ),
    Case(
        "model-json-list",
        "must hold a JSON object",
        model_folder({"config.json": b"[]", "model.safetensors": b""}),
    ),
    Case(
        "model-json-binary",
        "config.json' is not valid JSON",
        model_folder({"config.json": b"\xff\xfe", "model.safetensors": b""}),
    ),
    Case(
        "model-pickle-only",
        "no *.safetensors weights",
        model_folder({"config.json": b"{}", "pytorch_model.bin": b"x"}),
    ),
]

MALFORMED_TOML = {
    "truncated-value": b"rounds = \n",
    "open-table": b"[model\npath = 'x'\n",
    "open-string": b"name = 'fuzz\n",
    "duplicate-key": b"rounds = 1\nrounds = 2\n",
    "table-twice": b"[model]\n[model]\n",
    "array-then-table": b"[[advertisers]]\n[advertisers]\n",
    "invalid-utf8": b"name = '\xff'\n",
    "utf16": "name = 'x'\n".encode("utf-16"),
    "nul": b"name = 'a\x00'\n",
    "huge-int": b"rounds = " + b"9" * 5000 + b"\n",
    "bare-word": b"hello\n",
    "bom-twice": "\ufeff\ufeffname = 'x'\n".encode(),
}
MALFORMED_CASES = [
    Case(f"toml-{label}", "scenario.toml: ", raw=raw) for label, raw in MALFORMED_TOML.items()
]

SET_CASES = [
    Case(f"set-{label}", key, args=("--set", override))
    for label, override, key in [
        ("no-equals", "rounds", "--set"),
        ("empty-key", "=5", "--set"),
        ("empty-segment", "mechanism..kind=x", "--set"),
        ("index-range-dots", "advertisers.9.name=x", "advertisers[9].name"),
        ("index-range-brackets", "advertisers[9].name=x", "advertisers[9].name"),
        ("not-a-table", "rounds.x=1", "rounds.x"),
        ("not-an-index", "advertisers.x.name=1", "advertisers.x.name"),
        ("index-superscript", "advertisers.².name=1", "advertisers[²].name"),
        ("missing-list", "things.0.name=1", "things[0].name"),
        ("typo", "mechanism.paymnet=none", "did you mean `payment`?"),
        ("rounds-text", "rounds=abc", "rounds"),
        ("seed-negative", "seed=-1", "seed"),
        ("seed-2-64", "seed=18446744073709551616", "seed"),
        ("rounds-2-64", "rounds=18446744073709551616", "rounds"),
        ("rounds-1e9", "rounds=1000000000", "rounds"),
        ("name-escape", "name=../../escape", "name"),
        (
            "value-huge-brackets",
            "advertisers[0].valuation.value=1e308",
            "advertisers[0].valuation.value",
        ),
        (
            "value-huge-dots",
            "advertisers.0.valuation.value=1e308",
            "advertisers[0].valuation.value",
        ),
        ("temperature-tiny", "mechanism.temperature=1e-308", "mechanism.temperature"),
        # a per-kind table is validated even when its kind does not run
        ("tau-tiny", "mechanism.mosaic.tau=1e-308", "mechanism.mosaic.tau"),
        (
            "distortion-huge",
            "advertisers.0.strategy.distortion=1e308",
            "advertisers[0].strategy.distortion",
        ),
        (
            "lognormal-mean",
            'advertisers[1].valuation={dist="lognormal", mean=1000, sigma=1}',
            "advertisers[1].valuation.mean",
        ),
        ("huge-int-literal", "rounds=" + "9" * 5000, "rounds"),
        ("device", "model.device=gpu", "model.device"),
        ("kind", "mechanism.kind=lottery", "mechanism.kind"),
    ]
]

OPTION_CASES = [
    Case(f"option-{label}", key, args=args)
    for label, args, key in [
        ("rounds-text", ("--rounds", "abc"), "--rounds"),
        ("rounds-zero", ("--rounds", "0"), "rounds"),
        ("rounds-huge", ("--rounds", "100000000"), "rounds"),
        (
            "auctions-huge",  # 2442 * 4096 = 10_002_432 auctions > 1e7
            ("--rounds", "2442", "--set", "auctions_per_round=4096"),
            "rounds: rounds * auctions_per_round must be at most 10000000",
        ),
        (
            "replicate-auctions-huge",  # each run fits, the 8 replicates in one process do not
            ("--rounds", "2441", "--set", "auctions_per_round=4096", "--seeds", "0-7"),
            "--seeds: 8 replicates x 9,998,336 auctions = 79,986,688 auctions",
        ),
        ("seed-text", ("--seed", "x"), "--seed"),
        ("seed-negative", ("--seed", "-5"), "seed"),
        ("threads-zero", ("--threads", "0"), "--threads"),
        ("threads-huge", ("--threads", "100000"), "--threads"),
        ("threads-text", ("--threads", "many"), "--threads"),
        ("device", ("--device", "tpu"), "model.device"),
        ("unknown-option", ("--colour", "red"), "--colour"),
        ("out-empty", ("--out", ""), "argument --out: an empty path"),  # would be the cwd
        ("out-name-too-long", ("--out", "a" * 300), f"--out: '{'a' * 300}': File name too long"),
        ("seeds-4400-digits", ("--seeds", "9" * 4400), "--seeds: a 4400-digit seed"),
    ]
]

CASES = [
    *NUMERIC_CASES,
    *UNKNOWN_KEY_CASES,
    *WRONG_TYPE_CASES,
    *EMPTY_CASES,
    *DUPLICATE_CASES,
    *UNSAFE_NAME_CASES,
    *ENUM_CASES,
    *MODEL_PATH_CASES,
    *MALFORMED_CASES,
    *SET_CASES,
    *OPTION_CASES,
]


def test_the_fuzz_covers_every_class_with_enough_cases() -> None:
    classes = [
        NUMERIC_CASES,
        UNKNOWN_KEY_CASES,
        WRONG_TYPE_CASES,
        EMPTY_CASES,
        DUPLICATE_CASES,
        UNSAFE_NAME_CASES,
        ENUM_CASES,
        MODEL_PATH_CASES,
        MALFORMED_CASES,
        SET_CASES,
        OPTION_CASES,
    ]
    assert all(len(cases) >= 8 for cases in classes)
    assert len(CASES) >= 150
    assert len({case.name for case in CASES}) == len(CASES)


def test_every_numeric_key_is_bounded() -> None:
    """Each int/float spec has both bounds (a key the math cannot handle at 1e308 is refused).

    ``queries.heldout_fraction`` was the one exception until its spec took its exclusive upper
    bound (< 1) from ``check_heldout``.
    """
    unbounded = []
    for key, path, _ in numeric_targets():
        if path[0] == "advertisers":
            continue  # checked below from the registries themselves
        table = {
            "": table_specs.SCENARIO_SPECS,
            "mechanism": mechanism_settings(),
            "regret": table_specs.REGRET_SPECS,
            "lambda_sweep": table_specs.LAMBDA_SWEEP_SPECS,
            "convergence": table_specs.CONVERGENCE_SPECS,
            "eva": table_specs.EVA_SPECS,
            "audit": table_specs.AUDIT_SPECS,
            "queries": table_specs.STATIC_QUERY_SPECS,
        }
        specs = table[path[0] if len(path) > 1 else ""]
        spec = specs[path[-1]]
        element = spec.element if isinstance(spec, IntList | FloatList) else spec
        if element.min is None or element.max is None:
            unbounded.append(key)
    for specs in [*table_specs.VALUATION_SPECS.values(), *STRATEGY_PARAMS.values()]:
        for name, spec in specs.items():
            if isinstance(spec, IntRange | FloatRange) and (spec.min is None or spec.max is None):
                unbounded.append(name)
    assert unbounded == []


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any command gets as far as loading a model."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded for malformed input")

    monkeypatch.setattr(LanguageModel, "load", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def write_case(case: Case, folder: Path) -> Path:
    """Write the case's scenario file into ``folder``; return its path."""
    path = folder / "scenario.toml"
    if case.raw is not None:
        path.write_bytes(case.raw)
        return path
    data = base_data()
    if case.mutate is not None:
        case.mutate(data, folder)
    path.write_bytes(tomli_w.dumps(data).encode("utf-8"))
    return path


def snapshot(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_malformed_input_exits_2_with_one_line_naming_the_key(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_model_load: None
) -> None:
    scenario = write_case(case, tmp_path)
    before = snapshot(tmp_path)
    out = tmp_path / "out"
    default_out = [] if "--out" in case.args else ["--out", str(out)]  # an option goes once
    code = main(["run", str(scenario), *default_out, "--no-progress", *case.args])
    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.out == ""
    assert captured.err.startswith("market-sim: error: ") and captured.err.count("\n") == 1
    assert captured.err.endswith("\n")
    key = case.key.replace("scenario.toml: ", f"{scenario}: ")
    assert key in captured.err, captured.err
    assert not out.exists()
    assert snapshot(tmp_path) == before


def test_the_valid_base_passes_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Guards the fuzz: each case fails because of its mutation, not because of the base."""

    class ModelLoadedError(Exception):
        pass

    def loaded(*args: object, **kwargs: object) -> None:
        raise ModelLoadedError

    monkeypatch.setattr(LanguageModel, "load", loaded)
    scenario = write_case(Case("base", "", None), tmp_path)
    with pytest.raises(ModelLoadedError):
        main(["run", str(scenario), "--out", str(tmp_path / "out")])
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- real processes


def console_script() -> list[str]:
    """The installed ``market-sim`` entry point (the venv's, else ``python -m``)."""
    found = shutil.which("market-sim") or str(Path(sys.executable).parent / "market-sim")
    return [found] if os.access(found, os.X_OK) else [sys.executable, "-m", "market_sim.cli"]


SUBPROCESS_CASES = [
    next(case for case in CASES if case.name == name)
    for name in (
        "option-rounds-text",
        "set-typo",
        "model-relative-missing",
        "toml-duplicate-key",
        "unsafe-name-parent",
        "number-mechanism.temperature-1e308",
    )
]


@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=lambda case: case.name)
def test_real_console_script_exits_2_with_one_line(case: Case, tmp_path: Path) -> None:
    scenario = write_case(case, tmp_path)
    before = snapshot(tmp_path)
    out = tmp_path / "out"
    result = subprocess.run(
        [*console_script(), "run", str(scenario), "--out", str(out), *case.args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("market-sim: error: ") and result.stderr.count("\n") == 1
    assert case.key.replace("scenario.toml: ", f"{scenario}: ") in result.stderr
    assert not out.exists() and snapshot(tmp_path) == before


def main_in_a_fresh_process(args: list[str]) -> subprocess.CompletedProcess[str]:
    """``main(args)`` in a new interpreter.

    Its stdout is the exit status and which of torch and transformers it imported: ``2 []``.
    """
    script = (
        "import sys\n"
        "from market_sim.cli import main\n"
        f"code = main({args!r})\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print(code, heavy)\n"
    )
    command = [sys.executable, "-c", script]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_error_path_never_imports_torch(tmp_path: Path) -> None:
    """Validation needs no model: torch and transformers are not even imported."""
    case = next(case for case in CASES if case.name == "model-bad-json")
    scenario = write_case(case, tmp_path)
    result = main_in_a_fresh_process(["run", str(scenario), "--out", str(tmp_path / "out")])
    assert result.stdout == "2 []\n"
    assert result.stderr.count("\n") == 1 and "config.json' is not valid JSON" in result.stderr


@pytest.mark.parametrize("command", ["eva", "audit"])
def test_eva_and_audit_refuse_bad_options_without_importing_torch(
    command: str, tmp_path: Path
) -> None:
    """Found by an audit: they imported torch first, so bad input took 7 s to refuse."""
    scenario = Path(__file__).resolve().parent.parent / "scenarios" / "eva_queries.toml"
    args = [command, str(scenario), "--generations", "0", "--out", str(tmp_path / "out")]
    result = main_in_a_fresh_process(args)
    assert result.stdout == "2 []\n"
    assert result.stderr == (
        "market-sim: error: --generations: must be between 1 and 10000000, got 0\n"
    )


def test_lognormal_valuations_stay_within_the_valuation_bound():
    """Found by an audit: mean 13.8 with sigma 5 was accepted and drew valuations of 1.7e9,
    past the documented bound of 1e6 that the payment arithmetic relies on."""
    import numpy as np

    from market_sim.config.bounds import MAX_VALUATION
    from market_sim.config.fields import ScenarioError
    from market_sim.market.valuations import bounded
    from market_sim.scenario.advertiser_table import parse_valuation

    with pytest.raises(ScenarioError, match=r"mean \+ 6 sigma must be at most 13.8155"):
        parse_valuation({"dist": "lognormal", "mean": 13.8, "sigma": 5.0}, "valuation")
    edge = {"dist": "lognormal", "mean": 13.8155 - 6 * 2.0, "sigma": 2.0}
    assert parse_valuation(edge, "valuation").sigma == 2.0  # the edge itself is accepted
    assert bounded(np.array([1.0, 2e6])).tolist() == [1.0, MAX_VALUATION]  # the cut


@pytest.mark.parametrize(("mean", "sigma"), [(0.0, 0.3), (13.8155 - 6.0, 1.0), (-4.2, 3.0)])
def test_the_expected_lognormal_valuation_is_the_mean_after_the_cut(mean, sigma):
    """Found in review: the cut at 1e6 moves the mean of a wide lognormal (6.3e-4 relative at
    sigma 3 on the edge), while the platform's prior mean stayed exp(mu + sigma^2 / 2)."""
    import math

    from scipy import integrate, stats

    from market_sim.config.bounds import MAX_VALUATION
    from market_sim.market.valuations import expected_valuation
    from market_sim.scenario.schema import ValuationConfig

    config = ValuationConfig(dist="lognormal", mean=mean, sigma=sigma, redraw="round")
    cut = math.log(MAX_VALUATION)
    density = stats.norm(mean, sigma).pdf  # of y = ln X
    below, _ = integrate.quad(lambda y: math.exp(y) * density(y), mean - 12 * sigma, cut)
    above = MAX_VALUATION * stats.norm(mean, sigma).sf(cut)
    # quad's default relative accuracy is 1.5e-8: 1e-7 leaves room for it and no more
    assert expected_valuation(config) == pytest.approx(below + above, rel=1e-7)
    if sigma == 0.3:  # shipped scenarios' kind of prior: the uncut formula to the last bit
        assert expected_valuation(config) == math.exp(mean + sigma**2 / 2)
