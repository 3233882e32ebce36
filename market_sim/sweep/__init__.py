"""Sweeps: a scenario over a grid of dotted-key values and a list of seeds.

Layout of a sweep folder ``DIR``::

    DIR/sweep.json          what was asked: scenario file (and its bytes' sha256), grid, seeds,
                            --set overrides
    DIR/runs/<name>/        one run directory (the results contract) per (grid point, seed)
    DIR/runs.parquet        one row per run: grid values, seed, run_dir, every summary.json key
    DIR/timings.parquet     the wall-clock keys of each run (kept out of runs.parquet)

Run names are ``<slug>-seed<seed>-<hash>``: a readable slug of the grid values and a 10-digit hash
of the run's resolved scenario (the same digest as its ``run_id``), so any change of the scenario,
the overrides or the model reference gives a new folder. A model folder edited in place keeps its
reference, so a rerun also compares each complete run's recorded model file hashes
(``provenance.model``: weights, config and tokenizer files) with the folder's files now and runs
again those made with other files (:func:`~market_sim.sweep.stale_runs.stale_runs`); likewise a run
of a mechanism plugin whose recorded source files (or package version) differ from the code now: a
rerun never reuses a stale run. The slug follows the ``--grid`` order; a sweep given again with its
``--grid`` flags in another order finds its runs by the ``seed<seed>-<hash>`` tail and renames their
folders (:mod:`market_sim.sweep.moved_runs`), so they are kept, not run again.

``runs.parquet`` is deterministic: rows in grid order (the first ``--grid`` varies slowest, seeds
fastest), columns the grid keys (named by dotted key, in grid order), ``seed``, ``run_dir``
(relative to ``DIR``), then every other ``summary.json`` key sorted by name, nested tables flattened
to dotted names (``versions.torch``). Wall-clock keys
(:data:`~market_sim.results.layout.WALL_CLOCK_KEYS`, e.g. ``wall_seconds``, ``rounds_per_second``,
``timings.*``) change from one execution to the next, so they go to ``timings.parquet`` instead;
``runs.parquet`` is then byte-for-byte the same whatever the backend, the number of workers, or how
often the sweep was interrupted and resumed.

Whenever a sweep stops, ``runs.parquet`` and ``timings.parquet`` list exactly the runs complete at
that moment, in grid order: all of them when it finishes, only those done so far when it is
interrupted (Ctrl-C, SIGTERM: :class:`SweepInterrupted`) or a run fails. A partial table can be
analysed as it is; its row count against ``sweep.json``'s ``planned_runs`` tells it is partial, and
running the same sweep again resumes it (complete runs are kept, the rest are run) to the table an
uninterrupted sweep writes.

Sweeps across mechanism kinds: a grid key read by one kind only is written
``mechanism.<plugin>.<key>`` (e.g. ``--grid mechanism.kind=token_auction,mosaic --grid
mechanism.mosaic.tau=0.5,1``). It applies to that plugin's kinds only: runs of other kinds are
planned once, without it (their grid column is empty), and ``sweep.json`` lists which kinds each
such key applies to. A plain ``mechanism.<key>`` that some kind of the sweep does not read is an
error naming that kind.

Modules: :mod:`~market_sim.sweep.grid` (``--grid`` and ``--seeds``),
:mod:`~market_sim.sweep.per_kind` (keys read by some kinds only), :mod:`~market_sim.sweep.plan`
(runs, folder names, checks before any run), :mod:`~market_sim.sweep.stale_runs`,
:mod:`~market_sim.sweep.moved_runs`, :mod:`~market_sim.sweep.tables` (``runs.parquet``,
``timings.parquet``, ``sweep.json``), :mod:`~market_sim.sweep.backends` (a process pool or Ray);
this module prepares, runs and resumes a sweep.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from market_sim.config.bounds import DEFAULT_CHECKPOINT_SECONDS
from market_sim.process_lifetime import SweepWorkerDiedError
from market_sim.results import SUMMARY_FILE, is_complete_run
from market_sim.results.layout import RUNS_DIR, RUNS_FILE
from market_sim.sweep.backends import (
    BACKENDS,
    RunFunction,
    SweepError,
    SweepTask,
    check_backend,
    execute_tasks,
    run_task,
)
from market_sim.sweep.grid import Grid, format_value, parse_grid, parse_seeds
from market_sim.sweep.moved_runs import moved_runs, unplanned_runs
from market_sim.sweep.per_kind import grid_scope_lines
from market_sim.sweep.plan import (
    check_grid_keys_not_set,
    check_task_prompts,
    plan_sweep,
    run_dir_name,
)
from market_sim.sweep.stale_runs import stale_runs
from market_sim.sweep.tables import runs_table, write_manifest, write_tables

__all__ = [
    "BACKENDS",
    "RUNS_DIR",
    "RUNS_FILE",
    "grid_scope_lines",
    "SweepError",
    "SweepWorkerDiedError",
    "SweepInterrupted",
    "SweepResult",
    "SweepTask",
    "format_value",
    "parse_grid",
    "parse_seeds",
    "plan_sweep",
    "prepare_sweep",
    "PreparedSweep",
    "run_dir_name",
    "run_prepared_sweep",
    "run_sweep",
    "run_task",
    "runs_table",
]


@dataclass(frozen=True)
class SweepResult:
    """A finished sweep.

    Attributes:
        runs: The ``runs.parquet`` table.
        out_dir: The sweep folder.
        executed: Runs done by this call.
        skipped: Runs already complete before this call.
    """

    runs: pl.DataFrame
    out_dir: Path
    executed: int
    skipped: int


class SweepInterrupted(KeyboardInterrupt):
    """A sweep stopped by an interrupt after writing the table of its complete runs.

    A ``KeyboardInterrupt``, so callers that stop on Ctrl-C stop on it too; its message (one
    line) says how many runs are complete and how to resume.
    """


@dataclass(frozen=True)
class PreparedSweep:
    """A sweep whose every input is checked, with nothing written yet (:func:`prepare_sweep`).

    Attributes:
        scenario_path: The base scenario file.
        scenario_sha256: The sha256 of its bytes when the sweep was planned.
        grid: Dotted key -> values.
        seeds: The seeds.
        overrides: ``--set`` overrides of every run.
        out_dir: The sweep folder.
        tasks: Every planned run, in grid order.
        todo: The runs still to do (incomplete, or complete but stale).
        renamed: ``(name, old_name)`` of each run folder to rename (the grid given before in
            another flag order).
        stale: ``(name, reason)`` of each complete run to run again.
        backend: ``local`` or ``ray``.
        workers: Parallel runs.
        address: Ray cluster address (Ray only).
        threads: torch CPU threads per worker.
    """

    scenario_path: str | Path
    scenario_sha256: str
    grid: Grid
    seeds: tuple[int, ...]
    overrides: tuple[str, ...]
    out_dir: Path
    tasks: tuple[SweepTask, ...]
    todo: tuple[SweepTask, ...]
    renamed: tuple[tuple[str, str], ...]
    stale: tuple[tuple[str, str], ...]
    backend: str
    workers: int | None
    address: str | None
    threads: int


def prepare_sweep(
    scenario_path: str | Path,
    grid: Grid | Sequence[str],
    seeds: str | Sequence[int],
    out_dir: str | Path,
    *,
    overrides: Sequence[str] = (),
    backend: str = "local",
    workers: int | None = 1,
    address: str | None = None,
    threads: int = 1,
    force: bool = False,
) -> PreparedSweep:
    """Check every input of a sweep and find what is left to run; write nothing.

    The arguments are :func:`run_sweep`'s. A command that runs several sweeps (``demo``)
    prepares them all before running any, so that a bad folder is refused before any work.

    Raises:
        SweepError: Bad grid, seeds, backend or workers, or (without ``force``) a folder whose
            table lists runs this sweep does not plan.
        ScenarioError: A grid value or override that makes the scenario invalid.
    """
    check_backend(backend, workers, address)
    parsed_grid = grid if isinstance(grid, Mapping) else parse_grid(grid)
    parsed_grid = {key: tuple(values) for key, values in parsed_grid.items()}
    seed_list = parse_seeds(seeds)
    check_grid_keys_not_set(parsed_grid, overrides)
    tasks = plan_sweep(scenario_path, parsed_grid, seed_list, overrides)  # the file is read
    scenario_sha256 = hashlib.sha256(Path(scenario_path).read_bytes()).hexdigest()
    out = Path(out_dir)
    runs_root = out / RUNS_DIR
    unplanned = [] if force else unplanned_runs(tasks, out / RUNS_FILE)
    if unplanned:  # a different sweep: its table would lose these runs
        raise SweepError(
            f"--out: '{out}' holds a sweep whose {RUNS_FILE} lists {len(unplanned)} run(s) this "
            f"sweep does not plan (e.g. {unplanned[0]}): another scenario, grid, seeds or --set; "
            "choose another --out, or pass --force to replace its tables (run folders are kept)"
        )
    moved = moved_runs(tasks, runs_root)  # the grid given before in another flag order
    found = [dataclasses.replace(task, name=moved.get(task.name, task.name)) for task in tasks]
    stale = stale_runs(found, runs_root, threads)
    todo = [
        task
        for task, as_found in zip(tasks, found, strict=True)
        if as_found.name in stale or not is_complete_run(runs_root / as_found.name)
    ]
    check_task_prompts(todo)  # complete runs need no model: a finished sweep reruns anywhere
    return PreparedSweep(
        scenario_path=scenario_path,
        scenario_sha256=scenario_sha256,
        grid=parsed_grid,
        seeds=seed_list,
        overrides=tuple(overrides),
        out_dir=out,
        tasks=tuple(tasks),
        todo=tuple(todo),
        renamed=tuple(moved.items()),
        stale=tuple(
            (task.name, stale[as_found.name])
            for task, as_found in zip(tasks, found, strict=True)
            if as_found.name in stale
        ),
        backend=backend,
        workers=workers,
        address=address,
        threads=threads,
    )


def run_sweep(
    scenario_path: str | Path,
    grid: Grid | Sequence[str],
    seeds: str | Sequence[int],
    out_dir: str | Path,
    *,
    overrides: Sequence[str] = (),
    backend: str = "local",
    workers: int | None = 1,
    address: str | None = None,
    threads: int = 1,
    progress: bool | None = None,
    run_function: RunFunction = run_task,
    before_runs: Callable[[int], None] | None = None,
    checkpoint_seconds: float | None = DEFAULT_CHECKPOINT_SECONDS,
    force: bool = False,
) -> SweepResult:
    """Run a sweep, skipping runs that are already complete, and write ``runs.parquet``.

    However the sweep stops, the tables list the runs complete at that moment (see the module
    docstring).

    Args:
        scenario_path: The base scenario file.
        grid: Dotted key -> values, or ``--grid`` strings.
        seeds: ``--seeds`` text (``0-9``, ``0,3,5``) or a sequence of seeds.
        out_dir: The sweep folder.
        overrides: ``--set`` overrides of every run.
        backend: ``local`` or ``ray``.
        workers: Parallel runs (see :func:`market_sim.sweep.backends.execute_tasks`).
        address: Ray cluster address (Ray only).
        threads: torch CPU threads per worker.
        progress: Progress (False: none; None or True: a bar on a terminal, else a line on
            stderr every 5% or 30 s, see :func:`market_sim.progress.progress_bar`).
        run_function: The run function of every task (tests substitute it).
        before_runs: Called with the number of runs to do once every input is checked, before
            anything is written (the CLI's slow-setting warnings).
        checkpoint_seconds: How often each run writes its checkpoint
            (:func:`market_sim.run.run_scenario`; None: never). It changes no result, so it is
            not part of the tasks' names: a sweep resumed with another interval keeps its runs.
        force: Write this sweep's tables over a folder whose ``runs.parquet`` lists runs this
            sweep does not plan (another scenario, grid, seeds or overrides); they would drop
            out of the table. Their folders under ``runs/`` are kept either way.

    Returns:
        The runs table and how many runs were done now and skipped.

    Raises:
        SweepError: Bad grid, seeds, backend or workers, or (without ``force``) a folder whose
            table lists runs this sweep does not plan: nothing is written.
        ScenarioError: A grid value or override that makes the scenario invalid.
        SweepInterrupted: An interrupt (``KeyboardInterrupt``: Ctrl-C, or SIGTERM as the CLI
            turns it into one) during the runs; the queued runs were cancelled.
        SweepWorkerDiedError: A worker of the local pool died; the table of the complete runs
            was written and the message says how to resume.
    """
    prepared = prepare_sweep(
        scenario_path,
        grid,
        seeds,
        out_dir,
        overrides=overrides,
        backend=backend,
        workers=workers,
        address=address,
        threads=threads,
        force=force,
    )
    return run_prepared_sweep(
        prepared,
        progress=progress,
        run_function=run_function,
        before_runs=before_runs,
        checkpoint_seconds=checkpoint_seconds,
    )


def run_prepared_sweep(
    prepared: PreparedSweep,
    *,
    progress: bool | None = None,
    run_function: RunFunction = run_task,
    before_runs: Callable[[int], None] | None = None,
    checkpoint_seconds: float | None = DEFAULT_CHECKPOINT_SECONDS,
) -> SweepResult:
    """Run a sweep that :func:`prepare_sweep` checked: rename, write the manifest, run, tabulate.

    The keyword arguments and the exceptions raised during the runs are :func:`run_sweep`'s.
    """
    from market_sim.progress import progress_bar

    out, tasks = prepared.out_dir, prepared.tasks
    runs_root = out / RUNS_DIR
    todo = [
        dataclasses.replace(task, checkpoint_seconds=checkpoint_seconds) for task in prepared.todo
    ]
    for name, old_name in prepared.renamed:  # every input checked: now the folder may change
        print(
            f"market-sim: sweep: {RUNS_DIR}/{old_name} is the run of {RUNS_DIR}/{name} (the grid "
            "given in another order); renamed",
            file=sys.stderr,
        )
        (runs_root / old_name).rename(runs_root / name)
    for name, reason in prepared.stale:
        print(
            f"market-sim: sweep: {RUNS_DIR}/{name} was made with {reason}; running it again",
            file=sys.stderr,
        )
        (runs_root / name / SUMMARY_FILE).unlink()
    if before_runs is not None:
        before_runs(len(todo))
    for line in grid_scope_lines(prepared.grid):
        print(f"market-sim: sweep: {line}", file=sys.stderr)
    write_manifest(
        out,
        prepared.scenario_path,
        prepared.scenario_sha256,
        prepared.grid,
        prepared.seeds,
        prepared.overrides,
        len(tasks),
    )
    try:
        with progress_bar(
            len(tasks), "sweep", "run", enabled=progress, initial=len(tasks) - len(todo)
        ) as bar:
            execute_tasks(
                todo,
                runs_root,
                backend=prepared.backend,
                workers=prepared.workers,
                address=prepared.address,
                threads=prepared.threads,
                run_function=run_function,
                tick=bar.update,
            )
    except SweepWorkerDiedError as error:
        complete = write_tables(tasks, out).height
        raise SweepWorkerDiedError(
            f"{error}; {complete} of {len(tasks)} runs complete, listed in {out / RUNS_FILE}; "
            "run the same command again to resume"
        ) from None
    except KeyboardInterrupt:
        complete = write_tables(tasks, out).height
        raise SweepInterrupted(
            f"{complete} of {len(tasks)} runs complete, listed in {out / RUNS_FILE}; "
            "run the same command again to resume"
        ) from None
    except Exception:
        write_tables(tasks, out)
        raise
    runs = write_tables(tasks, out)
    return SweepResult(runs, out, executed=len(todo), skipped=len(tasks) - len(todo))
