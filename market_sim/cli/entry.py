"""The ``market-sim`` entry point: parse, run the subcommand, map its errors to exit statuses.

Bad input (scenario keys, model references, devices, paths) exits with status 2 and one line on
stderr naming the problem; a run that fails (a mechanism's or strategy's faulty output, a worker
killed) exits with 1 in one line; Ctrl-C or SIGTERM with
:data:`~market_sim.process_lifetime.INTERRUPTED_EXIT_STATUS`.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence
from typing import NoReturn

from market_sim.cli.eva_commands import command_audit, command_eva
from market_sim.cli.extensions import extension_commands
from market_sim.cli.lm_commands import command_lm
from market_sim.cli.options import RUN_ERROR, USAGE_ERROR, UsageError
from market_sim.cli.parser import build_parser
from market_sim.cli.run_commands import command_convergence, command_lambda_sweep, command_run
from market_sim.cli.sweep_command import command_sweep
from market_sim.process_lifetime import (
    INTERRUPTED_EXIT_STATUS,
    SweepWorkerDiedError,
    terminate_as_interrupt,
)

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
