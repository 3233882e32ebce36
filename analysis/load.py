"""Load result files (docs/design.md, section 7) from sweep and run folders into polars frames.

Any path may be a sweep folder (``runs.parquet`` from ``market-sim sweep``), a run folder
(``summary.json``), a lambda-sweep folder (``shares.parquet``) or any folder above them; folders
are searched recursively and a run that belongs to a sweep found on the way is read through the
sweep's table, not twice. Only complete runs (with ``summary.json``) are read. Every frame gets a
``run_path`` column (the run folder, absolute) that links runs, rounds and agents. Each run's
resolved scenario (``scenario.toml``, flattened to dotted keys) is kept beside the table
(:attr:`Results.scenarios`), so that runs of different settings are never pooled silently.

This module reads files only; of the simulator it imports only what describes result files: their
names and the clock-dependent summary keys (:mod:`market_sim.results.layout`), the record schema
(:mod:`market_sim.results.records`), which names and types the columns of ``rounds.parquet`` and
``agents.parquet``, and the summary's headline keys.
"""

from __future__ import annotations

import json
import tomllib
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from market_sim.config.fields import first_line
from market_sim.results import HEADLINE_SUMMARY_KEYS
from market_sim.results.layout import (
    RUNS_FILE,
    SCENARIO_FILE,
    SUMMARY_FILE,
    SWEEP_MANIFEST_FILE,
    flatten,
)
from market_sim.results.records import AGENTS, RecordTable

SHARES_FILE = "shares.parquet"
CONVERGENCE_GLOB = "*convergence*.parquet"

PathLike = str | Path
Paths = PathLike | Sequence[PathLike]


@dataclass(frozen=True)
class Results:
    """Runs found under some paths.

    Attributes:
        runs: One row per run (grid values, seed, every summary key, ``run_path``).
        grid_keys: Dotted keys swept by the sweeps found (in first-seen order).
        sweep_dirs: Sweep folders found.
        run_dirs: Run folders read directly (not through a sweep table).
        scenarios: ``run_path`` -> the run's resolved scenario as dotted keys (empty when the
            run folder has no ``scenario.toml``).
    """

    runs: pl.DataFrame
    grid_keys: tuple[str, ...]
    sweep_dirs: tuple[Path, ...]
    run_dirs: tuple[Path, ...]
    scenarios: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


class DamagedResultError(ValueError):
    """A result file that exists but cannot be read; the message names it, on one line."""


def unreadable_parquet(path: Path, error: Exception) -> DamagedResultError:
    """The one-line error of a result file that is not a readable parquet file."""
    return DamagedResultError(f"{path}: not a readable parquet file ({first_line(error)})")


def read_result_parquet(path: Path, fields: Iterable[str] | None = None) -> pl.DataFrame:
    """``pl.read_parquet(path)``; a damaged file raises :class:`DamagedResultError`.

    Args:
        path: The file.
        fields: Read only these columns, those of them the file has (None: every column); a
            figure that needs five columns of a 10^7-row table reads those, not 22.
    """
    try:
        if fields is None:
            return pl.read_parquet(path)
        present = pl.read_parquet_schema(path)
        return pl.read_parquet(path, columns=[name for name in fields if name in present])
    except (pl.exceptions.PolarsError, OSError) as error:
        raise unreadable_parquet(path, error) from None


def read_result_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; damaged or not an object: :class:`DamagedResultError`."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DamagedResultError(f"{path}: not readable JSON ({first_line(error)})") from None
    if not isinstance(record, dict):
        raise DamagedResultError(f"{path}: holds a JSON {type(record).__name__}, not an object")
    return record


def as_paths(paths: Paths) -> list[Path]:
    """One path or many, as a list of paths."""
    if isinstance(paths, str | Path):
        return [Path(paths)]
    return [Path(path) for path in paths]


def discover(paths: Paths) -> tuple[list[Path], list[Path]]:
    """Sweep folders and stand-alone run folders under ``paths`` (sorted, no duplicates)."""
    sweeps: set[Path] = set()
    runs: set[Path] = set()
    for root in as_paths(paths):
        root = root.resolve()
        sweeps.update(path.parent for path in root.rglob(RUNS_FILE))
        if (root / RUNS_FILE).is_file():
            sweeps.add(root)
        runs.update(path.parent for path in root.rglob(SUMMARY_FILE))
        if (root / SUMMARY_FILE).is_file():
            runs.add(root)
    inside_sweep = {run for run in runs if any(sweep in run.parents for sweep in sweeps)}
    return sorted(sweeps), sorted(runs - inside_sweep)


def read_summary(run_dir: Path) -> dict[str, Any]:
    """A run's ``summary.json``, flattened, plus ``run_path``.

    Raises:
        DamagedResultError: It is not a run's summary (no ``mechanism``: it would be counted
            as a run of an unknown mechanism).
    """
    path = run_dir / SUMMARY_FILE
    summary = read_result_json(path)
    if not isinstance(summary.get("mechanism"), str):
        raise DamagedResultError(f"{path}: no 'mechanism' name; not the summary of a run")
    return {**flatten(summary), "run_path": str(run_dir)}


def read_scenario(run_dir: Path) -> dict[str, Any]:
    """A run's resolved ``scenario.toml`` flattened to dotted keys; {} when it has none."""
    path = run_dir / SCENARIO_FILE
    if not path.is_file():
        return {}
    try:
        return flatten(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise DamagedResultError(f"{path}: not readable TOML ({first_line(error)})") from None


def frame_from_records(records: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Records with possibly different keys as one frame (missing values null)."""
    columns = list(dict.fromkeys(key for record in records for key in record))
    return pl.DataFrame(
        [pl.Series(name, [r.get(name) for r in records], strict=False) for name in columns]
    )


class SweepTableWarning(UserWarning):
    """A sweep's ``runs.parquet`` and its run folders disagree (runs dropped or not counted)."""


def read_sweep(sweep_dir: Path) -> tuple[pl.DataFrame, list[str]]:
    """A sweep's runs table (with ``run_path`` and ``sweep`` columns) and its grid keys.

    The table says which runs the sweep counts. A row whose folder no longer holds a
    ``summary.json`` (deleted, or being run again) is dropped; a complete run folder under
    ``runs/`` that the table does not list (a sweep killed before it wrote its table, a run
    written there by hand, the runs of a sweep replaced with ``--force``) is not counted. Either
    way a :class:`SweepTableWarning` says so: n would otherwise change silently.
    """
    runs = read_result_parquet(sweep_dir / RUNS_FILE)
    manifest_path = sweep_dir / SWEEP_MANIFEST_FILE
    grid_keys: list[str] = []
    if manifest_path.is_file():
        grid_keys = list(read_result_json(manifest_path).get("grid", {}))
    runs = runs.with_columns(
        pl.col("run_dir").map_elements(lambda d: str(sweep_dir / d), pl.String).alias("run_path"),
        pl.lit(str(sweep_dir)).alias("sweep"),
    )
    listed = runs["run_path"].to_list()
    gone = [path for path in listed if not (Path(path) / SUMMARY_FILE).is_file()]
    if gone:
        warnings.warn(
            f"{sweep_dir / RUNS_FILE} lists {len(gone)} run(s) whose folder holds no "
            f"{SUMMARY_FILE} (e.g. {gone[0]}); not counted",
            SweepTableWarning,
            stacklevel=2,
        )
        runs = runs.filter(~pl.col("run_path").is_in(gone))
    runs_root = sweep_dir / "runs"
    listed_paths = set(listed)
    unlisted = (
        sorted(
            str(path.parent)
            for path in runs_root.glob(f"*/{SUMMARY_FILE}")
            if str(path.parent) not in listed_paths
        )
        if runs_root.is_dir()
        else []
    )
    if unlisted:
        warnings.warn(
            f"{runs_root} holds {len(unlisted)} complete run(s) that {RUNS_FILE} does not list "
            f"(e.g. {unlisted[0]}); not counted (runs of a sweep replaced with --force, of one "
            "still running, or of one killed before it wrote its table: its command, run "
            "again, lists its own)",
            SweepTableWarning,
            stacklevel=2,
        )
    return runs, grid_keys


class RepeatedRunWarning(UserWarning):
    """One ``run_id`` found in more than one folder: counted once, from the first folder."""


SAME_RUN_KEYS: tuple[str, ...] = ("device", *HEADLINE_SUMMARY_KEYS)
"""Summary keys compared between folders of one ``run_id`` to say whether the copies agree (the
id hashes the resolved scenario, which says ``device = "auto"`` whatever device ran it, and a
rerun under other code keeps the id)."""


SCENARIO_HASH = "provenance.scenario_sha256"
"""The runs-table column of the resolved scenario's hash: one random draw (the seed is in it)."""


def drop_repeated_runs(runs: pl.DataFrame) -> pl.DataFrame:
    """``runs`` with each run counted once, warning per repeated run.

    The copy kept is the first: sweeps, then run folders, each in path order. A run is its
    resolved scenario (:data:`SCENARIO_HASH`, which holds the seed; the
    ``run_id`` where a folder does not record it). A run copied to a second folder, or a
    folder named together with one that contains it, would otherwise count twice: one more
    observation and a narrower interval. The same holds when the copies differ: a replicate of
    a lockstep ``--seeds`` run and a solo run of its seed (float32 rounding in a larger batch),
    a CPU and a GPU run, a run with 2 torch threads (``run_id`` ``...-threads2``) and one with
    1, or a rerun under other code are computations of one random draw, not independent
    observations. The warning names the :data:`SAME_RUN_KEYS` that differ, so a real
    divergence is seen.
    """
    if "run_id" not in runs.columns:
        return runs
    if SCENARIO_HASH in runs.columns:
        # A copy without the hash (older, or edited) takes its run id's: else it and a copy
        # with the hash would be two runs.
        known = pl.col(SCENARIO_HASH).drop_nulls().first().over("run_id")
        known = pl.when(pl.col("run_id").is_not_null()).then(known)  # nulls are no group
        identity = pl.coalesce(pl.col(SCENARIO_HASH), known, pl.col("run_id"))
    else:
        identity = pl.col("run_id")
    runs = runs.with_columns(identity.alias("_draw"))
    keys = [key for key in SAME_RUN_KEYS if key in runs.columns]
    counts = runs.filter(pl.col("_draw").is_not_null()).group_by("_draw").len()
    repeated = counts.filter(pl.col("len") > 1).sort("_draw")["_draw"].to_list()
    for draw in repeated:
        rows = runs.filter(pl.col("_draw") == draw)
        paths = rows["run_path"].to_list()
        ids = list(dict.fromkeys(str(run_id) for run_id in rows["run_id"].to_list()))
        one = len(ids) == 1
        name = f"run id {ids[0]}" if one else f"run ids {', '.join(ids)} (one scenario)"
        differing = [key for key in keys if rows.select(key).unique().height > 1]
        if differing:
            message = (
                f"{name} {'names' if one else 'name'} different results in {', '.join(paths)} "
                f"(they differ in {', '.join(differing)}); counted once, from {paths[0]}"
            )
        else:
            message = (
                f"{name} {'is' if one else 'are'} in {rows.height} folders ({', '.join(paths)}); "
                "counted once"
            )
        warnings.warn(message, RepeatedRunWarning, stacklevel=2)
    first = pl.col("_draw").is_null() | pl.col("_draw").is_first_distinct()
    return runs.filter(first).drop("_draw")


def load_results(paths: Paths) -> Results:
    """Every complete run under ``paths``; see the module docstring.

    Raises:
        FileNotFoundError: When no run is found.
    """
    sweep_dirs, run_dirs = discover(paths)
    frames: list[pl.DataFrame] = []
    grid_keys: list[str] = []
    for sweep_dir in sweep_dirs:
        frame, keys = read_sweep(sweep_dir)
        frames.append(frame)
        grid_keys.extend(key for key in keys if key not in grid_keys)
    if run_dirs:
        frames.append(frame_from_records([read_summary(run_dir) for run_dir in run_dirs]))
    shown = ", ".join(str(p) for p in as_paths(paths))
    if not frames:
        raise FileNotFoundError(f"{shown}: no runs ({SUMMARY_FILE} or {RUNS_FILE}) found")
    runs = drop_repeated_runs(pl.concat(frames, how="diagonal_relaxed"))
    if runs.height == 0:  # a sweep stopped before its first run was complete
        raise FileNotFoundError(
            f"{shown}: no runs: {RUNS_FILE} lists none complete (a sweep stopped before its "
            "first run finished; run it again to resume)"
        )
    order = [col for col in ("sweep", *grid_keys, "seed", "run_path") if col in runs.columns]
    scenarios = {path: read_scenario(Path(path)) for path in runs["run_path"].to_list()}
    return Results(
        runs.sort(order), tuple(grid_keys), tuple(sweep_dirs), tuple(run_dirs), scenarios
    )


def load_runs(paths: Paths) -> pl.DataFrame:
    """The runs table of every complete run under ``paths`` (see :func:`load_results`)."""
    return load_results(paths).runs


def typed(frame: pl.DataFrame, table: RecordTable) -> pl.DataFrame:
    """``frame`` with every column ``table`` declares cast to the declared dtype.

    Columns the schema does not declare (files of older versions) are kept as read; a declared
    column that cannot take its dtype raises.
    """
    schema = table.schema
    return frame.with_columns(
        pl.col(name).cast(schema[name], strict=True) for name in frame.columns if name in schema
    )


ROWS_PER_CHUNK = 1 << 21
"""Rows of a result file read at a time when a reduction keeps only its summary."""

Reduction = Callable[[pl.DataFrame], pl.DataFrame]


def read_reduced(path: Path, fields: Sequence[str] | None, table: RecordTable, reduce: Reduction):
    """``reduce`` of a file's rows, read :data:`ROWS_PER_CHUNK` rows at a time.

    ``reduce`` must accept its own outputs and merge them: ``reduce(concat(reduce(chunk) for
    each chunk))`` equals ``reduce(all rows)``
    (e.g. :func:`analysis.learning_curves.agent_round_sums`), so memory holds one chunk and the
    reduced parts, not the file. A file that cannot be read raises :class:`DamagedResultError`
    (an error of ``reduce`` or of the column types is not reported as one).
    """

    def read(start: int) -> pl.DataFrame:
        try:
            return scan.slice(start, ROWS_PER_CHUNK).collect()
        except (pl.exceptions.PolarsError, OSError) as error:
            raise unreadable_parquet(path, error) from None

    try:
        scan = pl.scan_parquet(path)
        if fields is not None:
            present = scan.collect_schema().names()
            scan = scan.select([name for name in fields if name in present])
        rows = scan.select(pl.len()).collect().item()
    except (pl.exceptions.PolarsError, OSError) as error:
        raise unreadable_parquet(path, error) from None
    parts = [
        reduce(typed(read(start), table))
        for start in range(0, max(rows, 1), ROWS_PER_CHUNK)  # an empty file: one part
    ]
    return reduce(pl.concat(parts, how="diagonal_relaxed")) if len(parts) > 1 else parts[0]


def load_run_files(
    runs: pl.DataFrame,
    table: RecordTable,
    columns: Iterable[str] = (),
    fields: Iterable[str] | None = None,
    reduce: Reduction | None = None,
) -> pl.DataFrame:
    """Concatenate ``<run_path>/<table.file>`` of every run, tagged with ``run_path``, ``columns``.

    Args:
        runs: A runs table (from :func:`load_runs`).
        table: :data:`~market_sim.results.records.ROUNDS` or
            :data:`~market_sim.results.records.AGENTS` (its dtypes are applied to each file).
        columns: Run-level columns of ``runs`` to join on every row (e.g. ``label``, ``seed``).
        fields: The file columns to read, where present (None: all of them).
        reduce: A reduction of each file's rows that merges its own outputs
            (:func:`read_reduced`), applied before the files are concatenated (None: every
            row is kept).
    """
    frames = []
    wanted = None if fields is None else list(fields)
    for run_path in runs["run_path"].to_list():
        path = Path(run_path) / table.file
        if path.is_file():
            if reduce is None:
                frame = typed(read_result_parquet(path, wanted), table)
            else:
                frame = read_reduced(path, wanted, table, reduce)
            frames.append(frame.with_columns(pl.lit(run_path).alias("run_path")))
    if not frames:
        return pl.DataFrame({"run_path": []}, schema={"run_path": pl.String})
    table = pl.concat(frames, how="diagonal_relaxed")
    extra = [col for col in dict.fromkeys(columns) if col in runs.columns and col != "run_path"]
    table = table.drop([col for col in extra if col in table.columns])
    return table.join(runs.select("run_path", *extra), on="run_path", how="left")


def load_agents(
    runs: pl.DataFrame,
    columns: Iterable[str] = (),
    fields: Iterable[str] | None = None,
    reduce: Reduction | None = None,
) -> pl.DataFrame:
    """``agents.parquet`` of every run (one row per (auction, advertiser)), or its reduction.

    ``columns``, ``fields`` and ``reduce``: see :func:`load_run_files`.
    """
    return load_run_files(runs, AGENTS, columns, fields, reduce)


def load_shares(paths: Paths) -> pl.DataFrame:
    """Every lambda sweep's ``shares.parquet`` under ``paths``, with a ``source`` column."""
    frames = []
    for root in as_paths(paths):
        for path in sorted(Path(root).resolve().rglob(SHARES_FILE)):
            frames.append(
                read_result_parquet(path).with_columns(pl.lit(str(path.parent)).alias("source"))
            )
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames, how="diagonal_relaxed")


def load_convergence(paths: Paths) -> pl.DataFrame:
    """Every ``*convergence*.parquet`` under ``paths`` (MOSAIC convergence), with ``source``."""
    frames = []
    for root in as_paths(paths):
        for path in sorted(Path(root).resolve().rglob(CONVERGENCE_GLOB)):
            frames.append(
                read_result_parquet(path).with_columns(pl.lit(str(path.parent)).alias("source"))
            )
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames, how="diagonal_relaxed")
