"""Command-line interface: ``market-sim run``, ``demo``, ``sweep``, ``plot``, ``eva`` and more.

Subcommands: run, lambda-sweep, convergence, sweep, eva, audit, lm here; demo, plot and summary
come from :mod:`analysis.commands`, registered as entry points of the group
:data:`COMMAND_ENTRY_POINTS` (``pyproject.toml``), so that ``market_sim`` never imports
``analysis``, the layer above it. Any installed package can add a subcommand the same way.

Bad input (scenario keys, model references, devices) exits with status 2 and one line on stderr
naming the problem; results are written only after a run completes, atomically.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from market_sim.config.bounds import (
    DEFAULT_CHECKPOINT_SECONDS,
    MAX_SAMPLES,
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    SEED_MAX,
)
from market_sim.process_lifetime import (
    INTERRUPTED_EXIT_STATUS,
    SweepWorkerDiedError,
    terminate_as_interrupt,
)

if TYPE_CHECKING:
    from market_sim.scenario import Scenario

USAGE_ERROR = 2
RUN_ERROR = 1
COMMAND_ENTRY_POINTS = "market_sim.commands"
"""Entry-point group of the subcommands other packages add (``name = "module:object"``)."""


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit status 2."""


class ExtensionCommand(Protocol):
    """A subcommand registered under :data:`COMMAND_ENTRY_POINTS` (e.g. ``analysis.commands``).

    Its module should import little at load time: every ``market-sim`` call loads it to build
    the parser.
    """

    def add_parser(self, commands: argparse._SubParsersAction) -> None:
        """Add the subcommand's parser (named as its entry point) to ``commands``."""

    def run(self, args: argparse.Namespace) -> None:
        """Run it; bad input raises :class:`UsageError`."""


def extension_commands() -> dict[str, ExtensionCommand]:
    """The installed extension subcommands, by name (sorted)."""
    from importlib.metadata import entry_points

    found = {entry.name: entry for entry in entry_points(group=COMMAND_ENTRY_POINTS)}
    return {name: found[name].load() for name in sorted(found)}


def folder_argument(text: str) -> Path:
    """The ``type`` of a folder option: a path, refused when empty.

    ``Path("")`` is the current folder, so an unset shell variable (``--out "$DIR"``) would
    otherwise write results wherever the command was started.

    Raises:
        argparse.ArgumentTypeError: ``text`` is empty or blank.
    """
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; name a folder ('.' for the current one)")
    return Path(text)


def checkpoint_interval_argument(text: str) -> float | None:
    """The ``type`` of ``--checkpoint-every``: seconds (0: after every round), or ``off``.

    Raises:
        argparse.ArgumentTypeError: Neither ``off`` nor a finite number of seconds >= 0.
    """
    if text.strip().lower() == "off":
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise argparse.ArgumentTypeError(
            f"seconds >= 0 between two checkpoints (0: after every round) or 'off', got {text!r}"
        )
    return seconds


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (exit 2), not a usage block.

    A single-valued option given twice (``--rounds 5 ... --rounds 50``) is refused instead of
    the last one winning silently: :func:`given_once` versions replace argparse's ``store``
    actions. Repeatable options (``--set``, ``--grid``: ``append``) stay repeatable.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, base in ONCE_ACTIONS.items():
            self.register("action", name, given_once(base))
        self.options_given: set[argparse.Action] = set()

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Parse as argparse does, with this parser's record of the options given emptied."""
        self.options_given = set()
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        """Raise the error as a :class:`UsageError` (``main`` prints it in one line)."""
        raise UsageError(message)


ONCE_ACTIONS: dict[str | None, type[argparse.Action]] = {
    None: argparse._StoreAction,  # add_argument without action=
    "store": argparse._StoreAction,
    "store_const": argparse._StoreConstAction,
    "store_true": argparse._StoreTrueAction,
    "store_false": argparse._StoreFalseAction,
}
"""argparse's single-valued actions, by their ``action=`` name."""


def given_once(base: type[argparse.Action]) -> type[argparse.Action]:
    """``base`` refusing a second occurrence of its option in one command line."""

    class GivenOnce(base):  # type: ignore[misc, valid-type]
        def __call__(
            self,
            parser: argparse.ArgumentParser,
            namespace: argparse.Namespace,
            values: Any,
            option_string: str | None = None,
        ) -> None:
            if option_string is not None and isinstance(parser, OneLineParser):
                if self in parser.options_given:
                    parser.error(f"{self.option_strings[-1]}: given twice; give it once")
                parser.options_given.add(self)
            super().__call__(parser, namespace, values, option_string)

    GivenOnce.__name__ = f"GivenOnce{base.__name__}"
    return GivenOnce


MAX_TRAIN_STEPS = 10**7
"""Largest ``lm train --steps`` (the bundled recipe takes a few thousand)."""


def check_int_option(option: str, value: int | None, low: int, high: int) -> None:
    """An integer option (None: not given) between ``low`` and ``high``, else UsageError."""
    if value is not None and not low <= value <= high:
        raise UsageError(f"{option}: must be between {low} and {high}, got {value}")


def check_threads(threads: int) -> None:
    """``--threads``: between 1 and the number of CPUs of this machine."""
    cpus = os.cpu_count() or 1
    if not 1 <= threads <= cpus:
        raise UsageError(f"--threads: must be between 1 and {cpus} (the CPUs here), got {threads}")


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
    """``--force``: write into a folder holding other results (see :func:`checked_result_dir`)."""
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


def scenario_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` values plus the shorthand flags as dotted overrides.

    Raises:
        UsageError: One key given twice (``--set rounds=10 --rounds 5``, or ``--set`` twice,
            in either index spelling): the last would silently win.
    """
    import json

    from market_sim.scenario.overrides import display_key, split_key

    given = [(f"--set {override}", override) for override in getattr(args, "overrides", [])]
    for flag, key in (
        ("rounds", "rounds"),
        ("seed", "seed"),
        ("device", "model.device"),
        ("samples", "lambda_sweep.samples"),
    ):
        value = getattr(args, flag, None)
        if value is not None:  # a device is any text: written as a TOML string, escaped
            shown = json.dumps(value, ensure_ascii=False) if flag == "device" else value
            given.append((f"--{flag} {value}", f"{key}={shown}"))
    first_given: dict[tuple[str, ...], str] = {}
    for source, override in given:
        if "=" not in override:
            continue  # malformed: the scenario loader names it
        path = tuple(split_key(override.split("=", 1)[0]))
        if path in first_given:
            raise UsageError(
                f"{display_key(path)}: given twice ({first_given[path]}, {source}); give it once"
            )
        first_given[path] = source
    return [override for _, override in given]


def load_checked_scenario(path: Path, overrides: Sequence[str]):
    """Load and validate a scenario, turning every problem into a :class:`UsageError`."""
    from market_sim.scenario import ScenarioError, load_scenario

    try:
        return load_scenario(path, overrides)
    except ScenarioError as error:
        raise UsageError(str(error)) from None


def load_checked_model(
    reference: str,
    device: str,
    dtype: str = "auto",
    threads: int = 1,
    keys: tuple[str, str, str] = ("model.path", "model.device", "model.dtype"),
):
    """Load a model; a missing model, unavailable device or unknown dtype is a UsageError.

    Each problem is reported under the key it concerns: ``keys`` name the reference, the device
    and the dtype (``--model``, ``--device`` for ``lm generate``). Also sets torch's CPU thread
    count (``threads``) before any model work.
    """
    check_threads(threads)
    import torch

    from market_sim.lm.loading import ModelNotFoundError, UnknownDtypeError
    from market_sim.lm.model import LanguageModel

    torch.set_num_threads(threads)
    try:
        return LanguageModel.load(reference, device=device, dtype=dtype)
    except ModelNotFoundError as error:
        raise UsageError(f"{keys[0]}: {error}") from None
    except UnknownDtypeError as error:
        raise UsageError(f"{keys[2]}: {error}") from None
    except ValueError as error:  # resolve_device: the device is not available here
        raise UsageError(f"{keys[1]}: {error}") from None


def load_scenario_model(scenario, threads: int):
    """The scenario's model, loaded and checked: every prompt plus the reply fits its positions."""
    from market_sim.scenario import ScenarioError
    from market_sim.scenario.prompt_fit import check_model_fits

    config = scenario.model
    lm = load_checked_model(config.path, config.device, config.dtype, threads)
    try:
        check_model_fits(scenario, lm)  # also checks model.prompt_format against the tokenizer
    except ScenarioError as error:
        raise UsageError(str(error)) from None
    return lm.with_prompt_format(config.prompt_format)


def check_round_fits(scenario, lm, replicates: int = 1) -> None:
    """Exit 2 when a round of the scenario (x ``replicates`` in lockstep) cannot fit in memory."""
    from market_sim.scenario import ScenarioError
    from market_sim.scenario.round_memory import check_round_memory

    try:
        check_round_memory(scenario, lm, replicates)
    except ScenarioError as error:
        raise UsageError(str(error)) from None


def checked_out_dir(out: Path | None, default: Path) -> Path:
    """``--out`` (else ``default``), checked to be a folder this process can write into."""
    from market_sim.scenario import ScenarioError
    from market_sim.scenario.output_folder import check_writable_folder

    out_dir = out or default
    try:
        check_writable_folder(out_dir)
    except ScenarioError as error:
        raise UsageError(str(error)) from None
    return out_dir


def checked_result_dir(
    args: argparse.Namespace, scenario: Scenario, command: str, default: Path
) -> Path:
    """``--out`` (else ``default``): writable, and not holding other results unless ``--force``.

    Other results are another command's (``eva`` into a run's folder) or this command's for a
    different resolved scenario (:func:`~market_sim.scenario.output_folder.check_result_folder`);
    the same scenario's are resumed or rewritten.

    Args:
        args: The parsed options (``out``, ``force``).
        scenario: The resolved scenario the command will write.
        command: The command, a key of
            :data:`~market_sim.scenario.output_folder.COMMAND_FILES`.
        default: The folder when ``--out`` is not given.

    Returns:
        The checked folder.

    Raises:
        UsageError: Not writable, or holding other results without ``--force``.
    """
    from market_sim.scenario import ScenarioError, dump_scenario_toml
    from market_sim.scenario.output_folder import check_result_folder

    out_dir = checked_out_dir(args.out, default)
    try:
        check_result_folder(out_dir, command, dump_scenario_toml(scenario), args.force)
    except ScenarioError as error:
        raise UsageError(str(error)) from None
    return out_dir


def checked_run_dir(args: argparse.Namespace, scenario) -> tuple[Path, list[str]]:
    """The run's folder: writable, and not holding a run of a different resolved scenario.

    Returns:
        The folder, and the warning lines to print once every input is checked (unrelated
        files already in the folder: the run still goes on, leaving them as they are).
    """
    from market_sim.scenario import ScenarioError, dump_scenario_toml
    from market_sim.scenario.output_folder import check_run_folder

    out_dir = checked_out_dir(args.out, Path("results") / f"{scenario.name}-seed{scenario.seed}")
    try:
        unrelated = check_run_folder(out_dir, dump_scenario_toml(scenario), args.force)
    except ScenarioError as error:
        raise UsageError(str(error)) from None
    if not unrelated:
        return out_dir, []
    shown = ", ".join(unrelated[:5]) + (", ..." if len(unrelated) > 5 else "")
    return out_dir, [
        f"market-sim: warning: --out: '{out_dir}' also holds files a run does not write "
        f"({shown}); they are left as they are"
    ]


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


def print_pooled_summary(
    folders: Path | list[Path], fallback: Callable[[], None] | None = None
) -> None:
    """The ``summary`` table over ``folders`` (runs pooled, 95% intervals over seeds).

    Args:
        folders: Result folders (runs, sweeps, eva outputs).
        fallback: What to print instead when the command is not available.

    The command comes from :mod:`analysis.commands` through the ``market_sim.commands`` entry
    point; where that is not registered (the project used from its source tree without
    ``pip install -e .``), one warning line on stderr, then ``fallback``.
    """
    summary = extension_commands().get("summary")  # analysis.commands, when registered
    if summary is None:
        print(
            "market-sim: warning: no summary table: the 'summary' command is not registered "
            "(pip install -e . registers it)",
            file=sys.stderr,
        )
        if fallback is not None:
            fallback()
        return
    summary.run(argparse.Namespace(dir=folders, by=[], format="table", verbose=False))


def warn_auctions_per_round_unused(args: argparse.Namespace) -> None:
    """One warning line when ``--set auctions_per_round=`` is given to a command that ignores it.

    ``lambda-sweep``, ``convergence``, ``eva`` and ``audit`` draw their own queries and
    samples, not rounds of a market (the eva query stream of a ``run`` reads K; the ``eva``
    command's creator and solver do not). A scenario file may set the key for its ``run``
    (``smollm2_mosaic_convergence.toml`` does): only an explicit ``--set`` is warned about.
    """
    for override in scenario_overrides(args):
        key, _, value = override.partition("=")
        if key.strip() == "auctions_per_round":
            print(
                f"market-sim: warning: --set auctions_per_round={value.strip()} does not apply "
                f"to {args.command}; it runs as with 1",
                file=sys.stderr,
            )


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


def run_seeds(args: argparse.Namespace, scenario_seed: int) -> tuple[int, ...]:
    """``--seeds`` parsed, else the scenario's seed (``--seed`` already applied to it)."""
    from market_sim.sweep import SweepError, parse_seeds

    if args.seeds is None:
        return (scenario_seed,)
    if args.seed is not None:
        raise UsageError("--seed and --seeds: give one of them")
    try:
        return parse_seeds(args.seeds)
    except SweepError as error:
        raise UsageError(str(error)) from None


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
    from market_sim.scenario.load import check_auditable

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


def command_lm(args: argparse.Namespace) -> None:
    """``lm train``, ``lm generate`` and ``lm get``."""
    if args.lm_command == "get":
        command_lm_get(args)
        return
    if args.lm_command == "train":
        check_int_option("--steps", args.steps, 1, MAX_TRAIN_STEPS)
        check_int_option("--seed", args.seed, 0, SEED_MAX)
        out_dir = checked_train_dir(args.out)
        from market_sim.lm.tiny import train_tiny_lm

        options = {} if args.steps is None else {"steps": args.steps}
        folder = train_tiny_lm(out_dir, seed=args.seed, **options)
        print(f"saved the tiny LM to {folder}")
        return
    from market_sim.prompting import prompt_builder

    check_int_option("--samples", args.samples, 1, MAX_SAMPLES)
    from market_sim.plugins.base import MAX_NEW_TOKENS  # the bound of mechanism.max_new_tokens

    check_int_option("--max-new-tokens", args.max_new_tokens, 1, MAX_NEW_TOKENS)
    check_int_option("--seed", args.seed, 0, SEED_MAX)
    if not MIN_TEMPERATURE <= args.temperature <= MAX_TEMPERATURE:  # NaN fails both
        raise UsageError(
            f"--temperature: must be between {MIN_TEMPERATURE:g} and {MAX_TEMPERATURE:g}, "
            f"got {args.temperature}"
        )
    if args.prompt == "":
        raise UsageError("prompt: empty; give text to continue, or leave it out for --query's")
    if args.prompt is None and not args.query.strip():  # as queries.items refuses a blank query
        raise UsageError("--query: must be a non-empty string")
    for sponsor in args.sponsor:  # as advertisers[i].context refuses a blank context
        if not sponsor.strip():
            raise UsageError(f"--sponsor: must be a non-empty string, got {sponsor!r}")
    if args.device is not None and not args.device.strip():
        from market_sim.lm.devices import DEVICES_DESCRIPTION

        raise UsageError(f"--device: empty; allowed: {DEVICES_DESCRIPTION}")
    if not args.model.strip():  # Path("") is the working folder: refuse it by name
        raise UsageError(
            "--model: empty; allowed: bundled:<name>, cache:<name>, hub:<id> or a model folder"
        )
    keys = ("--model", "--device", "dtype")  # dtype is always auto here: never reported
    lm = load_checked_model(args.model, args.device or "auto", threads=args.threads, keys=keys)
    try:
        builder = prompt_builder(args.prompt_format, lm.tokenizer)
        prompt = args.prompt if args.prompt is not None else builder(args.query, args.sponsor)
    except ValueError as error:  # no template for chat, or one that does not render
        raise UsageError(f"--prompt-format: {error}") from None
    prompt_tokens = len(lm.encode_prompt(prompt))
    if lm.max_positions is not None and prompt_tokens + args.max_new_tokens > lm.max_positions:
        raise UsageError(
            f"--max-new-tokens: the prompt ({prompt_tokens} tokens) and the reply must fit the "
            f"model's {lm.max_positions} positions: at most "
            f"{max(lm.max_positions - prompt_tokens, 0)}, got {args.max_new_tokens}"
        )
    samples = lm.sample([prompt] * args.samples, args.max_new_tokens, args.temperature, args.seed)
    print(prompt)
    for tokens in samples:
        print("  ->", lm.decode(tokens).strip())


def checked_train_dir(out: Path | None) -> Path:
    """``lm train --out``: required, writable, and never inside the bundled checkpoints."""
    from market_sim.lm.bundled_models import BUNDLED_ROOT

    if out is None:
        raise UsageError(
            "--out: required (e.g. --out results/tiny-ads); the bundled model is never replaced"
        )
    from market_sim.scenario.output_folder import result_files_in

    bundled = BUNDLED_ROOT.resolve()
    try:
        target = out.expanduser().resolve()
    except (RuntimeError, OSError):  # a loop of links: the folder check names it in one line
        checked_out_dir(out, out)
        raise
    if target == bundled or bundled in target.parents:
        raise UsageError(
            f"--out: '{out}' is inside the bundled checkpoints ({bundled}); choose another folder"
        )
    found = result_files_in(target)
    if found:
        raise UsageError(
            f"--out: '{out}' holds results ({', '.join(found)}), not a model; choose another folder"
        )
    return checked_out_dir(out, out)  # after the checks above: its write probe touches the folder


def command_lm_get(args: argparse.Namespace) -> None:
    """Download, verify, convert and cache a known model; print where it is and its manifest."""
    import json

    from market_sim.lm.cached_models import (
        CACHE_ENV,
        CACHE_PREFIX,
        MANIFEST_FILE,
        cache_root,
        model_folder,
    )
    from market_sim.lm.get import GetError, get_model
    from market_sim.scenario import ScenarioError
    from market_sim.scenario.output_folder import check_writable_folder

    # One root for the check, the download and the printed hint (``~`` expanded in all three).
    root = cache_root() if args.cache_dir is None else Path(args.cache_dir).expanduser()
    option = (
        "--cache-dir"
        if args.cache_dir is not None
        else CACHE_ENV
        if os.environ.get(CACHE_ENV)
        else "the cache folder (XDG_CACHE_HOME or ~/.cache)"
    )
    target = model_folder(args.name, root)
    try:
        if not (target / MANIFEST_FILE).is_file():  # a cached model is only read
            check_writable_folder(target.parent, option)  # <root>/models, where lm get writes
    except ScenarioError as error:
        raise UsageError(str(error)) from None
    except OSError as error:  # e.g. a name too long for the system
        where = f"'{error.filename}': " if error.filename else ""
        raise UsageError(f"{option}: {where}{error.strerror or error}") from None
    try:
        result = get_model(args.name, root)
    except GetError as error:
        raise UsageError(f"lm get: {error}") from None
    if not result.downloaded:
        print(f"already in the cache: {result.folder}")
    else:
        timings = ", ".join(f"{step} {secs:.1f} s" for step, secs in result.seconds.items())
        print(f"saved {args.name} to {result.folder} ({timings})")
    print(json.dumps(result.manifest, indent=2))
    hint = f" with {CACHE_ENV}={root}" if args.cache_dir is not None else ""
    print(f'use it as model.path = "{CACHE_PREFIX}{args.name}"{hint}')


def parse_workers(text: str | None) -> int | None:
    """``--workers``: an integer >= 1, or None when not given."""
    if text is None:
        return None
    from market_sim.config.fields import significant_digits

    digits = significant_digits(text.strip())
    if digits is None or len(digits) > 9 or int(digits) < 1:
        raise UsageError(f"--workers: must be an integer from 1 to 999999999, got {text!r}")
    return int(digits)


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


def model_load_error(error: FileNotFoundError) -> Exception:
    """A sweep run's model that failed to load, as a one-line ``model.path`` error.

    Weights that parse but do not fit their config show only when a run loads them: the
    sweep's check before any run reads tokenizers, configs and weight-file headers. Any other
    ``error`` is returned as it is.
    """
    from market_sim.lm.loading import ModelNotFoundError

    if isinstance(error, ModelNotFoundError):
        return UsageError(f"model.path: {error}")
    return error


def warn_if_slow(scenario, runs: int = 1) -> None:
    """One ``market-sim: warning:`` line on stderr per slow setting (before anything runs)."""
    from market_sim.scenario.slow_settings import slow_setting_warnings

    for line in slow_setting_warnings(scenario, runs):
        print(f"market-sim: warning: slow setting: {line}", file=sys.stderr)


def sweep_base_scenario(args: argparse.Namespace) -> Scenario | None:
    """A sweep's base scenario for its slow-setting warnings, or None (errors left to the sweep).

    The warnings are printed by ``run_sweep`` once it has checked every input, so that bad
    input gets its one line alone.
    """
    try:
        return load_checked_scenario(args.scenario, scenario_overrides(args))
    except UsageError:
        return None


PATH_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EROFS}
)
"""Errors of a path itself (permission, a name too long, a file where a folder should be): in
Python 3.11 even ``Path.exists()`` raises them. Reported as bad input, one line, exit 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """The command line in this process; returns the exit status.

    Ctrl-C or SIGTERM from the start of argument parsing to the end of the command: one line,
    exit status :data:`~market_sim.process_lifetime.INTERRUPTED_EXIT_STATUS`.
    """
    try:
        with terminate_as_interrupt():
            try:
                args = build_parser().parse_args(argv)
            except UsageError as error:  # argument errors: one line, not a usage block
                print(f"market-sim: error: {error}", file=sys.stderr)
                return USAGE_ERROR
            return run_command(args)
    except KeyboardInterrupt as interrupt:  # Ctrl-C or SIGTERM: one line, no traceback
        detail = f": {interrupt}" if str(interrupt) else ""
        print(f"market-sim: interrupted{detail}", file=sys.stderr)
        return INTERRUPTED_EXIT_STATUS


def console_main() -> NoReturn:
    """Entry point of the ``market-sim`` console script and of ``python -m market_sim``.

    Once the command has returned, its results are written and its status is decided: SIGINT
    and SIGTERM are then ignored while the interpreter shuts down (over a second with torch
    loaded), so that a signal in that window neither turns a finished command into a killed
    one (exit -2 or -15) nor prints a traceback from torch's exit hooks.
    """
    import signal

    status = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(status)


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed subcommand; returns the exit status."""
    from market_sim.market.strategies import StrategyOutputError
    from market_sim.platform.outcome_checks import MechanismOutputError
    from market_sim.progress import quiet_libraries
    from market_sim.results.files import NonFiniteResultError
    from market_sim.results.folder_lock import FolderBusyError

    quiet_libraries(args.verbose)

    try:
        if args.command == "run":
            command_run(args, args.scenario)
        elif args.command == "lambda-sweep":
            command_lambda_sweep(args)
        elif args.command == "convergence":
            command_convergence(args)
        elif args.command == "sweep":
            command_sweep(args)
        elif args.command == "eva":
            command_eva(args)
        elif args.command == "audit":
            command_audit(args)
        elif args.command == "lm":
            command_lm(args)
        else:
            extension_commands()[args.command].run(args)
    except (UsageError, FolderBusyError) as error:  # a busy folder: refused before writing
        print(f"market-sim: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except (
        NonFiniteResultError,
        SweepWorkerDiedError,
        MechanismOutputError,
        StrategyOutputError,
    ) as error:
        print(f"market-sim: error: {error}", file=sys.stderr)
        return RUN_ERROR
    except OSError as error:  # a path the user gave that this process cannot use
        if error.errno not in PATH_ERRNOS:
            raise
        paths = [name for name in (error.filename, error.filename2) if name is not None]
        where = "".join(f"{name}: " for name in paths)
        print(f"market-sim: error: {where}{error.strerror}", file=sys.stderr)
        return USAGE_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
