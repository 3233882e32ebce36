"""Checks of an output folder before any work: writable, and not holding a different run.

Both run before the model loads, so a bad ``--out`` costs nothing: exit 2, one line. They read
the file system only; the writability probe creates one empty folder and removes it again.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from market_sim.config.fields import ScenarioError
from market_sim.results import OPTIONAL_RUN_FILES

SCENARIO_FILE = "scenario.toml"
RUN_FILE_NAMES = frozenset(
    {
        SCENARIO_FILE,
        "rounds.parquet",
        "agents.parquet",
        "summary.json",
        *OPTIONAL_RUN_FILES,
        "figures",
    }
)
"""What a run folder holds (``figures`` is where ``market-sim plot`` draws)."""
OTHER_OUTPUT_FILES = ("eva.parquet", "eva_summary.json", "audit.parquet", "runs.parquet")
"""Files of ``eva``, ``audit`` and ``sweep`` outputs, whose folders hold a ``scenario.toml`` too."""
TEMPORARY_NAME = re.compile(r"\..+\.tmp")
"""Temporary files of interrupted atomic writes (``.<name>.<random>.tmp``)."""


def check_writable_folder(folder: Path, option: str = "--out") -> None:
    """Raise unless ``folder`` is, or can be created as, a folder this process can write into.

    Args:
        folder: The output folder (need not exist).
        option: The option or key named in the message.

    Raises:
        ScenarioError: ``folder`` is a file, lies under a file, or is not writable.
    """
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise ScenarioError(option, f"'{path}' is a file, not a folder")
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise ScenarioError(
            option, f"'{path}' lies under '{existing}', which is a file, not a folder"
        )
    try:
        probe = tempfile.mkdtemp(prefix=".market-sim-write-probe-", dir=existing)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ScenarioError(option, f"cannot write into '{existing}' ({reason})") from None
    os.rmdir(probe)


def check_run_folder(folder: Path, scenario_toml: str, force: bool) -> list[str]:
    """Refuse to overwrite a run of a different resolved scenario; list unrelated files.

    A folder whose ``scenario.toml`` equals ``scenario_toml`` byte for byte holds a run of the
    same resolved scenario: rerunning it writes the same results (runs are deterministic).

    Args:
        folder: The run's output folder (need not exist).
        scenario_toml: The resolved scenario the run will write (``dump_scenario_toml``).
        force: Overwrite a different run anyway (``--force``).

    Returns:
        Names of entries in ``folder`` that a run does not write (for a warning).

    Raises:
        ScenarioError: ``folder`` holds a run of a different resolved scenario and not ``force``.
    """
    path = Path(folder)
    if not path.is_dir():
        return []
    other = [name for name in OTHER_OUTPUT_FILES if (path / name).is_file()]
    if other and not force:
        raise ScenarioError(
            "--out",
            f"'{path}' holds another command's results ({', '.join(other)}), not a run; "
            "choose another --out, or pass --force to write the run there anyway",
        )
    previous = path / SCENARIO_FILE
    if previous.is_file() and not force:
        try:
            same = previous.read_text(encoding="utf-8") == scenario_toml
        except (OSError, UnicodeDecodeError):
            same = False
        if not same:
            raise ScenarioError(
                "--out",
                f"'{path}' holds a run of a different resolved scenario ({SCENARIO_FILE} "
                "differs); choose another --out, or pass --force to overwrite it",
            )
    return sorted(
        entry.name
        for entry in path.iterdir()
        if entry.name not in RUN_FILE_NAMES and not TEMPORARY_NAME.fullmatch(entry.name)
    )
