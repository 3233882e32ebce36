"""A sweep's tables: ``runs.parquet`` (a row per complete run), ``timings.parquet``, ``sweep.json``.

``runs.parquet`` is deterministic: wall-clock and machine keys
(:data:`~market_sim.results.layout.WALL_CLOCK_KEYS`) go to ``timings.parquet`` instead, so that
the table is the same bytes whatever the backend, the workers, or how often the sweep was
interrupted and resumed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from market_sim.results import atomic_write, atomic_write_json, is_complete_run
from market_sim.results.layout import (
    RUNS_DIR,
    RUNS_FILE,
    SUMMARY_FILE,
    SWEEP_MANIFEST_FILE,
    TIMINGS_FILE,
    WALL_CLOCK_KEYS,
    flatten,
)
from market_sim.sweep.backends import (
    SweepTask,
)
from market_sim.sweep.grid import Grid
from market_sim.sweep.per_kind import per_kind_plugin


def is_wall_clock(key: str) -> bool:
    """Whether a flattened summary key depends on the clock.

    See :data:`~market_sim.results.layout.WALL_CLOCK_KEYS`.
    """
    return key.split(".")[0] in WALL_CLOCK_KEYS


def frame_from_records(
    records: Sequence[Mapping[str, Any]], leading: Sequence[str]
) -> pl.DataFrame:
    """A frame with ``leading`` columns first, then every other key sorted; missing keys null."""
    rest = sorted({key for record in records for key in record} - set(leading))
    columns = [*leading, *rest]
    return pl.DataFrame(
        [
            pl.Series(name, [record.get(name) for record in records], strict=False)
            for name in columns
        ]
    )


def runs_table(
    tasks: Sequence[SweepTask], out_dir: Path, grid_keys: Sequence[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Build ``(runs, timings)`` from the run directories' ``summary.json`` files, in task order.

    Args:
        tasks: Tasks whose runs are complete.
        out_dir: The sweep folder.
        grid_keys: The grid's dotted keys (a per-kind key is missing from other kinds' points,
            so they are not read off one task).
    """
    leading = [*grid_keys, "seed", "run_dir"]
    runs, timings = [], []
    for task in tasks:
        run_dir = f"{RUNS_DIR}/{task.name}"
        summary = json.loads((out_dir / run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
        ids = {**dict(task.point), "seed": task.seed, "run_dir": run_dir}
        flat = flatten(summary)
        runs.append({**{k: v for k, v in flat.items() if not is_wall_clock(k)}, **ids})
        timings.append({**{k: v for k, v in flat.items() if is_wall_clock(k)}, **ids})
    return frame_from_records(runs, leading), frame_from_records(timings, leading)


def write_tables(tasks: Sequence[SweepTask], out_dir: Path) -> pl.DataFrame:
    """Write ``runs.parquet`` and ``timings.parquet`` over the tasks whose runs are complete.

    Returns:
        The runs table.
    """
    complete = [task for task in tasks if is_complete_run(out_dir / RUNS_DIR / task.name)]
    grid_keys = list(dict.fromkeys(key for task in tasks for key, _ in task.point))
    runs, timings = runs_table(complete, out_dir, grid_keys)
    atomic_write(out_dir / RUNS_FILE, runs.write_parquet)
    atomic_write(out_dir / TIMINGS_FILE, timings.write_parquet)
    return runs


def write_manifest(
    out_dir: Path,
    scenario_path: str | Path,
    scenario_sha256: str,
    grid: Grid,
    seeds: Sequence[int],
    overrides: Sequence[str],
    planned_runs: int,
) -> None:
    """Write ``sweep.json``: the scenario file, grid, seeds, overrides and number of runs.

    ``scenario_sha256`` hashes the scenario file's bytes as the sweep was planned (the path
    alone does not say which version of the file ran; each run's ``scenario.toml`` holds its
    resolved scenario).

    ``grid_kinds`` maps each per-kind grid key (``mechanism.<plugin>.<key>``) to the kinds it
    applies to; ``planned_runs`` counts distinct runs (a per-kind key does not multiply the runs
    of other kinds).
    """
    scoped = {key: per_kind_plugin(key) for key in grid}
    manifest = {
        "scenario": str(scenario_path),
        "scenario_sha256": scenario_sha256,
        "grid": {key: list(values) for key, values in grid.items()},
        "grid_kinds": {key: list(plugin.kinds) for key, plugin in scoped.items() if plugin},
        "seeds": list(seeds),
        "overrides": list(overrides),
        "planned_runs": planned_runs,
    }
    atomic_write_json(out_dir / SWEEP_MANIFEST_FILE, manifest, default=str)
