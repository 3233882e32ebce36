"""Load, validate, resolve and dump scenario files.

A scenario is TOML data, never code. :func:`load_scenario` reads a file, applies ``--set``
overrides and validates it into a frozen :class:`~market_sim.scenario.schema.Scenario` with every
default filled in and every relative path resolved against the scenario file's folder.
:func:`dump_scenario_toml` writes that resolved scenario back; loading the dump gives an equal
scenario.

Checks run in a fixed order and stop at the first error: unknown keys of a table first (after the
``kind``-like key that decides which keys are allowed), then its fields in declaration order. In
``[mechanism]`` the keys that decide which others are read (``policy_space``) and the per-kind
tables are checked before the unknown top-level keys
(:mod:`market_sim.scenario.mechanism_table`).
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

import tomli_w

from market_sim.config.bounds import (
    LOGNORMAL_SIGMAS_BELOW_MAX,
    MAX_AUCTIONS,
    MAX_LOG_SIGMA,
    MAX_LOG_VALUATION,
    MAX_MULTIPLIER,
    MAX_ROUNDS,
    MAX_SAMPLES,
    MAX_VALUATION,
    MIN_LOG_VALUATION,
    SEED_MAX,
)
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
    ScenarioError,
    Slug,
    Text,
    TextList,
    check_known_keys,
    check_min_items,
    child_key,
    item_key,
    parse_field,
    require_list,
    require_str,
    require_table,
    show,
    validate_fields,
)
from market_sim.config.settings import amount, learning_rate, temperature
from market_sim.lm.devices import DEVICE_PATTERN, DEVICES_DESCRIPTION
from market_sim.mechanisms.options import PROPOSALS
from market_sim.plugins import (
    MechanismConfig,
    MechanismPlugin,
    mechanism_plugin,
    mechanism_plugins,
    read_values,
)
from market_sim.prompting import PROMPT_FORMATS
from market_sim.scenario.eva_vocabulary import (
    DEFAULT_CONSTRAINTS,
    DEFAULT_DETAILS,
    DEFAULT_INTENTS,
    DEFAULT_PERSONAS,
    EVOLVE_OPERATORS,
)
from market_sim.scenario.mechanism_table import (
    mechanism_to_plain,
    merge_audited,
    parse_mechanism,
)
from market_sim.scenario.model_table import (
    model_reference,
    resolved_prompt_format,
    resolved_weights_sha256,
)
from market_sim.scenario.overrides import apply_overrides
from market_sim.scenario.schema import (
    AGGREGATIONS,
    AUDIT_TOP,
    DEFAULT_CONVERGENCE_SIZES,
    DEFAULT_SWEEP_LAMBDAS,
    DTYPES,
    INFORMATIVENESS_MEASURES,
    MAX_AUCTIONS_PER_ROUND,
    QUERY_HELDOUT_FRACTION,
    QUERY_ORDERS,
    QUERY_STREAMS,
    REWRITERS,
    VALUATION_DISTS,
    VALUATION_REDRAWS,
    AdvertiserConfig,
    AuditConfig,
    ConvergenceConfig,
    EvaConfig,
    LambdaSweepConfig,
    ModelConfig,
    QueryConfig,
    QueryGrammarConfig,
    RegretConfig,
    Scenario,
    StrategyConfig,
    ValuationConfig,
)
from market_sim.scenario.strategy_plugins import strategy_params, unknown_kind_hint

# --------------------------------------------------------------------------- field specs

SCENARIO_SPECS: dict[str, FieldSpec] = {
    "name": Slug(default="scenario"),
    "description": Text(default=""),
    "seed": IntRange(min=0, max=SEED_MAX, default=0),
    "rounds": IntRange(min=1, max=MAX_ROUNDS, default=100),
    "auctions_per_round": IntRange(min=1, max=MAX_AUCTIONS_PER_ROUND, default=1),
}
SCENARIO_TABLES: tuple[str, ...] = (
    "model",
    "mechanism",
    "queries",
    "advertisers",
    "regret",
    "lambda_sweep",
    "convergence",
    "eva",
    "audit",
)

MODEL_SPECS: dict[str, FieldSpec] = {
    "path": Text(non_empty=True, default="bundled:tiny-ads"),
    "device": Text(non_empty=True, default="auto"),
    "dtype": Choice(DTYPES, default="auto"),
    "prompt_format": Choice(PROMPT_FORMATS, default="auto"),
    "weights_sha256": Text(non_empty=True, default=None),
}


REGRET_SPECS: dict[str, FieldSpec] = {
    "enabled": Flag(default=True),
    "every": IntRange(min=1, max=MAX_ROUNDS, default=1),
    "multiplier_max": FloatRange(min=0.0, max=MAX_MULTIPLIER, exclusive_min=True, default=2.0),
    "multiplier_points": IntRange(min=2, max=10_000, default=11),
    "distortion_points": IntRange(min=1, max=1_000, default=5),
    "refinements": IntRange(min=0, max=50, default=3),
    "refine_points": IntRange(min=3, max=101, default=5),
    "peaks": IntRange(min=1, max=100, default=1),
}

QUERY_STREAM_SPEC = Choice(QUERY_STREAMS, default="static")
STATIC_QUERY_SPECS: dict[str, FieldSpec] = {
    "stream": QUERY_STREAM_SPEC,
    "items": TextList(default=()),
    "file": Text(non_empty=True, default=None),
    "file_sha256": Text(non_empty=True, default=None),
    "order": Choice(QUERY_ORDERS, default="cycle"),
    "file_merged": Flag(default=False),
    "heldout": TextList(default=()),
    "heldout_fraction": FloatRange(  # < 1: the training pool cannot be empty
        min=0.0, max=1.0, exclusive_max=True, default=QUERY_HELDOUT_FRACTION
    ),
}
QUERY_DEFAULTS = QueryConfig()

ADVERTISER_SPECS: dict[str, FieldSpec] = {
    "name": Text(non_empty=True),
    "context": Text(non_empty=True),
    "mentions": TextList(min_items=1, default=None),
}
ADVERTISER_TABLES: tuple[str, ...] = ("valuation", "strategy")

VALUATION_DIST_SPEC = Choice(VALUATION_DISTS)
REDRAW_SPEC = Choice(VALUATION_REDRAWS, default="round")
VALUATION_SPECS: dict[str, dict[str, FieldSpec]] = {
    "fixed": {"dist": VALUATION_DIST_SPEC, "value": amount(default=REQUIRED)},
    "uniform": {
        "dist": VALUATION_DIST_SPEC,
        "low": amount(default=REQUIRED),
        "high": amount(default=REQUIRED),
        "redraw": REDRAW_SPEC,
    },
    "lognormal": {
        "dist": VALUATION_DIST_SPEC,
        "mean": FloatRange(min=MIN_LOG_VALUATION, max=MAX_LOG_VALUATION),
        "sigma": FloatRange(min=0.0, max=MAX_LOG_SIGMA),
        "redraw": REDRAW_SPEC,
    },
}

LAMBDA_SWEEP_SPECS: dict[str, FieldSpec] = {
    "lambdas": FloatList(
        FloatRange(min=0.0, max=1.0), min_items=1, default=DEFAULT_SWEEP_LAMBDAS, distinct=True
    ),
    "samples": IntRange(min=1, max=MAX_SAMPLES, default=32),
    "aggregations": ChoiceList(AGGREGATIONS, min_items=1, default=AGGREGATIONS),
}
LAMBDA_SWEEP_ADVERTISERS = 2

CONVERGENCE_SPECS: dict[str, FieldSpec] = {
    "sizes": IntList(
        IntRange(min=1, max=65_536), min_items=1, default=DEFAULT_CONVERGENCE_SIZES, distinct=True
    ),
    "support_samples": IntRange(min=1, max=65_536, default=256),
    "proposals": ChoiceList(PROPOSALS, min_items=1, default=PROPOSALS),
}


@dataclass(frozen=True)
class PhraseList(TextList):
    """A list of distinct strings, returned as a tuple; ``allow_empty`` also accepts ``""``.

    The empty string is how the query grammar says "no intent" or "no persona".
    """

    allow_empty: bool = False

    def parse(self, value: object, key: str) -> tuple[str, ...]:
        """Check every element and that none repeats; return them as a tuple."""
        items = require_list(value, key, "strings")
        check_min_items(items, self.min_items, key)
        element = Text(non_empty=True)
        phrases: list[str] = []
        for index, item in enumerate(items):
            item_name = item_key(key, index)
            text = require_str(item, item_name)
            if not (self.allow_empty and text == ""):
                text = element.parse(text, item_name)
            if text in phrases:
                raise ScenarioError(item_name, f"duplicate value {show(text)}")
            phrases.append(text)
        return tuple(phrases)


EVA_SPECS: dict[str, FieldSpec] = {
    "replies": IntRange(min=2, max=256, default=6),
    "informativeness": Choice(INFORMATIVENESS_MEASURES, default="gap"),
    "sample_fraction": FloatRange(min=0.0, max=1.0, exclusive_min=True, default=0.25),
    "variants": IntRange(min=1, max=64, default=4),
    "operators": ChoiceList(EVOLVE_OPERATORS, min_items=1, default=EVOLVE_OPERATORS),
    "rewriter": Choice(REWRITERS, default="auto"),
    "max_pool": IntRange(min=1, max=100_000, default=256),
    "max_constraints": IntRange(min=1, max=16, default=3),
    "user_weight": amount(default=1.0),
    "pairs": IntRange(min=1, max=100_000, default=32),
    "original_share": FloatRange(min=0.0, max=1.0, default=0.2),
    "beta": temperature(default=0.1),
    "steps": IntRange(min=0, max=100_000, default=16),
    "learning_rate": learning_rate(default=5e-5),
    "batch_size": IntRange(min=1, max=4096, default=8),
    "heldout_replies": IntRange(min=1, max=4096, default=8),
    "evolve_every": IntRange(min=1, max=MAX_ROUNDS, default=50),
}
EVA_TABLES: tuple[str, ...] = ("grammar",)

GRAMMAR_SPECS: dict[str, FieldSpec] = {
    "topics": PhraseList(default=()),
    "intents": PhraseList(min_items=1, allow_empty=True, default=DEFAULT_INTENTS),
    "constraints": PhraseList(min_items=1, default=DEFAULT_CONSTRAINTS),
    "details": PhraseList(min_items=1, default=DEFAULT_DETAILS),
    "personas": PhraseList(min_items=1, allow_empty=True, default=DEFAULT_PERSONAS),
}

AUDIT_SPECS: dict[str, FieldSpec] = {
    "top": IntRange(min=1, max=10_000, default=AUDIT_TOP),
    "uniform": Flag(default=True),
    "draws": IntRange(min=1, max=1_000, default=4),
}
AUDIT_TABLES: tuple[str, ...] = ("mechanisms",)


# --------------------------------------------------------------------------- public API


def load_scenario(
    path: str | Path,
    overrides: Sequence[str] = (),
    *,
    bundled_models: Collection[str] | None = None,
) -> Scenario:
    """Read, override and validate a scenario file.

    Args:
        path: The TOML scenario file.
        overrides: ``dotted.key=value`` strings applied before validation (``--set``).
        bundled_models: Names accepted after ``bundled:`` in ``model.path`` (default: the
            checkpoints shipped in the package).

    Returns:
        The resolved scenario: every default filled, local paths absolute.

    Raises:
        ScenarioError: If the file is missing or unreadable, is not valid TOML, an override is
            malformed, or the content is invalid.
    """
    scenario_path = Path(path).expanduser()
    data = read_toml(scenario_path)
    data = apply_overrides(data, overrides)
    return scenario_from_dict(
        data, base_dir=scenario_path.resolve().parent, bundled_models=bundled_models
    )


UTF8_BOM = "\ufeff"


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a UTF-8 TOML file; every failure becomes a ScenarioError keyed by the file path.

    A UTF-8 byte-order mark at the start (written by some Windows editors) is skipped.
    """
    key = str(path)
    if path.is_dir():
        raise ScenarioError(key, "is a folder; expected a scenario TOML file")
    if path.is_char_device() or path.is_block_device():  # /dev/zero: read without end
        raise ScenarioError(key, "is a device, not a file; expected a scenario TOML file")
    try:
        text = path.read_bytes().decode("utf-8").removeprefix(UTF8_BOM)
    except FileNotFoundError as error:
        raise ScenarioError(key, "no such scenario file") from error
    except UnicodeDecodeError as error:
        message = f"not valid UTF-8 ({error.reason} at byte {error.start})"
        raise ScenarioError(key, message) from error
    except OSError as error:
        raise ScenarioError(key, f"cannot read the file: {error.strerror or error}") from error
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(key, f"invalid TOML: {error}") from error
    except ValueError as error:  # e.g. an integer with more digits than Python converts
        raise ScenarioError(key, f"invalid TOML: {error}") from error


def scenario_from_dict(
    data: Mapping[str, Any],
    base_dir: str | Path | None = None,
    *,
    bundled_models: Collection[str] | None = None,
) -> Scenario:
    """Validate parsed scenario data into a resolved :class:`Scenario`.

    Args:
        data: The parsed TOML document.
        base_dir: Folder that relative paths (model folder, query file) are resolved against;
            the current directory when ``None``.
        bundled_models: Names accepted after ``bundled:`` in ``model.path`` (default: the
            checkpoints shipped in the package).

    Returns:
        The resolved scenario.

    Raises:
        ScenarioError: On the first invalid, unknown or missing key.
    """
    table = require_table(data, "scenario")
    base = Path.cwd() if base_dir is None else Path(base_dir).expanduser().resolve()
    check_known_keys(table, (*SCENARIO_SPECS, *SCENARIO_TABLES), "")
    scalars = {name: parse_field(table, name, spec, "") for name, spec in SCENARIO_SPECS.items()}
    check_auction_count(scalars["rounds"], scalars["auctions_per_round"])
    model = parse_model(optional_table(table, "model"), base, bundled_models)
    mechanism_table = optional_table(table, "mechanism")
    mechanism = parse_mechanism(mechanism_table)
    queries = parse_queries(optional_table(table, "queries"), base)
    advertisers = parse_advertisers(table.get("advertisers"))
    check_distortions_are_read(advertisers, mechanism)
    audit = parse_audit(table.get("audit"), mechanism_table)
    audited = audit.mechanisms if audit else ()
    for key, config in (
        ("mechanism", mechanism),
        *((f"audit.mechanisms[{index}]", entry) for index, entry in enumerate(audited)),
    ):
        check_advertiser_count(len(advertisers), config, key)
    check_fixed_queries(mechanism, queries, audit)
    return Scenario(
        **scalars,
        model=model,
        mechanism=mechanism,
        queries=queries,
        advertisers=advertisers,
        regret=parse_regret(optional_table(table, "regret")),
        lambda_sweep=parse_lambda_sweep(table.get("lambda_sweep"), len(advertisers)),
        convergence=parse_convergence(table.get("convergence")),
        eva=parse_eva(table.get("eva"), queries),
        audit=audit,
    )


def check_auction_count(rounds: int, auctions_per_round: int) -> None:
    """Refuse more than :data:`~market_sim.config.bounds.MAX_AUCTIONS` auctions in a run.

    Raises:
        ScenarioError: ``rounds * auctions_per_round > MAX_AUCTIONS`` (every auction's row is
            kept in memory until the run ends).
    """
    if rounds * auctions_per_round > MAX_AUCTIONS:
        raise ScenarioError(
            "rounds",
            f"rounds * auctions_per_round must be at most {MAX_AUCTIONS} (one row per auction, "
            f"all kept in memory), got {rounds} * {auctions_per_round} = "
            f"{rounds * auctions_per_round}",
        )


def scenario_to_dict(scenario: Scenario) -> dict[str, Any]:
    """Return the resolved scenario as plain TOML-ready data (``None`` values left out).

    Loading the result with :func:`scenario_from_dict` gives an equal scenario.
    """
    return dataclass_to_plain(scenario)


def dump_scenario_toml(scenario: Scenario) -> str:
    """Return the resolved scenario as TOML text, every default filled in."""
    return tomli_w.dumps(scenario_to_dict(scenario))


# --------------------------------------------------------------------------- tables


def optional_table(table: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """Return sub-table ``name`` of ``table``, or an empty table if it is absent."""
    return require_table(table.get(name, {}), name)


def parse_model(
    table: Mapping[str, Any], base_dir: Path, bundled_models: Collection[str] | None
) -> ModelConfig:
    """Validate ``[model]``; resolve its path, prompt format and weights hash from the files.

    See :mod:`market_sim.scenario.model_table` for what the resolved table records.
    """
    values = validate_fields(table, MODEL_SPECS, "model")
    if not DEVICE_PATTERN.fullmatch(values["device"]):
        message = f"unknown value {show(values['device'])}; allowed: {DEVICES_DESCRIPTION}"
        raise ScenarioError("model.device", message)
    reference = model_reference(values["path"], base_dir, bundled_models)
    values["path"] = reference.text
    values["prompt_format"] = resolved_prompt_format(values["prompt_format"], reference)
    values["weights_sha256"] = resolved_weights_sha256(values["weights_sha256"], reference)
    return ModelConfig(**values)


def parse_regret(table: Mapping[str, Any]) -> RegretConfig:
    """Validate ``[regret]``."""
    return RegretConfig(**validate_fields(table, REGRET_SPECS, "regret"))


def parse_queries(table: Mapping[str, Any], base_dir: Path) -> QueryConfig:
    """Validate ``[queries]`` and merge the queries of ``file`` after ``items``.

    ``file`` is resolved against ``base_dir`` (the scenario file's folder) and kept as written;
    its SHA-256 is recorded beside it, so the resolved scenario (and the run id hashed from it)
    depends on the file's contents, not on where the scenario lies. A resolved dump says
    ``file_merged = true``: its ``items`` are final and the file is not read again.
    """
    parse_field(table, "stream", QUERY_STREAM_SPEC, "queries")
    values = validate_fields(table, STATIC_QUERY_SPECS, "queries")
    items: tuple[str, ...] = values["items"]
    file_name: str | None = values["file"]
    digest: str | None = values["file_sha256"]
    if digest is not None and not SHA256_PATTERN.fullmatch(digest):
        raise ScenarioError(
            "queries.file_sha256", f"expected 64 lowercase hex digits, got {show(digest)}"
        )
    if file_name is not None and not values["file_merged"]:
        file_items, file_digest = read_query_file(base_dir / Path(file_name).expanduser())
        if digest is not None and digest != file_digest:
            raise ScenarioError(
                "queries.file_sha256",
                f"the file's SHA-256 is {file_digest}, not {digest}: the query file changed",
            )
        items, digest = items + file_items, file_digest
    if not items:
        raise ScenarioError(
            "queries.items",
            "at least one query is required (a non-empty list of strings, or queries.file)",
        )
    check_heldout(values, items)
    return QueryConfig(
        stream=values["stream"],
        items=items,
        file=file_name,
        file_sha256=digest if file_name is not None else None,
        order=values["order"],
        heldout=values["heldout"],
        heldout_fraction=values["heldout_fraction"],
    )


def check_heldout(values: Mapping[str, Any], items: Sequence[str]) -> None:
    """Held-out queries are distinct and outside the pool; a fractional split needs 2 queries."""
    heldout: tuple[str, ...] = values["heldout"]
    for index, query in enumerate(heldout):
        if query in heldout[:index]:
            raise ScenarioError(
                item_key("queries.heldout", index), f"duplicate held-out query {show(query)}"
            )
    for query in heldout:
        if query in items:
            raise ScenarioError(
                "queries.heldout",
                f"query {show(query)} is also in queries.items; held-out queries must not be in "
                "the training pool",
            )
    fraction: float = values["heldout_fraction"]
    if values["stream"] == "eva" and not heldout and fraction > 0.0 and len(items) < 2:
        raise ScenarioError(
            "queries.items",
            f"the eva stream holds out heldout_fraction = {fraction!r} of the pool "
            "(queries.heldout is empty), so it needs at least 2 queries, one on each side of the "
            f"split; got {len(items)} (add queries, list queries.heldout, or set "
            "heldout_fraction = 0)",
        )


SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")


def read_query_file(path: Path) -> tuple[tuple[str, ...], str]:
    """The non-empty, stripped lines of a UTF-8 query file, and the SHA-256 of its bytes.

    A UTF-8 byte-order mark at the start is skipped.
    """
    key = "queries.file"
    path = path.resolve()
    if path.is_char_device() or path.is_block_device():  # /dev/zero: read without end
        raise ScenarioError(key, f"'{path}' is a device, not a file; expected a text file")
    try:
        data = path.read_bytes()
        text = data.decode("utf-8").removeprefix(UTF8_BOM)
    except FileNotFoundError as error:
        raise ScenarioError(key, f"no query file at '{path}'") from error
    except IsADirectoryError as error:
        raise ScenarioError(key, f"'{path}' is a folder; expected a text file") from error
    except UnicodeDecodeError as error:
        raise ScenarioError(key, f"'{path}' is not valid UTF-8 ({error.reason})") from error
    except OSError as error:
        raise ScenarioError(key, f"cannot read '{path}': {error.strerror or error}") from error
    lines = tuple(line.strip() for line in text.splitlines() if line.strip())
    return lines, hashlib.sha256(data).hexdigest()


def parse_advertisers(value: object) -> tuple[AdvertiserConfig, ...]:
    """Validate ``[[advertisers]]``: at least one, unique names."""
    key = "advertisers"
    if value is None:
        raise ScenarioError(key, "at least one advertiser is required")
    entries = require_list(value, key, "advertiser tables")
    if not entries:
        raise ScenarioError(key, "at least one advertiser is required")
    advertisers: list[AdvertiserConfig] = []
    for index, entry in enumerate(entries):
        advertiser = parse_advertiser(entry, item_key(key, index))
        check_unique_name(advertiser.name, advertisers, item_key(key, index))
        advertisers.append(advertiser)
    return tuple(advertisers)


def check_unique_name(name: str, earlier: Sequence[AdvertiserConfig], key: str) -> None:
    """Raise if an earlier advertiser already uses ``name``, ignoring case and spacing.

    Brand mentions are matched case-insensitively in the reply's words, so ``Alpha Airlines``,
    ``alpha airlines`` and `` Alpha  Airlines `` would all be credited with the same mention.
    """

    def normalized(text: str) -> str:
        return " ".join(text.split()).casefold()

    for index, other in enumerate(earlier):
        if normalized(other.name) == normalized(name):
            raise ScenarioError(
                child_key(key, "name"),
                f"duplicate advertiser name {show(name)} (also advertisers[{index}].name "
                f"{show(other.name)}); names must be unique ignoring case and spacing",
            )


def parse_advertiser(value: object, key: str) -> AdvertiserConfig:
    """Validate one advertiser table."""
    table = require_table(value, key)
    check_known_keys(table, (*ADVERTISER_SPECS, *ADVERTISER_TABLES), key)
    values = {name: parse_field(table, name, spec, key) for name, spec in ADVERTISER_SPECS.items()}
    valuation_key = child_key(key, "valuation")
    if "valuation" not in table:
        raise ScenarioError(
            valuation_key,
            'required key is missing (e.g. { dist = "fixed", value = 1.0 }; '
            f"dist: {', '.join(VALUATION_DISTS)})",
        )
    strategy_key = child_key(key, "strategy")
    valuation_table = require_table(table["valuation"], valuation_key)
    strategy_table = require_table(table.get("strategy", {}), strategy_key)
    return AdvertiserConfig(
        name=values["name"],
        context=values["context"],
        mentions=values["mentions"] or (values["name"],),
        valuation=parse_valuation(valuation_table, valuation_key),
        strategy=parse_strategy(strategy_table, strategy_key),
    )


def parse_valuation(table: Mapping[str, Any], key: str) -> ValuationConfig:
    """Validate a valuation table: the distribution first, then only that distribution's keys."""
    dist = parse_field(table, "dist", VALUATION_DIST_SPEC, key)
    values = validate_fields(table, VALUATION_SPECS[dist], key)
    if dist == "uniform" and values["high"] < values["low"]:
        raise ScenarioError(
            child_key(key, "high"),
            f"must be >= low ({values['low']!r}), got {values['high']!r}",
        )
    if dist == "lognormal":
        top = math.log(MAX_VALUATION)
        upper = values["mean"] + LOGNORMAL_SIGMAS_BELOW_MAX * values["sigma"]
        if upper > top:
            raise ScenarioError(
                child_key(key, "sigma"),
                f"mean + {LOGNORMAL_SIGMAS_BELOW_MAX:g} sigma must be at most {top:.4f} "
                f"(ln {MAX_VALUATION:g}, the largest valuation), got {upper:g}",
            )
    return ValuationConfig(**{"value": None, **values})


def parse_strategy(table: Mapping[str, Any], key: str) -> StrategyConfig:
    """Validate a strategy table: the kind first, then the parameters registered for it.

    The kinds are the built-in ones and the registered plugins'
    (:mod:`market_sim.scenario.strategy_plugins`).
    """
    every_kind = strategy_params()
    kind_spec = Choice(tuple(every_kind), default="truthful")
    try:
        kind = parse_field(table, "kind", kind_spec, key)
    except ScenarioError as error:
        if not isinstance(table.get("kind"), str):
            raise
        raise ScenarioError(error.key, f"{error.message}{unknown_kind_hint()}") from None
    if "sharpen" in table and "sharpen" not in every_kind[kind]:
        raise ScenarioError(
            child_key(key, "sharpen"),
            "renamed to distortion (the report distortion every mechanism reads as its "
            "report_scale)",
        )
    values = validate_fields(table, {"kind": kind_spec, **every_kind[kind]}, key)
    params = {name: value for name, value in values.items() if name != "kind"}
    check_strategy_ranges(params, key)
    return StrategyConfig(kind=kind, params=params)


def check_strategy_ranges(params: Mapping[str, Any], key: str) -> None:
    """Cross-field rules of a learner's strategy space (ranges must not be empty)."""
    pairs = []
    if params.get("multiplier_count") == 1:
        if params["multiplier_max"] != params["multiplier_min"]:
            raise ScenarioError(
                child_key(key, "multiplier_max"),
                "multiplier_count = 1 fixes the bid multiplier: it must equal multiplier_min = "
                f"{params['multiplier_min']!r}, got {params['multiplier_max']!r}",
            )
    elif "multiplier_count" in params:
        pairs.append(("multiplier_min", "multiplier_max"))
    if params.get("distortion_count", 1) > 1:
        pairs.append(("distortion_min", "distortion_max"))
    for low, high in pairs:
        if low in params and params[high] <= params[low]:
            raise ScenarioError(
                child_key(key, high),
                f"must exceed {low} = {params[low]!r}, got {params[high]!r}",
            )
    if "initial_multiplier" in params and not (
        params["multiplier_min"] <= params["initial_multiplier"] <= params["multiplier_max"]
    ):
        raise ScenarioError(
            child_key(key, "initial_multiplier"),
            f"must lie in [multiplier_min, multiplier_max] = [{params['multiplier_min']!r}, "
            f"{params['multiplier_max']!r}], got {params['initial_multiplier']!r}",
        )


def check_advertiser_count(count: int, mechanism: MechanismConfig, key: str) -> None:
    """Refuse fewer advertisers than the configured mechanism runs with.

    Raises:
        ScenarioError: Naming the mechanism table's ``kind`` and the plugin's reason.
    """
    fewest, reason = mechanism_plugin(mechanism.kind).fewest_advertisers(mechanism)
    if count < fewest:
        raise ScenarioError(
            "advertisers",
            f"{key}.{reason}, so it needs at least {fewest} advertisers, got {count}",
        )


def check_fixed_queries(
    mechanism: MechanismConfig, queries: QueryConfig, audit: AuditConfig | None
) -> None:
    """Refuse a mechanism built for a fixed query pool where queries evolve.

    The eva stream serves queries evolved during the run, and ``market-sim audit`` scores
    evolved queries with each audited mechanism (the scenario's when ``[audit]`` names none).

    Raises:
        ScenarioError: Naming the mechanism's key and why.
    """
    checks: list[tuple[str, MechanismConfig, str]] = []
    if queries.stream == "eva":
        checks.append(("mechanism", mechanism, "queries.stream = eva serves evolved queries"))
    if audit is not None:
        audited = list(enumerate(audit.mechanisms)) or [(None, mechanism)]
        for index, config in audited:
            key = "mechanism" if index is None else f"audit.mechanisms[{index}]"
            checks.append((key, config, "[audit] scores evolved queries"))
    for key, config, why in checks:
        reason = mechanism_plugin(config.kind).fixed_queries(config)
        if reason:  # "<setting> = <value> <why>": the key is the setting's
            setting, _, rest = reason.partition(" = ")
            raise ScenarioError(f"{key}.{setting}", f"{rest}, but {why}")


def check_auditable(scenario: Scenario) -> None:
    """Refuse ``market-sim audit`` of a mechanism built for a fixed query pool.

    A scenario without an ``[audit]`` table loads (it may only be run), yet ``audit`` then
    scores evolved queries with the scenario's mechanism: the same check as an empty
    ``[audit]`` table.

    Raises:
        ScenarioError: Naming the mechanism's key and why.
    """
    check_fixed_queries(scenario.mechanism, scenario.queries, scenario.audit or AuditConfig())


def check_distortions_are_read(
    advertisers: Sequence[AdvertiserConfig], mechanism: MechanismConfig
) -> None:
    """A fixed report distortion needs a mechanism that reads one (learners' grids collapse)."""
    plugin = mechanism_plugin(mechanism.kind)
    if plugin.report_space(mechanism).distortion is not None:
        return
    for index, advertiser in enumerate(advertisers):
        strategy = advertiser.strategy
        if strategy.kind == "fixed" and strategy.distortion != 1.0:
            readers = [
                kind
                for other in mechanism_plugins()
                if other_reads_distortion(other)
                for kind in other.kinds
            ]
            raise ScenarioError(
                f"advertisers[{index}].strategy.distortion",
                f"{plugin.title} (kind {show(mechanism.kind)}) reads bids only; a report "
                f"distortion needs one of {', '.join(readers)} (or distortion = 1)",
            )


def other_reads_distortion(plugin: MechanismPlugin) -> bool:
    """Whether ``plugin`` reads a report distortion with its default config."""
    return plugin.report_space(plugin.config_type()).distortion is not None


def parse_lambda_sweep(value: object, advertiser_count: int) -> LambdaSweepConfig | None:
    """Validate the optional ``[lambda_sweep]`` (only with exactly two advertisers)."""
    key = "lambda_sweep"
    if value is None:
        return None
    values = validate_fields(require_table(value, key), LAMBDA_SWEEP_SPECS, key)
    if advertiser_count != LAMBDA_SWEEP_ADVERTISERS:
        raise ScenarioError(
            key,
            f"needs exactly {LAMBDA_SWEEP_ADVERTISERS} advertisers, got {advertiser_count}",
        )
    return LambdaSweepConfig(**values)


def parse_convergence(value: object) -> ConvergenceConfig | None:
    """Validate the optional ``[convergence]`` table."""
    if value is None:
        return None
    return ConvergenceConfig(
        **validate_fields(require_table(value, "convergence"), CONVERGENCE_SPECS, "convergence")
    )


def parse_eva(value: object, queries: QueryConfig) -> EvaConfig | None:
    """Validate ``[eva]``; it takes its defaults when absent with ``queries.stream = "eva"``.

    Returns:
        ``None`` when the table is absent and the stream is not ``eva``.
    """
    key = "eva"
    if value is None:
        if queries.stream != "eva":
            return None
        value = {}
    table = require_table(value, key)
    check_known_keys(table, (*EVA_SPECS, *EVA_TABLES), key)
    values = {name: parse_field(table, name, spec, key) for name, spec in EVA_SPECS.items()}
    grammar_key = child_key(key, "grammar")
    grammar_table = require_table(table.get("grammar", {}), grammar_key)
    grammar = QueryGrammarConfig(**validate_fields(grammar_table, GRAMMAR_SPECS, grammar_key))
    return EvaConfig(**values, grammar=grammar)


def parse_audit(value: object, mechanism_table: Mapping[str, Any]) -> AuditConfig | None:
    """Validate the optional ``[audit]`` table.

    Each entry of ``mechanisms`` is a partial mechanism table merged over the scenario's
    ``[mechanism]`` (the entry's keys win) and validated like it; when an entry changes the
    ``kind``, the scenario's keys the new kind does not read are dropped
    (:func:`~market_sim.scenario.mechanism_table.merge_audited`).
    """
    key = "audit"
    if value is None:
        return None
    table = require_table(value, key)
    check_known_keys(table, (*AUDIT_SPECS, *AUDIT_TABLES), key)
    list_key = child_key(key, "mechanisms")
    entries = require_list(table.get("mechanisms", []), list_key, "mechanism tables")
    mechanisms: list[MechanismConfig] = []
    for index, entry in enumerate(entries):
        entry_key = item_key(list_key, index)
        partial = require_table(entry, entry_key)
        mechanism = parse_mechanism(merge_audited(mechanism_table, partial), entry_key)
        running = (mechanism.kind, read_values(mechanism))
        for earlier_index, earlier in enumerate(mechanisms):
            if (earlier.kind, read_values(earlier)) == running:
                raise ScenarioError(
                    entry_key,
                    f"the same mechanism as {item_key(list_key, earlier_index)} (same kind and "
                    "values of every key it reads); audit each mechanism once",
                )
        mechanisms.append(mechanism)
    values = {name: parse_field(table, name, spec, key) for name, spec in AUDIT_SPECS.items()}
    return AuditConfig(mechanisms=tuple(mechanisms), **values)


# --------------------------------------------------------------------------- dumping


def to_plain(value: Any) -> Any:
    """Convert schema objects to TOML-ready dicts, lists and scalars, leaving out ``None``."""
    if isinstance(value, StrategyConfig):
        return {"kind": value.kind, **value.params}
    if isinstance(value, MechanismConfig):
        return to_plain(mechanism_to_plain(value))
    if isinstance(value, QueryConfig):
        plain = dataclass_to_plain(value)
        if value.file is not None:
            plain["file_merged"] = True
        if value.stream != "eva":  # keep static scenarios' dumps (and run ids) as they were
            for name in ("heldout", "heldout_fraction"):
                if plain[name] == to_plain(getattr(QUERY_DEFAULTS, name)):
                    del plain[name]
        return plain
    if is_dataclass(value) and not isinstance(value, type):
        return dataclass_to_plain(value)
    if isinstance(value, list | tuple):
        return [to_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {name: to_plain(item) for name, item in value.items() if item is not None}
    return value


def dataclass_to_plain(value: Any) -> dict[str, Any]:
    """Convert one dataclass instance field by field, leaving out ``None`` fields."""
    plain = {}
    for field_info in fields(value):
        field_value = getattr(value, field_info.name)
        if field_value is not None:
            plain[field_info.name] = to_plain(field_value)
    return plain
