"""Scenario files: TOML data validated into a typed, frozen, fully resolved :class:`Scenario`."""

from market_sim.config.fields import FloatRange, IntRange, ScenarioError
from market_sim.plugins import MechanismConfig
from market_sim.scenario.dump import dump_scenario_toml, scenario_to_dict
from market_sim.scenario.load import load_scenario, scenario_from_dict
from market_sim.scenario.overrides import apply_overrides
from market_sim.scenario.schema import (
    AGGREGATIONS,
    INFORMATIVENESS_MEASURES,
    QUERY_STREAMS,
    REWRITERS,
    STRATEGY_KINDS,
    STRATEGY_PARAMS,
    AdvertiserConfig,
    AuditConfig,
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

__all__ = [
    "AGGREGATIONS",
    "INFORMATIVENESS_MEASURES",
    "QUERY_STREAMS",
    "REWRITERS",
    "STRATEGY_KINDS",
    "STRATEGY_PARAMS",
    "AdvertiserConfig",
    "AuditConfig",
    "EvaConfig",
    "FloatRange",
    "IntRange",
    "LambdaSweepConfig",
    "RegretConfig",
    "MechanismConfig",
    "ModelConfig",
    "QueryConfig",
    "QueryGrammarConfig",
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
