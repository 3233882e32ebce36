"""Quiet, informative progress: bars on a terminal, plain lines in logs, libraries kept quiet.

* :func:`progress_bar`: a tqdm bar when stderr is a terminal; otherwise (a batch job, a
  redirected log) one line on stderr every :data:`LINE_PERCENT` percent of the work or every
  :data:`LINE_SECONDS` seconds, whichever comes first, plus a last line with the total time.
* :func:`quiet_libraries`: silences transformers' weight-loading bars and its known, harmless
  warnings (the ``past_key_values`` deprecation FutureWarning, the ``attention_mask`` notice)
  unless ``--verbose``. It works through environment variables too, so the spawned processes of
  a sweep's pool inherit it.
"""

from __future__ import annotations

import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from typing import TextIO

LINE_PERCENT = 5.0
LINE_SECONDS = 30.0
QUIET_ENVIRONMENT: dict[str, str] = {
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}
"""Environment read by transformers and huggingface_hub at import (inherited by workers)."""
QUIET_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    ("`past_key_values` is deprecated", FutureWarning),
)
"""(message start, category) of Python warnings that say nothing about the results. The
``attention_mask`` notices of ``generate`` are transformers logger warnings, silenced by
``TRANSFORMERS_VERBOSITY=error``."""


class LineProgress:
    """Progress as plain lines on a stream (for logs): see the module docstring.

    Args:
        total: Units of work.
        desc: What is counted, e.g. ``sweep``.
        unit: Unit name, e.g. ``run``.
        initial: Units already done (a resumed sweep).
        stream: Where lines go (default stderr).
    """

    def __init__(
        self, total: int, desc: str, unit: str, initial: int = 0, stream: TextIO | None = None
    ) -> None:
        self.total, self.desc, self.unit = max(0, total), desc, unit
        self.done = initial
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.last_time = self.started
        self.last_percent = self.percent()

    def percent(self) -> float:
        """Share of the work done, in percent (100 when there is none)."""
        return 100.0 * self.done / self.total if self.total else 100.0

    def line(self) -> str:
        """``sweep: 12/40 runs (30%), 41 s elapsed, about 96 s left``."""
        elapsed = time.monotonic() - self.started
        text = f"{self.desc}: {self.done}/{self.total} {self.unit}s ({self.percent():.0f}%), "
        text += f"{elapsed:.0f} s elapsed"
        if 0 < self.done < self.total:
            left = elapsed / self.done * (self.total - self.done)
            text += f", about {left:.0f} s left"
        return text

    def update(self, count: int = 1) -> None:
        """Count ``count`` more units; print a line when due."""
        self.done += count
        now = time.monotonic()
        due = self.percent() - self.last_percent >= LINE_PERCENT
        if due or now - self.last_time >= LINE_SECONDS or self.done >= self.total:
            print(self.line(), file=self.stream, flush=True)
            self.last_time, self.last_percent = now, self.percent()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def progress_bar(
    total: int,
    desc: str,
    unit: str,
    enabled: bool | None = None,
    initial: int = 0,
):
    """A progress counter with ``update(n)``, usable as a context manager.

    Args:
        total: Units of work.
        desc: Label of the bar or line.
        unit: Unit name.
        enabled: False: nothing; True or None: a tqdm bar on a terminal, else
            :class:`LineProgress` lines on stderr.
        initial: Units already done.
    """
    from tqdm.auto import tqdm

    if enabled is False:
        return tqdm(total=total, initial=initial, disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, initial=initial, desc=desc, unit=unit)
    return LineProgress(total, desc, unit, initial)


def progress_range(
    total: int, desc: str, unit: str, enabled: bool | None = None, start: int = 0
) -> Iterator[int]:
    """``range(start, total)`` that reports its progress through :func:`progress_bar`."""
    with progress_bar(total, desc, unit, enabled, initial=start) as bar:
        for index in range(start, total):
            yield index
            bar.update(1)


def quiet_libraries(verbose: bool = False) -> None:
    """Silence transformers' loading bars and known warnings unless ``verbose``.

    Sets :data:`QUIET_ENVIRONMENT` (values the user set are kept) and ``PYTHONWARNINGS`` entries
    for spawned workers, and filters :data:`QUIET_WARNINGS` and transformers' logger here.
    """
    if verbose:
        return
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    inherited = [f"ignore:{message}:{category.__name__}" for message, category in QUIET_WARNINGS]
    existing = os.environ.get("PYTHONWARNINGS", "")
    missing = [entry for entry in inherited if entry not in existing.split(",")]
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [existing, *missing]))
    for message, category in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(message), category=category)
    if "transformers" in sys.modules:  # already imported: the environment came too late
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
