"""Load, validate and resolve scenario files.

A scenario is TOML data, never code. :func:`load_scenario` reads a file, applies ``--set``
overrides and validates it into a frozen :class:`~market_sim.scenario.schema.Scenario` with every
default filled in and every relative path resolved against the scenario file's folder.
:func:`~market_sim.scenario.dump.dump_scenario_toml` writes that resolved scenario back; loading
the dump gives an equal scenario.

Each table has its parser: :mod:`~market_sim.scenario.model_table`,
:mod:`~market_sim.scenario.mechanism_table`, :mod:`~market_sim.scenario.query_table`,
:mod:`~market_sim.scenario.advertiser_table`, :mod:`~market_sim.scenario.optional_tables`; their
keys, types, ranges and defaults are in :mod:`~market_sim.scenario.table_specs`, and checks
across tables in :mod:`~market_sim.scenario.table_checks`.

Checks run in a fixed order and stop at the first error: unknown keys of a table first (after the
``kind``-like key that decides which keys are allowed), then its fields in declaration order. In
``[mechanism]`` the keys that decide which others are read (``policy_space``) and the per-kind
tables are checked before the unknown top-level keys
(:mod:`market_sim.scenario.mechanism_table`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from market_sim.config.fields import (
    ScenarioError,
    check_known_keys,
    parse_field,
    require_table,
    show,
    validate_fields,
)
from market_sim.lm.devices import DEVICE_PATTERN, DEVICES_DESCRIPTION
from market_sim.scenario.advertiser_table import check_advertiser_count, parse_advertisers
from market_sim.scenario.mechanism_table import (
    parse_mechanism,
)
from market_sim.scenario.model_table import (
    model_reference,
    resolved_prompt_format,
    resolved_weights_sha256,
)
from market_sim.scenario.optional_tables import (
    optional_table,
    parse_audit,
    parse_convergence,
    parse_eva,
    parse_lambda_sweep,
    parse_regret,
)
from market_sim.scenario.overrides import apply_overrides
from market_sim.scenario.query_table import parse_queries
from market_sim.scenario.schema import (
    ModelConfig,
    Scenario,
)
from market_sim.scenario.table_checks import (
    check_auction_count,
    check_distortions_are_read,
    check_fixed_queries,
)
from market_sim.scenario.table_specs import MODEL_SPECS, SCENARIO_SPECS, SCENARIO_TABLES
from market_sim.scenario.toml_file import read_toml


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
