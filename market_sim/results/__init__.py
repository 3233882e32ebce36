"""The results contract (docs/design.md, section 7.1), written atomically.

A run directory holds ``scenario.toml``, ``rounds.parquet``, ``agents.parquet`` and
``summary.json``. Every file is written under a temporary name in the same folder and renamed
into place (:mod:`market_sim.results.files`: modes follow the umask, stale temporary files of an
interrupted write are removed); ``summary.json`` is removed first and written last, so its
presence marks a complete run and a half-written run never looks finished.

The two tables follow the record schema (:mod:`market_sim.results.records`): :func:`write_run`
refuses a column it does not declare and writes every column with its declared dtype, in
declared order.

No result holds NaN or Infinity: a statistic over no values is ``None`` (JSON ``null``), and a
non-finite number in ``summary.json``, ``learners.json`` or a float column of a table raises
:class:`~market_sim.results.files.NonFiniteResultError` before anything of the run is written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from market_sim.config.summary_keys import HEADLINE_SUMMARY_KEYS, RUN_META_KEYS, SUMMARY_FIELDS
from market_sim.results.files import (
    NonFiniteResultError,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    check_finite_frame,
    finite_json,
)
from market_sim.results.layout import LEARNERS_FILE, QUERIES_FILE, SCENARIO_FILE, SUMMARY_FILE
from market_sim.results.records import AGENTS, REGRET_COLUMNS, ROUNDS

__all__ = [
    "HEADLINE_SUMMARY_KEYS",
    "NULLABLE_AGENT_COLUMNS",
    "OPTIONAL_RUN_FILES",
    "QUERIES_FILE",
    "RESULT_FILES",
    "RUN_META_KEYS",
    "SUMMARY_FIELDS",
    "SUMMARY_FILE",
    "NonFiniteResultError",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "is_complete_run",
    "summarize",
    "write_run",
]

OPTIONAL_RUN_FILES = (LEARNERS_FILE, QUERIES_FILE)
"""Files a run writes only in some settings; a rerun that does not write one removes it."""
NULLABLE_AGENT_COLUMNS = REGRET_COLUMNS
"""Agent columns that are null where not measured (float64 in
:data:`market_sim.results.records.AGENTS`)."""
RESULT_FILES = (SCENARIO_FILE, ROUNDS.file, AGENTS.file, SUMMARY_FILE)
IR_TOLERANCE = 1e-9
FINAL_SHARE = 0.2


def is_complete_run(folder: Path) -> bool:
    """Whether a folder holds a finished run (all files, summary written last)."""
    return all((folder / name).is_file() for name in RESULT_FILES)


def final_rounds_mask(rounds: np.ndarray, total_rounds: int) -> np.ndarray:
    """Rows in the last ``FINAL_SHARE`` of rounds (at least the last round)."""
    first_final = total_rounds - max(1, math.ceil(FINAL_SHARE * total_rounds))
    return rounds >= first_final


def nullable_mean(series: pl.Series) -> float | None:
    """Mean of the non-null values, or None (JSON null) when there are none: undefined, not NaN."""
    values = series.drop_nulls()
    return float(values.mean()) if len(values) else None


def nullable_max(series: pl.Series) -> float | None:
    """Largest non-null value, or None when there are none."""
    values = series.drop_nulls()
    return float(values.max()) if len(values) else None


def summarize(rounds: pl.DataFrame, agents: pl.DataFrame, meta: dict[str, Any]) -> dict[str, Any]:
    """Headline metrics of a run (every ``summary.json`` key of the contract).

    * ``*_mean``: means over auctions (revenue, values, welfare; one row per auction, K per
      round) or agent-auctions (utility).
    * ``ir_violation_rate``: share of agent-auctions with a known ``truthful_utility`` (the
      utility the advertiser would have had reporting truthfully, same randomness: measured by
      the regret search, or realized by a truthful report) below ``-IR_TOLERANCE``; null when
      none is known.
    * ``bid_ratio_final``: mean bid / valuation over the last 20% of rounds (valuation > 0);
      ``report_scale_final``: mean ``report_scale`` (the reported distortion, 1 = truthful)
      over the same rows; ``report_scale_deviation_final``: mean ``|log2 report_scale|`` over the
      same rows (0 = truthful, 1 = a factor of 2 either way: symmetric on the learners'
      geometric grids, where ``|report_scale - 1|`` counts 4 as 3 and 1/4 as 3/4), null when
      the mechanism reads no ``report_scale`` (``meta["report_scale_meaning"]`` is None).
    * ``regret_mean`` / ``regret_max``: over agent-rounds where regret was measured, else null;
      ``best_response_gain_mean`` likewise (gain over the report actually played).

    A statistic over no values is None (JSON null), never NaN; a NaN or infinite input stays
    non-finite and :func:`write_run` refuses it.
    """
    final = agents.filter(
        pl.Series(final_rounds_mask(agents["round"].to_numpy(), meta["rounds"])),
        pl.col("valuation") > 0,
    )
    return {
        **meta,
        "revenue_mean": nullable_mean(rounds["revenue"]),
        "advertiser_value_mean": nullable_mean(rounds["advertiser_value"]),
        "user_value_mean": nullable_mean(rounds["user_value"]),
        "social_welfare_mean": nullable_mean(rounds["social_welfare"]),
        "utility_mean": nullable_mean(agents["utility"]),
        "ir_violation_rate": nullable_mean(
            (agents["truthful_utility"] < -IR_TOLERANCE).cast(pl.Float64)
        ),
        "bid_ratio_final": nullable_mean(final["bid"] / final["valuation"]),
        "report_scale_final": nullable_mean(final["report_scale"]),
        "report_scale_deviation_final": (
            nullable_mean(final["report_scale"].log(2).abs())
            if meta.get("report_scale_meaning") is not None
            else None
        ),
        "regret_mean": nullable_mean(agents["regret"]),
        "regret_max": nullable_max(agents["regret"]),
        "best_response_gain_mean": nullable_mean(agents["best_response_gain"]),
    }


def write_run(
    folder: Path,
    scenario_toml: str,
    rounds: pl.DataFrame,
    agents: pl.DataFrame,
    summary: dict[str, Any],
    learners: dict[str, Any] | None = None,
    tables: dict[str, pl.DataFrame] | None = None,
) -> None:
    """Write a run directory atomically (summary last), after checking every number is finite.

    The tables are written as the record schema types them (:meth:`RecordTable.conform`).

    Args:
        folder: The run directory.
        scenario_toml: The resolved scenario.
        rounds: One row per auction (:data:`market_sim.results.records.ROUNDS`).
        agents: One row per (auction, advertiser) (:data:`market_sim.results.records.AGENTS`).
        summary: Headline metrics.
        learners: Each advertiser's final strategy state (``learners.json``), if given.
        tables: Further Parquet files by name (e.g. the eva stream's ``queries.parquet``).

    Raises:
        NonFiniteResultError: A NaN or infinity anywhere (nothing is written then).
        UndeclaredColumnError: A table column the record schema does not declare.
    """
    parquet = {ROUNDS.file: rounds, AGENTS.file: agents, **(tables or {})}
    for name, table in parquet.items():
        check_finite_frame(table, name)
    parquet[ROUNDS.file], parquet[AGENTS.file] = ROUNDS.conform(rounds), AGENTS.conform(agents)
    summary_text = finite_json(summary, SUMMARY_FILE, sort_keys=True)
    learners_text = (
        None if learners is None else finite_json(learners, LEARNERS_FILE, sort_keys=True)
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SUMMARY_FILE).unlink(missing_ok=True)
    written = set(parquet) | ({LEARNERS_FILE} if learners_text is not None else set())
    for name in OPTIONAL_RUN_FILES:  # a forced rerun of another scenario leaves none behind
        if name not in written:
            (folder / name).unlink(missing_ok=True)
    atomic_write_text(folder / SCENARIO_FILE, scenario_toml)
    for name, table in parquet.items():
        atomic_write(folder / name, table.write_parquet)
    if learners_text is not None:
        atomic_write_text(folder / LEARNERS_FILE, learners_text)
    atomic_write_text(folder / SUMMARY_FILE, summary_text)
