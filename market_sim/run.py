"""Run a scenario end to end: load the LM, build the platform, step the market, write results."""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from market_sim.lm.model import LanguageModel
from market_sim.market.model import MarketModel
from market_sim.platform.registry import build_platform
from market_sim.provenance import run_provenance
from market_sim.results import NULLABLE_AGENT_COLUMNS, summarize, write_run
from market_sim.scenario import Scenario, dump_scenario_toml
from market_sim.scenario.prompt_fit import check_model_fits


@dataclass(frozen=True)
class RunResult:
    """A finished run.

    Attributes:
        rounds: One row per auction (``round``, ``auction``: its index within the round).
        agents: One row per (auction, advertiser).
        summary: The ``summary.json`` content.
        out_dir: Where it was written, if anywhere.
    """

    rounds: pl.DataFrame
    agents: pl.DataFrame
    summary: dict[str, Any]
    out_dir: Path | None


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (the run itself uses its own)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_run_id(scenario_toml: str, scenario: Scenario) -> str:
    """Deterministic id: scenario name, seed and a hash of the resolved scenario."""
    digest = hashlib.sha256(scenario_toml.encode("utf-8")).hexdigest()[:10]
    return f"{scenario.name}-seed{scenario.seed}-{digest}"


def load_scenario_model(scenario: Scenario, device: str | None = None) -> LanguageModel:
    """Load the scenario's language model (``device`` overrides ``model.device``)."""
    config = scenario.model
    return LanguageModel.load(config.path, device=device or config.device, dtype=config.dtype)


def run_scenario(
    scenario: Scenario,
    out_dir: Path | None = None,
    lm: LanguageModel | None = None,
    progress: bool | None = False,
) -> RunResult:
    """Run every round of a scenario.

    Args:
        scenario: A validated scenario.
        out_dir: Where to write the results contract; nothing is written if None.
        lm: A loaded model to reuse (else the scenario's model is loaded).
        progress: Show a progress bar (None: only on a terminal).

    Returns:
        The records and the summary.
    """
    seed_everything(scenario.seed)
    lm = lm or load_scenario_model(scenario)
    check_model_fits(scenario, lm)  # ScenarioError before round 0, not an IndexError mid-run
    scenario_toml = dump_scenario_toml(scenario)
    run_id = make_run_id(scenario_toml, scenario)
    stream = None
    if scenario.queries.stream == "eva":
        from market_sim.eva.stream import EvaQueryStream

        def stream(rng: np.random.Generator) -> EvaQueryStream:
            return EvaQueryStream(scenario, lm, rng)

    market = MarketModel(
        scenario,
        build_platform(scenario.mechanism, lm, scenario.queries.items),
        run_id,
        query_stream=stream,
    )
    started = time.perf_counter()
    hide_bar = None if progress is None else not progress
    for _ in tqdm(range(scenario.rounds), desc=scenario.name, unit="round", disable=hide_bar):
        market.step()
    wall_seconds = time.perf_counter() - started
    rounds = pl.from_dicts(market.round_records, infer_schema_length=None)
    agents = pl.from_dicts(market.agent_records, infer_schema_length=None).with_columns(
        pl.col(name).cast(pl.Float64) for name in NULLABLE_AGENT_COLUMNS
    )
    meta = {
        "run_id": run_id,
        "scenario": scenario.name,
        "mechanism": scenario.mechanism.kind,
        "aggregation": scenario.mechanism.aggregation,
        "payment": scenario.mechanism.payment,
        "rounds": scenario.rounds,
        "auctions_per_round": scenario.auctions_per_round,
        "seed": scenario.seed,
        "model": scenario.model.path,
        "device": str(lm.device),
        "wall_seconds": wall_seconds,
        "rounds_per_second": scenario.rounds / wall_seconds if wall_seconds > 0 else None,
        "auctions_per_second": (
            scenario.rounds * scenario.auctions_per_round / wall_seconds
            if wall_seconds > 0
            else None
        ),
        **run_provenance(lm, scenario.model.path, scenario_toml),
    }
    summary = summarize(rounds, agents, meta)
    if out_dir is not None:
        learners = {a.name: a.strategy.snapshot() for a in market.advertisers}
        tables = {}
        lineage = market.query_stream.lineage()
        if lineage is not None:
            tables["queries.parquet"] = pl.from_dicts(lineage, infer_schema_length=None)
        write_run(Path(out_dir), scenario_toml, rounds, agents, summary, learners, tables)
    return RunResult(rounds, agents, summary, Path(out_dir) if out_dir else None)
