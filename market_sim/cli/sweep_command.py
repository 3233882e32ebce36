"""``market-sim sweep``: a scenario over a grid of values and seeds."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from market_sim.cli.extensions import print_pooled_summary
from market_sim.cli.inputs import (
    checked_out_dir,
    load_checked_scenario,
    model_load_error,
    scenario_overrides,
    warn_if_slow,
)
from market_sim.cli.options import UsageError, check_threads, parse_workers

if TYPE_CHECKING:
    from market_sim.scenario import Scenario


def command_sweep(args: argparse.Namespace) -> None:
    """Run (or resume) a sweep and print where its table is."""
    from market_sim.results.folder_lock import exclusive_folder
    from market_sim.scenario import ScenarioError
    from market_sim.scenario.output_folder import check_result_folder
    from market_sim.sweep import RUNS_FILE, SweepError, prepare_sweep, run_prepared_sweep

    check_threads(args.threads)
    if not args.scenario.is_file():
        if args.scenario.is_fifo():  # read once, it would be empty for the runs
            raise UsageError(
                f"{args.scenario}: is a pipe; a sweep reads its scenario more than once, so "
                "write it to a file"
            )
        load_checked_scenario(args.scenario, ())  # the loader's line: missing, folder, device
        raise UsageError(f"{args.scenario}: not a regular file; expected a scenario TOML file")
    if args.seed is not None:
        raise UsageError("--seed: a sweep takes --seeds (e.g. --seeds 0-9), not --seed")
    if any(override.split("=", 1)[0].strip() == "seed" for override in args.overrides):
        raise UsageError("--set seed: a sweep takes --seeds (e.g. --seeds 0-9), not a seed")
    out_dir = checked_out_dir(args.out, Path("results") / f"{args.scenario.stem}-sweep")
    try:
        check_result_folder(out_dir, "sweep", None, args.force)
    except ScenarioError as error:
        raise UsageError(str(error)) from None
    base_scenario = sweep_base_scenario(args)
    try:
        prepared = prepare_sweep(
            args.scenario,
            args.grid,
            args.seeds,
            out_dir,
            overrides=scenario_overrides(args),
            backend=args.backend,
            workers=parse_workers(args.workers),
            address=args.address,
            threads=args.threads,
            force=args.force,
        )
        with exclusive_folder(out_dir):  # every input checked; now the folder may change
            result = run_prepared_sweep(
                prepared,
                progress=False if args.no_progress else None,
                before_runs=None if base_scenario is None else partial(warn_if_slow, base_scenario),
                checkpoint_seconds=args.checkpoint_every,
            )
    except (SweepError, ScenarioError) as error:
        raise UsageError(str(error)) from None
    except FileNotFoundError as error:
        raise model_load_error(error) from None
    print(
        f"{result.executed} runs done, {result.skipped} already complete; "
        f"table: {out_dir / RUNS_FILE} ({result.runs.height} rows)\n"
    )
    if result.runs.height:  # a sweep planned as nothing (or run by a test's stub) has no table
        print_pooled_summary(out_dir)


def sweep_base_scenario(args: argparse.Namespace) -> Scenario | None:
    """A sweep's base scenario for its slow-setting warnings, or None (errors left to the sweep).

    The warnings are printed by ``run_sweep`` once it has checked every input, so that bad
    input gets its one line alone.
    """
    try:
        return load_checked_scenario(args.scenario, scenario_overrides(args))
    except UsageError:
        return None
