"""``market-sim run`` (one seed, or ``--seeds`` in lockstep), ``lambda-sweep``, ``convergence``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from market_sim.cli.extensions import print_pooled_summary
from market_sim.cli.inputs import (
    check_round_fits,
    checked_out_dir,
    checked_result_dir,
    checked_run_dir,
    load_checked_scenario,
    load_scenario_model,
    run_seeds,
    scenario_overrides,
    warn_auctions_per_round_unused,
    warn_if_slow,
)
from market_sim.cli.options import UsageError, check_threads


def command_run(args: argparse.Namespace, scenario_path: Path) -> None:
    """Run a scenario, write results, print the summary.

    Every input check (options, scenario, output folder, model, prompt lengths) runs before the
    first round; torch and transformers are imported only once the model loads.
    """
    check_threads(args.threads)
    scenario = load_checked_scenario(scenario_path, scenario_overrides(args))
    if args.seeds is not None:
        command_run_replicates(args, scenario)
        return
    out_dir, warnings = checked_run_dir(args, scenario)
    lm = load_scenario_model(scenario, args.threads)
    check_round_fits(scenario, lm)
    for line in warnings:  # after every check, so a refused input prints only its error line
        print(line, file=sys.stderr)
    warn_if_slow(scenario)
    from market_sim.results.report import format_run_summary
    from market_sim.run import run_scenario

    progress = False if getattr(args, "no_progress", False) else None
    every = args.checkpoint_every
    from market_sim.results.folder_lock import exclusive_folder

    with exclusive_folder(out_dir):
        result = run_scenario(scenario, out_dir, lm, progress, checkpoint_seconds=every)
    print(format_run_summary(result.summary, result.agents))
    from market_sim.results import OPTIONAL_RUN_FILES, RESULT_FILES

    written = [name for name in (*RESULT_FILES, *OPTIONAL_RUN_FILES) if (out_dir / name).is_file()]
    print(f"\nresults: {out_dir}/ ({', '.join(written)})")


def command_run_replicates(args: argparse.Namespace, scenario) -> None:
    """``run --seeds``: replicate markets in lockstep, one results folder per seed.

    Prints each seed's folder, then the ``summary`` table pooled over the seeds.

    Args:
        args: The parsed ``run`` options (``--seeds``, ``--out``, ``--threads``, ...).
        scenario: The resolved scenario; each replicate replaces only its seed.
    """
    import dataclasses

    from market_sim.config.bounds import check_replicate_auctions

    seeds = run_seeds(args, scenario.seed)
    try:
        check_replicate_auctions(len(seeds), scenario.rounds, scenario.auctions_per_round)
    except ValueError as error:
        raise UsageError(f"--seeds: {error}") from None
    base = args.out or Path("results")
    from market_sim.scenario.output_folder import result_files_in

    checked_out_dir(base, base)  # writable, once: a seed's new folder goes in it
    found = result_files_in(base)
    if found and not args.force:  # the seeds' folders go inside it, among those results
        raise UsageError(
            f"--out: '{base}' holds another command's results ({', '.join(found)}); with "
            "--seeds it is the folder of the seeds' folders: choose another, or pass --force"
        )
    replicas = [dataclasses.replace(scenario, seed=seed) for seed in seeds]
    out_dirs, warnings = [], []
    for replica in replicas:  # a folder of an earlier call is checked (resumed or refused)
        folder = base / f"{replica.name}-seed{replica.seed}"
        if folder.exists():
            replica_args = argparse.Namespace(**{**vars(args), "out": folder})
            folder, lines = checked_run_dir(replica_args, replica)
            warnings += lines
        out_dirs.append(folder)
    lm = load_scenario_model(scenario, args.threads)
    check_round_fits(scenario, lm, len(seeds))
    for line in warnings:  # after every check, so a refused input prints only its error line
        print(line, file=sys.stderr)
    warn_if_slow(scenario)
    from market_sim.run import run_replicates

    progress = False if getattr(args, "no_progress", False) else None
    from market_sim.results.folder_lock import exclusive_folders

    with exclusive_folders(out_dirs):
        results = run_replicates(
            scenario, seeds, out_dirs, lm, progress, checkpoint_seconds=args.checkpoint_every
        )
    print(f"{len(results)} replicate runs of {scenario.name}, {scenario.rounds} rounds each:")
    for result, out_dir in zip(results, out_dirs, strict=True):
        print(f"  seed {result.summary['seed']}: {out_dir}/")
    print()

    def each_run() -> None:
        from market_sim.results.report import format_run_summary

        for result in results:
            print(format_run_summary(result.summary, result.agents) + "\n")

    print_pooled_summary(out_dirs, each_run)


def command_lambda_sweep(args: argparse.Namespace) -> None:
    """Run the lambda sweep of a scenario and print the share table."""
    check_threads(args.threads)
    scenario = load_checked_scenario(args.scenario, scenario_overrides(args))
    if scenario.lambda_sweep is None:
        raise UsageError("lambda_sweep: the scenario has no [lambda_sweep] table")
    if scenario.mechanism.kind != "token_auction":
        raise UsageError(
            f"mechanism.kind: the lambda sweep needs 'token_auction', got "
            f"'{scenario.mechanism.kind}'"
        )
    default = Path("results") / f"{scenario.name}-seed{scenario.seed}"
    out_dir = checked_result_dir(args, scenario, "lambda-sweep", default)
    lm = load_scenario_model(scenario, args.threads)
    warn_auctions_per_round_unused(args)  # after every check: a refused input prints one line
    from market_sim.experiments.lambda_sweep import run_lambda_sweep
    from market_sim.results.report import format_shares

    _, shares = run_lambda_sweep(scenario, lm, out_dir)
    print(format_shares(shares))
    print(f"\nresults: {out_dir}/ (samples.parquet, shares.parquet, provenance.json)")


def command_convergence(args: argparse.Namespace) -> None:
    """Run the MOSAIC convergence experiment of a scenario and print the mean curves."""
    check_threads(args.threads)
    scenario = load_checked_scenario(args.scenario, scenario_overrides(args))
    if scenario.mechanism.kind != "mosaic":
        raise UsageError(
            f"mechanism.kind: the convergence experiment needs 'mosaic', got "
            f"'{scenario.mechanism.kind}'"
        )
    default = Path("results") / f"{scenario.name}-seed{scenario.seed}"
    out_dir = checked_result_dir(args, scenario, "convergence", default)
    lm = load_scenario_model(scenario, args.threads)
    warn_auctions_per_round_unused(args)  # after every check: a refused input prints one line
    from market_sim.experiments.mosaic_convergence import run_convergence, summarize_convergence

    table = run_convergence(scenario, lm, out_dir)
    summary = summarize_convergence(table)
    for proposal, curve in summary["proposals"].items():
        print(f"{proposal}: mean over queries, tau = {scenario.mechanism.tau}")
        print("  M         " + " ".join(f"{m:>7d}" for m in curve["candidates"]))
        print("  TV        " + " ".join(f"{v:7.4f}" for v in curve["tv_mean"]))
        print("  KL        " + " ".join(f"{v:7.4f}" for v in curve["kl_mean"]))
        print("  reward gap" + " ".join(f"{v:8.4f}" for v in curve["reward_gap_mean"]))
        print(
            f"  smallest M with TV <= {summary['tv_threshold']}: "
            f"{curve['candidates_to_tv_threshold']}"
        )
    print(f"\nresults: {out_dir}/ (convergence.parquet, convergence_summary.json)")
