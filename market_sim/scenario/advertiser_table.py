"""The ``[[advertisers]]`` tables: names, contexts, valuation distributions and strategies."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from market_sim.config.bounds import (
    LOGNORMAL_SIGMAS_BELOW_MAX,
    MAX_VALUATION,
)
from market_sim.config.fields import (
    Choice,
    ScenarioError,
    check_known_keys,
    child_key,
    item_key,
    parse_field,
    require_list,
    require_table,
    show,
    validate_fields,
)
from market_sim.plugins import (
    MechanismConfig,
    mechanism_plugin,
)
from market_sim.scenario.schema import (
    VALUATION_DISTS,
    AdvertiserConfig,
    StrategyConfig,
    ValuationConfig,
)
from market_sim.scenario.strategy_plugins import strategy_params, unknown_kind_hint
from market_sim.scenario.table_specs import (
    ADVERTISER_SPECS,
    ADVERTISER_TABLES,
    VALUATION_DIST_SPEC,
    VALUATION_SPECS,
)


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
