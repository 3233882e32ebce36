"""``market-sim eva`` and ``audit``: the eva creator against a static pool, and the audit search."""

from __future__ import annotations

import argparse
from pathlib import Path

from market_sim.cli.extensions import print_pooled_summary
from market_sim.cli.inputs import (
    checked_result_dir,
    load_checked_scenario,
    load_scenario_model,
    run_seeds,
    scenario_overrides,
    warn_auctions_per_round_unused,
)
from market_sim.cli.options import UsageError


def eva_inputs(args: argparse.Namespace, check_heldout: bool = False, audit: bool = False):
    """The scenario and run seeds of ``eva`` / ``audit``, checked before any model is loaded.

    Args:
        args: The parsed command line.
        check_heldout: ``eva``: every seed's held-out split must be non-empty.
        audit: ``audit``: every audited mechanism must accept evolved queries.

    Returns:
        ``(scenario, seeds)``.
    """
    from market_sim.eva.errors import EvaSettingError
    from market_sim.eva.query_split import check_run_arguments, eva_split
    from market_sim.scenario import ScenarioError
    from market_sim.scenario.table_checks import check_auditable

    scenario = load_checked_scenario(args.scenario, scenario_overrides(args))
    if audit:
        try:
            check_auditable(scenario)
        except ScenarioError as error:
            raise UsageError(str(error)) from None
    seeds = run_seeds(args, scenario.seed)
    try:
        check_run_arguments(args.generations, seeds)
        for seed in seeds if check_heldout else ():
            eva_split(scenario, seed)
    except EvaSettingError as error:
        raise UsageError(str(error)) from None
    return scenario, seeds


def command_eva(args: argparse.Namespace) -> None:
    """Run (or resume) eva against the static baseline and print held-out reward per generation."""
    scenario, seeds = eva_inputs(args, check_heldout=True)
    out_dir = checked_result_dir(args, scenario, "eva", Path("results") / f"{scenario.name}-eva")
    from market_sim.eva.errors import EvaSettingError
    from market_sim.eva.experiment import EVA_FILE, run_eva  # torch: after the checks

    lm = load_scenario_model(scenario, args.threads)
    warn_auctions_per_round_unused(args)  # after every check: a refused input prints one line
    from market_sim.results.folder_lock import exclusive_folder

    try:
        with exclusive_folder(out_dir):
            result = run_eva(
                scenario,
                lm,
                args.generations,
                seeds,
                out_dir,
                progress=False if args.no_progress else None,
            )
    except EvaSettingError as error:  # any other ValueError is a fault: its traceback stays
        raise UsageError(str(error)) from None
    print(
        f"{len(seeds)} seed(s), {result.table['generation'].max()} generation(s); "
        f"results: {out_dir}/ ({EVA_FILE}, queries.parquet, eva_summary.json)\n"
    )

    def means() -> None:
        import polars as pl

        table = result.table.group_by("method", "generation").agg(pl.col("heldout_reward").mean())
        print(f"held-out reward, mean over {len(seeds)} seed(s), by generation:")
        for method in ("static", "eva"):
            rows = table.filter(pl.col("method") == method).sort("generation")
            print(f"  {method:<7}" + " ".join(f"{v:8.4f}" for v in rows["heldout_reward"]))

    print_pooled_summary(out_dir, means)


def command_audit(args: argparse.Namespace) -> None:
    """Audit the scenario's mechanisms and print the regret found by eva and by uniform search."""
    import json

    scenario, seeds = eva_inputs(args, audit=True)
    default = Path("results") / f"{scenario.name}-audit"
    out_dir = checked_result_dir(args, scenario, "audit", default)
    from market_sim.eva.audit import AUDIT_TOP_FILE, run_audit, top_report  # torch: after checks
    from market_sim.eva.errors import EvaSettingError

    lm = load_scenario_model(scenario, args.threads)
    warn_auctions_per_round_unused(args)  # after every check: a refused input prints one line
    from market_sim.results.folder_lock import exclusive_folder

    try:
        with exclusive_folder(out_dir):
            table = run_audit(scenario, lm, args.generations, seeds, out_dir)
    except EvaSettingError as error:  # a mechanism's mistake is MechanismOutputError: exit 1
        raise UsageError(str(error)) from None
    top = scenario.audit.top if scenario.audit else 10
    for mechanism, entry in top_report(table, top).items():
        print(mechanism)
        for method, numbers in entry["methods"].items():
            print(f"  {method:<8}" + json.dumps(numbers))
        for row in entry["top_queries"][:3]:
            print(f"    {row['regret_max']:9.4f}  {row['text']}")
    print(f"\nresults: {out_dir}/ (audit.parquet, {AUDIT_TOP_FILE})")
