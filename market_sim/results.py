"""The results contract (DESIGN.md section 5), written atomically.

A run directory holds ``scenario.toml``, ``rounds.parquet``, ``agents.parquet`` and
``summary.json``. Every file is written under a temporary name in the same folder and renamed
into place; ``summary.json`` is removed first and written last, so its presence marks a complete
run and a half-written run never looks finished.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

SUMMARY_FILE = "summary.json"
LEARNERS_FILE = "learners.json"
HEADLINE_SUMMARY_KEYS: tuple[str, ...] = (
    "revenue_mean",
    "advertiser_value_mean",
    "user_value_mean",
    "social_welfare_mean",
    "utility_mean",
    "ir_violation_rate",
    "bid_ratio_final",
    "regret_mean",
    "regret_max",
)
"""The headline metrics of ``summary.json`` (DESIGN.md section 5), in the order tables show them."""
NULLABLE_AGENT_COLUMNS = (
    "regret",
    "best_response_gain",
    "truthful_utility",
    "best_deviation_multiplier",
    "best_deviation_distortion",
)
"""Agent columns that are null where not measured (cast to float64 so the schema is stable)."""
RESULT_FILES = ("scenario.toml", "rounds.parquet", "agents.parquet", SUMMARY_FILE)
IR_TOLERANCE = 1e-9
FINAL_SHARE = 0.2


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write text atomically (UTF-8)."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def is_complete_run(folder: Path) -> bool:
    """Whether a folder holds a finished run (all files, summary written last)."""
    return all((folder / name).is_file() for name in RESULT_FILES)


def final_rounds_mask(rounds: np.ndarray, total_rounds: int) -> np.ndarray:
    """Rows in the last ``FINAL_SHARE`` of rounds (at least the last round)."""
    first_final = total_rounds - max(1, math.ceil(FINAL_SHARE * total_rounds))
    return rounds >= first_final


def nullable_mean(series: pl.Series) -> float | None:
    """Mean of the non-null values, or None when there are none."""
    values = series.drop_nulls()
    return float(values.mean()) if len(values) else None


def summarize(rounds: pl.DataFrame, agents: pl.DataFrame, meta: dict[str, Any]) -> dict[str, Any]:
    """Headline metrics of a run (every ``summary.json`` key of the contract).

    * ``*_mean``: means over rounds (revenue, values, welfare) or agent-rounds (utility).
    * ``ir_violation_rate``: share of agent-rounds with a measured ``truthful_utility`` (the
      utility the advertiser would have had reporting truthfully, same randomness) below
      ``-IR_TOLERANCE``; null when none was measured.
    * ``bid_ratio_final``: mean bid / valuation over the last 20% of rounds (valuation > 0);
      ``report_scale_final``: mean report distortion over the same rows.
    * ``regret_mean`` / ``regret_max``: over agent-rounds where regret was measured, else null;
      ``best_response_gain_mean`` likewise (gain over the report actually played).
    """
    truthful_utilities = agents["truthful_utility"].drop_nulls()
    ir_rate = (
        float((truthful_utilities < -IR_TOLERANCE).mean()) if len(truthful_utilities) else None
    )
    final = agents.filter(
        pl.Series(final_rounds_mask(agents["round"].to_numpy(), meta["rounds"])),
        pl.col("valuation") > 0,
    )
    bid_ratio = float((final["bid"] / final["valuation"]).mean()) if final.height else None
    regrets = agents["regret"].drop_nulls()
    return {
        **meta,
        "revenue_mean": float(rounds["revenue"].mean()),
        "advertiser_value_mean": float(rounds["advertiser_value"].mean()),
        "user_value_mean": float(rounds["user_value"].mean()),
        "social_welfare_mean": float(rounds["social_welfare"].mean()),
        "utility_mean": float(agents["utility"].mean()),
        "ir_violation_rate": ir_rate,
        "bid_ratio_final": bid_ratio,
        "report_scale_final": float(final["report_scale"].mean()) if final.height else None,
        "regret_mean": nullable_mean(regrets),
        "regret_max": float(regrets.max()) if len(regrets) else None,
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
    """Write a run directory atomically (summary last).

    Args:
        folder: The run directory.
        scenario_toml: The resolved scenario.
        rounds: One row per round.
        agents: One row per (round, advertiser).
        summary: Headline metrics.
        learners: Each advertiser's final strategy state (``learners.json``), if given.
        tables: Further Parquet files by name (e.g. the eva stream's ``queries.parquet``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SUMMARY_FILE).unlink(missing_ok=True)
    atomic_write_text(folder / "scenario.toml", scenario_toml)
    atomic_write(folder / "rounds.parquet", rounds.write_parquet)
    atomic_write(folder / "agents.parquet", agents.write_parquet)
    if learners is not None:
        atomic_write_text(
            folder / LEARNERS_FILE, json.dumps(learners, indent=2, sort_keys=True) + "\n"
        )
    for name, table in (tables or {}).items():
        atomic_write(folder / name, table.write_parquet)
    atomic_write_text(folder / SUMMARY_FILE, json.dumps(summary, indent=2, sort_keys=True) + "\n")
