"""Option values of the command line and the error that reports a bad one.

:class:`UsageError` is bad input from the user: ``market-sim`` prints it in one line and exits
with :data:`USAGE_ERROR` (2) before any work. The checks here are those of options alone (a
thread count, a folder name, a number of workers); the checks that read the scenario or the
model are in :mod:`market_sim.cli.inputs`.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

USAGE_ERROR = 2


RUN_ERROR = 1


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit status 2."""


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


def check_int_option(option: str, value: int | None, low: int, high: int) -> None:
    """An integer option (None: not given) between ``low`` and ``high``, else UsageError."""
    if value is not None and not low <= value <= high:
        raise UsageError(f"{option}: must be between {low} and {high}, got {value}")


def check_threads(threads: int) -> None:
    """``--threads``: between 1 and the number of CPUs of this machine."""
    cpus = os.cpu_count() or 1
    if not 1 <= threads <= cpus:
        raise UsageError(f"--threads: must be between 1 and {cpus} (the CPUs here), got {threads}")


def parse_workers(text: str | None) -> int | None:
    """``--workers``: an integer >= 1, or None when not given."""
    if text is None:
        return None
    from market_sim.config.fields import significant_digits

    digits = significant_digits(text.strip())
    if digits is None or len(digits) > 9 or int(digits) < 1:
        raise UsageError(f"--workers: must be an integer from 1 to 999999999, got {text!r}")
    return int(digits)
