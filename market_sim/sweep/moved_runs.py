"""Runs a sweep folder already holds, matched to this sweep's plan by their seed-and-hash tail.

Two uses: a planned run found under another name (:func:`moved_runs`), and runs the folder's
table lists that this sweep does not plan (:func:`unplanned_runs`), which writing this sweep's
table would drop from it.

A sweep's run folder is ``<slug>-seed<seed>-<hash>`` (:func:`market_sim.sweep.run_dir_name`).
The slug lists the grid values in ``--grid`` order, so ``--grid a=... --grid b=...`` and
``--grid b=... --grid a=...`` name one run two ways, while the ``seed<seed>-<hash>`` tail (the
seed and the hash of the resolved scenario, in which override order leaves no trace) is the
same. A sweep given again with its flags reordered finds its earlier folders by that tail and
moves them to this plan's names, so their runs are kept or resumed, not run again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from market_sim.results import is_complete_run
from market_sim.sweep.backends import SweepTask


def name_tail(name: str) -> str:
    """``-seed<seed>-<hash>`` of a run folder name (the part that does not depend on flag order)."""
    slug_end = name.rfind("-seed")
    return name[slug_end:] if slug_end >= 0 else name


def moved_runs(tasks: Sequence[SweepTask], runs_root: Path) -> dict[str, str]:
    """Planned run folders that do not exist but whose run does under another name.

    Args:
        tasks: The sweep's runs (:func:`market_sim.sweep.plan_sweep`).
        runs_root: The sweep's ``runs/`` folder.

    Returns:
        Planned name -> existing folder name, for each planned folder that is absent while
        another folder, not planned itself, ends in the same ``-seed<seed>-<hash>``. Of several
        such folders the complete one is taken (then the first by name), so the choice does
        not depend on the order the file system lists them in. Nothing is moved here.
    """
    if not runs_root.is_dir():
        return {}
    planned = {task.name for task in tasks}
    by_tail: dict[str, list[str]] = {}
    for folder in sorted(runs_root.iterdir()):
        if folder.is_dir() and folder.name not in planned:
            by_tail.setdefault(name_tail(folder.name), []).append(folder.name)
    moved: dict[str, str] = {}
    for task in tasks:
        found = by_tail.get(name_tail(task.name), [])
        if not found or (runs_root / task.name).exists():
            continue
        complete = [name for name in found if is_complete_run(runs_root / name)]
        moved[task.name] = (complete or found)[0]
    return moved


def unplanned_runs(tasks: Sequence[SweepTask], table: Path) -> list[str]:
    """The ``run_dir`` entries of an existing ``runs.parquet`` that ``tasks`` do not plan.

    A run is matched by its ``-seed<seed>-<hash>`` tail, so the grid given in another flag
    order plans the same runs, and a sweep given more seeds or grid values plans a superset.

    Args:
        tasks: This sweep's runs.
        table: The sweep folder's ``runs.parquet`` (absent or unreadable: nothing listed).

    Returns:
        The listed ``run_dir`` values (``runs/<name>``) outside the plan, in table order.
    """
    try:
        listed = pl.read_parquet(table, columns=["run_dir"])["run_dir"].to_list()
    except (OSError, pl.exceptions.PolarsError):
        return []
    planned = {name_tail(task.name) for task in tasks}
    return [run_dir for run_dir in listed if name_tail(Path(run_dir).name) not in planned]
