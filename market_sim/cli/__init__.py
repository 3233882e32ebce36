"""Command-line interface: ``market-sim run``, ``demo``, ``sweep``, ``plot``, ``eva`` and more.

Subcommands: run, lambda-sweep, convergence, sweep, eva, audit, lm here; demo, plot and summary
come from :mod:`analysis.commands`, registered as entry points of the group
:data:`~market_sim.cli.extensions.COMMAND_ENTRY_POINTS` (``pyproject.toml``), so that
``market_sim`` never imports ``analysis``, the layer above it. Any installed package can add a
subcommand the same way.

Bad input (scenario keys, model references, devices) exits with status 2 and one line on stderr
naming the problem; results are written only after a run completes, atomically.

Modules, one job each:

- :mod:`~market_sim.cli.entry`: :func:`main` and the console script; errors to exit statuses.
- :mod:`~market_sim.cli.parser`: the argument parser of every subcommand.
- :mod:`~market_sim.cli.one_line_parser`: argparse with one-line errors and options given once.
- :mod:`~market_sim.cli.options`: option values and :class:`UsageError`.
- :mod:`~market_sim.cli.inputs`: checks of the scenario, model, folders and seeds.
- :mod:`~market_sim.cli.extensions`: subcommands added by other packages (entry points).
- :mod:`~market_sim.cli.run_commands`, :mod:`~market_sim.cli.sweep_command`,
  :mod:`~market_sim.cli.eva_commands`, :mod:`~market_sim.cli.lm_commands`: the subcommands.

The names below are those an extension command (such as :mod:`analysis.commands`) uses.
"""

from market_sim.cli.entry import console_main, main
from market_sim.cli.extensions import COMMAND_ENTRY_POINTS, ExtensionCommand, extension_commands
from market_sim.cli.inputs import (
    checked_out_dir,
    load_checked_model,
    load_checked_scenario,
    model_load_error,
    scenario_overrides,
    warn_if_slow,
)
from market_sim.cli.options import (
    RUN_ERROR,
    USAGE_ERROR,
    UsageError,
    check_threads,
    folder_argument,
    parse_workers,
)
from market_sim.cli.parser import add_runtime_arguments, build_parser

__all__ = [
    "COMMAND_ENTRY_POINTS",
    "RUN_ERROR",
    "USAGE_ERROR",
    "ExtensionCommand",
    "UsageError",
    "add_runtime_arguments",
    "build_parser",
    "check_threads",
    "checked_out_dir",
    "console_main",
    "extension_commands",
    "folder_argument",
    "load_checked_model",
    "load_checked_scenario",
    "main",
    "model_load_error",
    "parse_workers",
    "scenario_overrides",
    "warn_if_slow",
]
