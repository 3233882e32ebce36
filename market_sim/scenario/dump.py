"""Writing a resolved scenario back to TOML; loading the dump gives an equal scenario."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any

import tomli_w

from market_sim.plugins import (
    MechanismConfig,
)
from market_sim.scenario.mechanism_table import (
    mechanism_to_plain,
)
from market_sim.scenario.schema import (
    QueryConfig,
    Scenario,
    StrategyConfig,
)
from market_sim.scenario.table_specs import QUERY_DEFAULTS


def scenario_to_dict(scenario: Scenario) -> dict[str, Any]:
    """Return the resolved scenario as plain TOML-ready data (``None`` values left out).

    Loading the result with :func:`~market_sim.scenario.load.scenario_from_dict` gives an
    equal scenario.
    """
    return dataclass_to_plain(scenario)


def dump_scenario_toml(scenario: Scenario) -> str:
    """Return the resolved scenario as TOML text, every default filled in."""
    return tomli_w.dumps(scenario_to_dict(scenario))


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
