"""Scenario files: TOML data validated into a typed, frozen, fully resolved :class:`Scenario`."""

from market_sim.scenario.load import (
    dump_scenario_toml,
    load_scenario,
    scenario_from_dict,
    scenario_to_dict,
)
from market_sim.scenario.overrides import apply_overrides
from market_sim.scenario.schema import (
    AGGREGATIONS,
    MECHANISM_KINDS,
    PAYMENTS,
    PLANNED_MECHANISM_KINDS,
    SETTLEMENTS,
    STRATEGY_KINDS,
    STRATEGY_PARAMS,
    AdvertiserConfig,
    LambdaSweepConfig,
    MechanismConfig,
    ModelConfig,
    QueryConfig,
    RegretConfig,
    Scenario,
    StrategyConfig,
    ValuationConfig,
)
from market_sim.scenario.validate import FloatRange, IntRange, ScenarioError

__all__ = [
    "AGGREGATIONS",
    "MECHANISM_KINDS",
    "PAYMENTS",
    "PLANNED_MECHANISM_KINDS",
    "SETTLEMENTS",
    "STRATEGY_KINDS",
    "STRATEGY_PARAMS",
    "AdvertiserConfig",
    "FloatRange",
    "IntRange",
    "LambdaSweepConfig",
    "RegretConfig",
    "MechanismConfig",
    "ModelConfig",
    "QueryConfig",
    "Scenario",
    "ScenarioError",
    "StrategyConfig",
    "ValuationConfig",
    "apply_overrides",
    "dump_scenario_toml",
    "load_scenario",
    "scenario_from_dict",
    "scenario_to_dict",
]
