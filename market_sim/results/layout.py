"""The file names of results folders, and the summary keys that depend on the clock.

The names of the files that the simulator writes and other modules (the analysis, the
output-folder checks) read, defined once (docs/design.md, section 7). A run folder holds
``scenario.toml``, ``rounds.parquet``, ``agents.parquet`` and ``summary.json`` (the table files
are named by their schemas, :mod:`market_sim.results.records`); a sweep folder holds
``runs.parquet``, ``timings.parquet``, ``sweep.json`` and a ``runs/`` folder of run folders; an
eva experiment writes ``eva.parquet`` and an audit ``audit.parquet``. Other files
(``eva_summary.json``, ``audit_top.json``, a convergence experiment's, a lambda sweep's) keep
their names in the modules that write them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SCENARIO_FILE = "scenario.toml"
"""A run's resolved scenario: every key, defaults filled in."""
SUMMARY_FILE = "summary.json"
"""A run's summary; its presence marks the run complete."""
LEARNERS_FILE = "learners.json"
"""Each advertiser's final strategy state, where the run passes one."""
QUERIES_FILE = "queries.parquet"
"""A market run's evolving query pool (``queries.stream = "eva"``); eva outputs use the name too."""

RUNS_DIR = "runs"
"""A sweep's folder of run folders."""
RUNS_FILE = "runs.parquet"
"""A sweep's table, one row per complete run; deterministic (no wall-clock keys)."""
TIMINGS_FILE = "timings.parquet"
"""A sweep's wall-clock and machine keys, one row per run."""
SWEEP_MANIFEST_FILE = "sweep.json"
"""A sweep's plan: its grid, seeds and scenario."""

EVA_FILE = "eva.parquet"
"""An eva experiment's held-out rewards per seed, method and generation."""
AUDIT_FILE = "audit.parquet"
"""An audit's queries and their regret per mechanism, method, seed and generation."""

WALL_CLOCK_KEYS: tuple[str, ...] = (
    "wall_seconds",
    "rounds_per_second",
    "auctions_per_second",
    "timings",
    "execution",
)
"""Top-level summary keys whose values (and nested values) depend on the clock, or on the machine
and checkout that ran the run (``execution``: model folder, device, threads, git commit): never
metrics, and kept out of a sweep's deterministic ``runs.parquet``."""


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables to dotted keys, e.g. ``{"versions": {"torch": v}}`` to ``versions.torch``."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
