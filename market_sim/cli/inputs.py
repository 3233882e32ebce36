"""Input checks shared by the subcommands: scenario, overrides, model, output folder, seeds.

Each turns the library's error into a :class:`~market_sim.cli.options.UsageError` naming the key
or option at fault, so that bad input is one line and exit 2 before any work.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from market_sim.cli.options import UsageError, check_threads

if TYPE_CHECKING:
    from market_sim.scenario import Scenario


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
