"""Optional tables: ``[regret]``, ``[lambda_sweep]``, ``[convergence]``, ``[eva]``, ``[audit]``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from market_sim.config.fields import (
    ScenarioError,
    check_known_keys,
    child_key,
    item_key,
    parse_field,
    require_list,
    require_table,
    validate_fields,
)
from market_sim.plugins import (
    MechanismConfig,
    read_values,
)
from market_sim.scenario.mechanism_table import (
    merge_audited,
    parse_mechanism,
)
from market_sim.scenario.schema import (
    AuditConfig,
    ConvergenceConfig,
    EvaConfig,
    LambdaSweepConfig,
    QueryConfig,
    QueryGrammarConfig,
    RegretConfig,
)
from market_sim.scenario.table_specs import (
    AUDIT_SPECS,
    AUDIT_TABLES,
    CONVERGENCE_SPECS,
    EVA_SPECS,
    EVA_TABLES,
    GRAMMAR_SPECS,
    LAMBDA_SWEEP_ADVERTISERS,
    LAMBDA_SWEEP_SPECS,
    REGRET_SPECS,
)


def optional_table(table: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """Return sub-table ``name`` of ``table``, or an empty table if it is absent."""
    return require_table(table.get(name, {}), name)


def parse_regret(table: Mapping[str, Any]) -> RegretConfig:
    """Validate ``[regret]``."""
    return RegretConfig(**validate_fields(table, REGRET_SPECS, "regret"))


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
