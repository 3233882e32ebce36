"""Subcommands that other packages add, through the ``market_sim.commands`` entry points.

``demo``, ``plot`` and ``summary`` come from :mod:`analysis.commands` this way, so that
``market_sim`` never imports ``analysis``, the layer above it. Any installed package can add a
subcommand the same way.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

COMMAND_ENTRY_POINTS = "market_sim.commands"
"""Entry-point group of the subcommands other packages add (``name = "module:object"``)."""


class ExtensionCommand(Protocol):
    """A subcommand registered under :data:`COMMAND_ENTRY_POINTS` (e.g. ``analysis.commands``).

    Its module should import little at load time: every ``market-sim`` call loads it to build
    the parser.
    """

    def add_parser(self, commands: argparse._SubParsersAction) -> None:
        """Add the subcommand's parser (named as its entry point) to ``commands``."""

    def run(self, args: argparse.Namespace) -> None:
        """Run it; bad input raises :class:`~market_sim.cli.options.UsageError`."""


def extension_commands() -> dict[str, ExtensionCommand]:
    """The installed extension subcommands, by name (sorted)."""
    from importlib.metadata import entry_points

    found = {entry.name: entry for entry in entry_points(group=COMMAND_ENTRY_POINTS)}
    return {name: found[name].load() for name in sorted(found)}


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
