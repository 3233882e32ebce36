"""The argument parser of every ``market-sim`` subcommand, and the options they share."""

from __future__ import annotations

import argparse
from pathlib import Path

from market_sim.cli.extensions import extension_commands
from market_sim.cli.one_line_parser import OneLineParser
from market_sim.cli.options import checkpoint_interval_argument, folder_argument
from market_sim.config.bounds import (
    DEFAULT_CHECKPOINT_SECONDS,
)

VERBOSE_HELP = "show transformers' loading bars and library warnings (default: silenced)"


def accept_verbose_after_subcommands(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand (at any depth) the top-level ``--verbose`` flag too.

    ``market-sim run X --verbose`` then means ``market-sim --verbose run X``. The subcommands'
    copies default to ``SUPPRESS``: a subcommand parsed without the flag leaves the value the
    top level set instead of resetting it to False.
    """
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for subparser in action.choices.values():
            if "--verbose" not in subparser._option_string_actions:
                subparser.add_argument(
                    "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP
                )
            accept_verbose_after_subcommands(subparser)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from market_sim.provenance import VersionAction

    parser = OneLineParser(
        prog="market-sim",
        description="Simulate an ad marketplace whose ads are written by a language model.",
    )
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a scenario and write its results")
    add_scenario_arguments(run)
    run.add_argument("--rounds", type=int, help="rounds to run (default: the scenario's)")
    run.add_argument(
        "--out", type=folder_argument, help="results folder (default results/<name>-seed<seed>)"
    )
    run.add_argument(
        "--seeds",
        help="replicate seeds run in lockstep, sharing each LM forward (0-7, 0,3,5); each "
        "writes <out>/<name>-seed<seed> (default out: results) exactly as a separate run; "
        "prints the summary pooled over the seeds",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="overwrite a finished run of a different resolved scenario in the results folder",
    )
    add_checkpoint_argument(run, "<out>/checkpoint.pickle")
    for command in extension_commands().values():
        command.add_parser(commands)

    sweep = commands.add_parser("lambda-sweep", help="brand shares as the first bid share moves")
    add_scenario_arguments(sweep, NO_PROGRESS_HELP)
    sweep.add_argument(
        "--samples",
        type=int,
        help="replies per lambda and aggregation (default: the scenario's lambda_sweep.samples)",
    )
    sweep.add_argument(
        "--out",
        type=folder_argument,
        help="folder for samples.parquet and shares.parquet (default results/<name>-seed<seed>)",
    )
    add_force_argument(sweep, "lambda-sweep")

    convergence = commands.add_parser(
        "convergence", help="MOSAIC: distance to pi* as the number of candidates M grows"
    )
    add_scenario_arguments(convergence, NO_PROGRESS_HELP)
    convergence.add_argument(
        "--out",
        type=folder_argument,
        help="folder for convergence.parquet (default results/<name>-seed<seed>)",
    )
    add_force_argument(convergence, "convergence")

    add_sweep_parsers(commands)
    add_eva_parsers(commands)

    lm = commands.add_parser(
        "lm", help="language models: train the tiny LM, fetch a pretrained one, sample replies"
    )
    lm_commands = lm.add_subparsers(dest="lm_command", required=True)
    train = lm_commands.add_parser("train", help="generate the ad corpus and train the tiny LM")
    train.add_argument(
        "--out",
        type=folder_argument,
        help="output folder (required; the bundled model is never replaced)",
    )
    train.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    train.add_argument("--steps", type=int, help="optimizer steps (default: the bundled recipe)")
    generate = lm_commands.add_parser("generate", help="sample replies from a model")
    generate.add_argument("prompt", nargs="?", help="raw prompt (default: built from --query)")
    generate.add_argument(
        "--query", default="vacation in Hawaii", help="the user's query (default: %(default)s)"
    )
    generate.add_argument(
        "--sponsor",
        action="append",
        default=[],
        help="an advertiser context put in the prompt; repeatable (default: none)",
    )
    generate.add_argument(
        "--model",
        default="bundled:tiny-ads",
        help="bundled:<name>, cache:<name>, hub:<id> or a model folder (default: %(default)s)",
    )
    generate.add_argument(
        "--samples", type=int, default=3, help="replies to sample (default: %(default)s)"
    )
    generate.add_argument(
        "--max-new-tokens", type=int, default=24, help="reply length limit (default: %(default)s)"
    )
    generate.add_argument(
        "--temperature", type=float, default=1.0, help="sampling temperature (default: %(default)s)"
    )
    generate.add_argument(
        "--seed", type=int, default=0, help="sampling seed (default: %(default)s)"
    )
    generate.add_argument(
        "--prompt-format",
        choices=("auto", "plain", "chat"),
        default="auto",
        help="auto (default): chat when the tokenizer has a chat template",
    )
    add_runtime_arguments(generate, device_default="auto")
    get = lm_commands.add_parser(
        "get", help="download, verify and convert a known pretrained model into the cache"
    )
    get.add_argument("name", help="e.g. smollm2-135m-instruct")
    get.add_argument(
        "--cache-dir",
        type=folder_argument,
        help="cache root (default: $MARKET_SIM_CACHE, else $XDG_CACHE_HOME/market-sim, else "
        "~/.cache/market-sim)",
    )
    for subcommands in (commands, lm_commands):  # "required: {run,sweep,...}", not its dest
        subcommands.metavar = "{" + ",".join(subcommands.choices) + "}"
    accept_verbose_after_subcommands(parser)
    return parser


def add_checkpoint_argument(parser: argparse.ArgumentParser, where: str) -> None:
    """``--checkpoint-every SECONDS``: how often a run writes its state to ``where``."""
    parser.add_argument(
        "--checkpoint-every",
        type=checkpoint_interval_argument,
        default=DEFAULT_CHECKPOINT_SECONDS,
        metavar="SECONDS",
        help=f"write a run's state to {where} after a round once SECONDS have passed since "
        "the last (0: every round; off: never); the same command run again resumes from it "
        f"(default {DEFAULT_CHECKPOINT_SECONDS:g})",
    )


def add_sweep_parsers(commands: argparse._SubParsersAction) -> None:
    """The ``sweep`` and ``plot`` subcommands."""
    sweep = commands.add_parser("sweep", help="run a scenario over a grid of values and seeds")
    add_scenario_arguments(sweep)
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="a dotted key and its values (TOML-typed), e.g. mechanism.payment=first_price,none; "
        "repeatable (default: no grid, the scenario alone)",
    )
    sweep.add_argument("--seeds", required=True, help="seeds: 0-9, 0,3,5 or a mix like 0-3,8")
    sweep.add_argument("--rounds", type=int, help="rounds to run (default: the scenario's)")
    sweep.add_argument(
        "--out",
        type=folder_argument,
        help="sweep folder (default results/<scenario file name>-sweep)",
    )
    sweep.add_argument("--backend", default="local", help="local (default) | ray")
    sweep.add_argument("--workers", help="parallel runs (local default 1; ray: local CPUs)")
    sweep.add_argument(
        "--address", help="Ray cluster address (ray backend), e.g. auto (default: a local Ray)"
    )
    add_force_argument(sweep, "sweep")
    add_checkpoint_argument(sweep, "<out>/runs/<run>/checkpoint.pickle")
    hide_option(sweep, "--seed")  # rejected with a pointer to --seeds, so not offered


def add_eva_parsers(commands: argparse._SubParsersAction) -> None:
    """The ``eva`` and ``audit`` subcommands."""
    eva = commands.add_parser(
        "eva", help="eva: creator/solver generations vs a static pool, held-out reward per seed"
    )
    audit = commands.add_parser(
        "audit", help="eva audit: search the queries on which each mechanism is most manipulable"
    )
    eva_progress = (
        "no progress (default: a bar per seed on a terminal, else a line every 5%% of its "
        "generations or 30 s)"
    )
    for parser, results, progress_help in (
        (eva, "eva.parquet", eva_progress),
        (audit, "audit.parquet", NO_PROGRESS_HELP),
    ):
        add_scenario_arguments(parser, progress_help)
        parser.add_argument("--generations", type=int, required=True, help="creator generations")
        parser.add_argument(
            "--seeds", help="several run seeds: 0-4, 0,3,5 (default: the scenario's seed)"
        )
        parser.add_argument(
            "--out",
            type=folder_argument,
            help=f"folder for {results} (default results/<name>-{parser.prog.split()[-1]})",
        )
        add_force_argument(parser, parser.prog.split()[-1])


def add_force_argument(parser: argparse.ArgumentParser, command: str) -> None:
    """``--force``: write into a folder holding other results.

    See :func:`~market_sim.cli.inputs.checked_result_dir` for what counts as other results.
    """
    parser.add_argument(
        "--force",
        action="store_true",
        help=f"write the {command} results into a folder holding another command's results or "
        "results of a different resolved scenario"
        + (
            " (a sweep: another sweep's tables are replaced, its run folders kept)"
            if command == "sweep"
            else ""
        ),
    )


def add_runtime_arguments(
    parser: argparse.ArgumentParser,
    device_default: str = "the scenario's model.device, else auto",
) -> None:
    """``--device`` (its default described by ``device_default``) and ``--threads``."""
    parser.add_argument(
        "--device",
        help=f"auto | cpu | cuda | cuda:N | mps (default: {device_default})",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: fastest for small models on few cores)",
    )


PROGRESS_HELP = "no progress (default: a bar on a terminal, else a line every 5%% or 30 s)"


NO_PROGRESS_HELP = "accepted and ignored: this command prints no progress while it works"


def add_scenario_arguments(
    parser: argparse.ArgumentParser, progress_help: str = PROGRESS_HELP
) -> None:
    """The scenario file, ``--set`` overrides, ``--seed``, and runtime options.

    ``progress_help`` is the ``--no-progress`` help: :data:`NO_PROGRESS_HELP` for commands that
    report no progress.
    """
    parser.add_argument("scenario", type=Path, help="scenario TOML file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a dotted key, e.g. mechanism.payment=none; repeatable (default: none)",
    )
    parser.add_argument("--seed", type=int, help="override the scenario's seed (default: its own)")
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help=progress_help,
    )
    add_runtime_arguments(parser)


def hide_option(parser: argparse.ArgumentParser, flag: str) -> None:
    """Leave ``flag`` out of ``parser``'s ``--help`` (it is still parsed)."""
    for action in parser._actions:
        if flag in action.option_strings:
            action.help = argparse.SUPPRESS
