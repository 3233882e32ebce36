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
from market_sim.provenance import PROVENANCE_FILE
from market_sim.results import OPTIONAL_RUN_FILES
from market_sim.results.checkpoint import CHECKPOINT_FILE
from market_sim.results.layout import (
    AUDIT_FILE,
    EVA_FILE,
    RUNS_FILE,
    SCENARIO_FILE,
    SUMMARY_FILE,
    SWEEP_MANIFEST_FILE,
)
from market_sim.results.records import AGENTS, ROUNDS

RUN_FILE_NAMES = frozenset(
    {
        SCENARIO_FILE,
        ROUNDS.file,
        AGENTS.file,
        SUMMARY_FILE,
        *OPTIONAL_RUN_FILES,
        CHECKPOINT_FILE,
        "figures",
    }
)
"""What a run folder holds (``figures`` is where ``market-sim plot`` draws; a run in progress
keeps its checkpoint there)."""
COMMAND_FILES: dict[str, tuple[str, ...]] = {
    "run": (ROUNDS.file, AGENTS.file, SUMMARY_FILE),
    "eva": (EVA_FILE, "eva_summary.json"),
    "audit": (AUDIT_FILE, "audit_top.json"),
    "sweep": (RUNS_FILE, SWEEP_MANIFEST_FILE),
    "convergence": ("convergence.parquet", "convergence_summary.json"),
    "lambda-sweep": ("samples.parquet", "shares.parquet"),
}
"""The files that mark a folder as holding each command's results (each such folder holds a
``scenario.toml`` too)."""

SHARED_FOLDER_COMMANDS = frozenset({"run", "convergence", "lambda-sweep"})
"""Commands whose files never overlap and whose default folder is the same
(``results/<name>-seed<seed>``): they share a folder that holds the same resolved scenario (a
run's figures and the convergence figure of one scenario, drawn by one ``market-sim plot``)."""
TEMPORARY_NAME = re.compile(r"\..+\.tmp")
"""Temporary files of interrupted atomic writes (``.<name>.<random>.tmp``)."""


def result_files_in(folder: Path) -> list[str]:
    """The files of :data:`COMMAND_FILES` that ``folder`` holds at its top, in that order."""
    names = [name for files in COMMAND_FILES.values() for name in files]
    return [name for name in names if (Path(folder) / name).is_file()]


def check_writable_folder(folder: Path, option: str = "--out") -> None:
    """Raise unless ``folder`` is, or can be created as, a folder this process can write into.

    Args:
        folder: The output folder (need not exist).
        option: The option or key named in the message.

    Raises:
        ScenarioError: ``folder`` is a file, lies under a file or under a link that resolves to
            nothing (a broken link, a loop), or is not writable.
    """
    path = Path(folder).expanduser()
    try:
        is_file = path.exists() and not path.is_dir()
    except OSError as error:  # a name too long, a loop of links: the path itself is unusable
        raise ScenarioError(option, f"'{path}': {error.strerror}") from None
    if is_file:
        raise ScenarioError(option, f"'{path}' is a file, not a folder")
    existing = path
    while not existing.exists():
        if existing.is_symlink():  # a link to nothing (or a loop): mkdir would fail after the work
            raise ScenarioError(
                option,
                f"'{existing}' is a link to '{os.readlink(existing)}', which does not resolve "
                "to a folder",
            )
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


def check_result_folder(folder: Path, command: str, scenario_toml: str | None, force: bool) -> None:
    """Refuse to write ``command``'s results over another command's or another scenario's.

    A folder whose ``scenario.toml`` equals ``scenario_toml`` byte for byte holds results of the
    same resolved scenario: writing them again gives the same results (runs are deterministic),
    an interrupted command resumes there, and :data:`SHARED_FOLDER_COMMANDS` share it.

    Args:
        folder: The output folder (need not exist).
        command: The writing command, a key of :data:`COMMAND_FILES`.
        scenario_toml: The resolved scenario the command will write (``dump_scenario_toml``);
            None for ``sweep``, whose folder holds one scenario per run, not one of its own.
        force: Write there anyway (``--force``).

    Raises:
        ScenarioError: ``folder`` holds another command's results, or results of a different
            resolved scenario, and not ``force``.
    """
    path = Path(folder)
    if not path.is_dir() or force:
        return
    previous = path / SCENARIO_FILE
    try:
        same = previous.is_file() and previous.read_text(encoding="utf-8") == scenario_toml
    except (OSError, UnicodeDecodeError):
        same = False
    sharing = SHARED_FOLDER_COMMANDS if same and command in SHARED_FOLDER_COMMANDS else set()
    other = [
        name
        for owner, names in COMMAND_FILES.items()
        if owner != command and owner not in sharing
        for name in names
        if (path / name).is_file()
    ]
    if other:
        raise ScenarioError(
            "--out",
            f"'{path}' holds another command's results ({', '.join(other)}), not {command} "
            f"results; choose another --out, or pass --force to write the {command} results "
            "there anyway",
        )
    if scenario_toml is not None and previous.is_file() and not same:
        raise ScenarioError(
            "--out",
            f"'{path}' holds {command} results of a different resolved scenario "
            f"({SCENARIO_FILE} differs); choose another --out, or pass --force to "
            "overwrite them",
        )


def check_run_folder(folder: Path, scenario_toml: str, force: bool) -> list[str]:
    """:func:`check_result_folder` for ``run``; also lists the files a run does not write.

    Returns:
        Names of entries in ``folder`` that neither a run nor a command sharing its folder
        (:data:`SHARED_FOLDER_COMMANDS`) writes (for a warning).
    """
    check_result_folder(folder, "run", scenario_toml, force)
    path = Path(folder)
    if not path.is_dir():
        return []
    shared = {
        name
        for command in SHARED_FOLDER_COMMANDS
        for name in (*COMMAND_FILES[command], PROVENANCE_FILE)
    }
    return sorted(
        entry.name
        for entry in path.iterdir()
        if entry.name not in RUN_FILE_NAMES | shared and not TEMPORARY_NAME.fullmatch(entry.name)
    )
