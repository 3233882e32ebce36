"""Run a scenario end to end: load the LM, build the platform, step the market, write results."""

from __future__ import annotations

import dataclasses
import hashlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from market_sim.config.bounds import DEFAULT_CHECKPOINT_SECONDS, check_replicate_auctions
from market_sim.lm.model import LanguageModel
from market_sim.market.model import MarketModel, step_in_lockstep, strategy_modules
from market_sim.plugins import MechanismConfig, build_platform, mechanism_choices
from market_sim.plugins.origin import plugin_origin
from market_sim.progress import progress_range
from market_sim.provenance import run_provenance
from market_sim.results import QUERIES_FILE, summarize, write_run
from market_sim.results.checkpoint import CHECKPOINT_FILE
from market_sim.results.files import remove_stale_temporaries
from market_sim.run_resume import RunCheckpoints, warn_of_unused_checkpoints
from market_sim.scenario import Scenario, dump_scenario_toml
from market_sim.scenario.prompt_fit import check_model_fits
from market_sim.scenario.strategy_plugins import strategy_origins


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


def make_run_id(scenario_toml: str, scenario: Scenario, threads: int = 1) -> str:
    """Deterministic id: scenario name, seed, a hash of the resolved scenario, torch's threads.

    The LM's float32 forward rounds differently with another intra-op thread count (measured on
    ``hawaii_learning``: identical texts, allocations up to 9e-6 apart between 1 and 2 threads),
    so results are byte-identical only for the same thread count. The default of one thread
    keeps the plain ``<name>-seed<seed>-<hash>`` form; any other count is part of the id
    (``...-threads2``), so runs that may differ in the last bits never share an id.
    """
    digest = hashlib.sha256(scenario_toml.encode("utf-8")).hexdigest()[:10]
    suffix = "" if threads == 1 else f"-threads{threads}"
    return f"{scenario.name}-seed{scenario.seed}-{digest}{suffix}"


def load_scenario_model(scenario: Scenario, device: str | None = None) -> LanguageModel:
    """Load the scenario's language model (``device`` overrides ``model.device``)."""
    config = scenario.model
    return LanguageModel.load(
        config.path, device or config.device, config.dtype, config.prompt_format
    )


def scenario_model(scenario: Scenario, lm: LanguageModel | None = None) -> LanguageModel:
    """``lm`` (else the scenario's model, loaded) with the scenario's ``model.prompt_format``."""
    if lm is None:
        return load_scenario_model(scenario)
    return lm.with_prompt_format(scenario.model.prompt_format)


def run_scenario(
    scenario: Scenario,
    out_dir: Path | None = None,
    lm: LanguageModel | None = None,
    progress: bool | None = False,
    checkpoint_seconds: float | None = DEFAULT_CHECKPOINT_SECONDS,
) -> RunResult:
    """Run every round of a scenario.

    With ``out_dir``, the run checkpoints its state there every ``checkpoint_seconds`` and
    resumes from a checkpoint of the same run it finds there (:mod:`market_sim.run_resume`).

    Args:
        scenario: A validated scenario.
        out_dir: Where to write the results contract; nothing is written if None.
        lm: A loaded model to reuse (else the scenario's model is loaded).
        progress: Progress (False: none; None or True: a bar on a terminal, else a line on
            stderr every 5% or 30 s, see :func:`market_sim.progress.progress_bar`).
        checkpoint_seconds: Seconds of rounds between two checkpoints (0: after every round;
            None: no checkpoints, and none is resumed from).

    Returns:
        The records and the summary.
    """
    seed_everything(scenario.seed)
    lm = scenario_model(scenario, lm)
    check_model_fits(scenario, lm)  # ScenarioError before round 0, not an IndexError mid-run
    market, scenario_toml = build_market(scenario, lm)
    folders = [Path(out_dir)] if out_dir is not None else []
    markets, wall_seconds = step_markets(
        [market], [scenario_toml], folders, lm, progress, checkpoint_seconds, lockstep=False
    )
    return finish_run(markets[0], lm, scenario_toml, wall_seconds, out_dir, [scenario.seed])


def step_markets(
    markets: list[MarketModel],
    scenario_tomls: Sequence[str],
    folders: Sequence[Path],
    lm: LanguageModel,
    progress: bool | None,
    checkpoint_seconds: float | None,
    lockstep: bool,
) -> tuple[list[MarketModel], float]:
    """Step fresh markets through their rounds, checkpointing.

    Args:
        markets: Freshly built markets of one scenario (replicates differ in their seed).
        scenario_tomls: Their resolved scenarios.
        folders: Their results folders (empty: no checkpoints).
        lm: Their shared model.
        progress: As in :func:`run_scenario`.
        checkpoint_seconds: As in :func:`run_scenario`.
        lockstep: Step them with :func:`step_in_lockstep` (replicates), else ``step()`` the
            one market.

    Returns:
        The finished markets (those of a checkpoint, when one was resumed from) and the
        seconds spent on their rounds, summed over the sessions of a resumed run.
    """
    checkpoints = None
    completed, wall_seconds = 0, 0.0
    if folders and checkpoint_seconds is not None:
        checkpoints = RunCheckpoints(folders, markets, lm, scenario_tomls, checkpoint_seconds)
        resumed = checkpoints.resume()
        if resumed is not None:
            markets, completed, wall_seconds = resumed
    elif folders:
        warn_of_unused_checkpoints(folders)
    scenario = markets[0].scenario
    started, earlier_seconds = time.perf_counter(), wall_seconds
    rounds = progress_range(scenario.rounds, scenario.name, "round", progress, start=completed)
    for index in rounds:
        if lockstep:
            step_in_lockstep(markets)
        else:
            markets[0].step()
        wall_seconds = earlier_seconds + time.perf_counter() - started
        if checkpoints is not None:
            checkpoints.after_round(markets, index + 1, wall_seconds)
    return markets, wall_seconds


def run_replicates(
    scenario: Scenario,
    seeds: Sequence[int],
    out_dirs: Sequence[Path | None] | None = None,
    lm: LanguageModel | None = None,
    progress: bool | None = False,
    checkpoint_seconds: float | None = DEFAULT_CHECKPOINT_SECONDS,
) -> list[RunResult]:
    """Run one replicate market per seed in lockstep, their auctions sharing each LM forward.

    Each round every replicate plans its K auctions with its own generator, the platform runs
    the R x K auctions as one decode where it can (:func:`run_auction_groups`: the token
    auction; other platforms run replicate after replicate), and each replicate settles its
    own outcomes. A replicate's records and files are those of ``run_scenario`` with its seed
    (same run id), up to the float32 rounding of logits in a larger batch; its timing fields
    are those of the whole lockstep run.

    Args:
        scenario: A validated scenario (its ``seed`` is replaced by each of ``seeds``).
        seeds: The replicates' seeds (distinct).
        out_dirs: One results folder per seed (None: write nothing).
        lm: A loaded model to reuse (else the scenario's model is loaded).
        progress: Progress (False: none; None or True: a bar on a terminal, else a line on
            stderr every 5% or 30 s, see :func:`market_sim.progress.progress_bar`).
        checkpoint_seconds: As in :func:`run_scenario`; the replicates checkpoint together,
            one file per folder, and resume only together (all folders given).

    Returns:
        One result per seed, in order.

    Raises:
        ValueError: Repeated seeds, not one folder per seed, or more auctions in all than
            :func:`~market_sim.config.bounds.check_replicate_auctions` allows.
    """
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ValueError(f"replicate seeds must be distinct and non-empty, got {list(seeds)}")
    check_replicate_auctions(len(seeds), scenario.rounds, scenario.auctions_per_round)
    folders = list(out_dirs) if out_dirs is not None else [None] * len(seeds)
    if len(folders) != len(seeds):
        raise ValueError(f"{len(folders)} results folders for {len(seeds)} seeds")
    seed_everything(seeds[0])
    lm = scenario_model(scenario, lm)
    check_model_fits(scenario, lm)
    built = [build_market(dataclasses.replace(scenario, seed=seed), lm) for seed in seeds]
    tomls = [toml for _, toml in built]
    written = [Path(folder) for folder in folders if folder is not None]
    markets, wall_seconds = step_markets(
        [market for market, _ in built],
        tomls,
        written if len(written) == len(seeds) else [],
        lm,
        progress,
        checkpoint_seconds,
        lockstep=True,
    )
    return [
        finish_run(market, lm, toml, wall_seconds, folder, seeds)
        for market, toml, folder in zip(markets, tomls, folders, strict=True)
    ]


def build_market(scenario: Scenario, lm: LanguageModel) -> tuple[MarketModel, str]:
    """The market of a scenario on a loaded model, and the resolved scenario TOML.

    A ``model.prompt_format`` still ``auto`` (a hub model not cached when the scenario loaded)
    is recorded as the format the loaded model uses, so the run id and ``scenario.toml`` name it.
    """
    if scenario.model.prompt_format == "auto":
        model = dataclasses.replace(scenario.model, prompt_format=lm.prompt_format)
        scenario = dataclasses.replace(scenario, model=model)
    scenario_toml = dump_scenario_toml(scenario)
    run_id = make_run_id(scenario_toml, scenario, torch.get_num_threads())
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
    return market, scenario_toml


def with_mechanism_choices(meta: dict[str, Any], mechanism: MechanismConfig) -> dict[str, Any]:
    """``meta`` plus the mechanism's string-valued keys (its variant).

    They cannot clash: a plugin whose key is named like a summary field
    (:data:`market_sim.results.SUMMARY_FIELDS`) is refused when it registers.
    """
    return {**meta, **mechanism_choices(mechanism)}


def finish_run(
    market: MarketModel,
    lm: LanguageModel,
    scenario_toml: str,
    wall_seconds: float,
    out_dir: Path | None,
    lockstep_seeds: Sequence[int],
) -> RunResult:
    """Tables, summary and (if ``out_dir``) the results folder of a finished market.

    ``lockstep_seeds`` are the seeds of the markets stepped together with it, its own included
    (``[seed]`` for a run alone), recorded as ``execution.lockstep_seeds``: on the LM path a
    replicate's numbers can differ from a run alone in the last float32 bits, under the same id.
    """
    scenario, run_id = market.scenario, market.run_id
    rounds, agents = market.tables()
    meta = {
        "run_id": run_id,
        "scenario": scenario.name,
        "mechanism": scenario.mechanism.kind,
        "report_scale_meaning": market.platform.report_space.distortion,
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
    meta["execution"]["lockstep_seeds"] = list(lockstep_seeds)
    origin = plugin_origin(scenario.mechanism.kind, [type(market.platform).__module__])
    if origin is not None:  # a third-party mechanism: its code is part of the result
        meta["provenance"]["mechanism_plugin"] = origin
    strategies = strategy_origins(*strategy_modules(market))
    if strategies:  # likewise third-party strategies
        meta["provenance"]["strategy_plugins"] = strategies
    summary = summarize(rounds, agents, with_mechanism_choices(meta, scenario.mechanism))
    if out_dir is not None:
        learners = {a.name: a.strategy.snapshot() for a in market.agents}
        tables = {}
        lineage = market.query_stream.lineage()
        if lineage is not None:
            tables[QUERIES_FILE] = pl.from_dicts(lineage, infer_schema_length=None)
        write_run(Path(out_dir), scenario_toml, rounds, agents, summary, learners, tables)
        checkpoint = Path(out_dir) / CHECKPOINT_FILE
        checkpoint.unlink(missing_ok=True)  # the results supersede it
        remove_stale_temporaries(checkpoint)  # and a write a kill cut short
    return RunResult(rounds, agents, summary, Path(out_dir) if out_dir else None)
