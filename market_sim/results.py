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


def summarize(rounds: pl.DataFrame, agents: pl.DataFrame, meta: dict[str, Any]) -> dict[str, Any]:
    """Headline metrics of a run (every ``summary.json`` key of the contract).

    * ``*_mean``: means over rounds (revenue, values, welfare) or agent-rounds (utility).
    * ``ir_violation_rate``: share of TRUTHFUL agent-rounds (bid = valuation, report_scale = 1)
      with realized utility below ``-IR_TOLERANCE``; null when no agent-round was truthful.
    * ``bid_ratio_final``: mean bid / valuation over the last 20% of rounds (valuation > 0).
    * ``regret_mean`` / ``regret_max``: over agent-rounds where regret was computed, else null.
    """
    truthful = agents.filter(
        (pl.col("bid") - pl.col("valuation")).abs() <= 1e-12 * (1 + pl.col("valuation").abs()),
        pl.col("report_scale") == 1.0,
    )
    ir_rate = float((truthful["utility"] < -IR_TOLERANCE).mean()) if truthful.height > 0 else None
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
        "regret_mean": float(regrets.mean()) if len(regrets) else None,
        "regret_max": float(regrets.max()) if len(regrets) else None,
    }


def write_run(
    folder: Path,
    scenario_toml: str,
    rounds: pl.DataFrame,
    agents: pl.DataFrame,
    summary: dict[str, Any],
) -> None:
    """Write a run directory atomically (summary last)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SUMMARY_FILE).unlink(missing_ok=True)
    atomic_write_text(folder / "scenario.toml", scenario_toml)
    atomic_write(folder / "rounds.parquet", rounds.write_parquet)
    atomic_write(folder / "agents.parquet", agents.write_parquet)
    atomic_write_text(folder / SUMMARY_FILE, json.dumps(summary, indent=2, sort_keys=True) + "\n")
