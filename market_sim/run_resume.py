"""Checkpoints of market runs: write one every so often, resume from it after an interruption.

A run (or replicates in lockstep) with results folders writes its state to each folder's
``checkpoint.pickle`` (:mod:`market_sim.results.checkpoint`) after a round, once at least
``every_seconds`` have passed since the last one (0: after every round), and never after its last
round. With the checkpoint it writes the folder's ``scenario.toml``, so that the output-folder
check refuses another scenario there (without ``--force``) as it refuses one over finished
results. Rerunning the same command resumes after the checkpoint's round; the results are those
of an uninterrupted run, byte for byte, except the timing fields of ``summary.json``
(``wall_seconds`` sums the rounds' seconds over the sessions). The checkpoint is removed once the
results are written.

A checkpoint holds the market (advertisers and their learners, the query stream, the records so
far, the market's generator) and Python's, numpy's and torch's global generators (torch's CUDA
ones too where CUDA is in use). The loaded model is not in it: it is the model the rerun loads,
checked by the identity (weight hashes). Replicates resume only together: every folder's
checkpoint must be of the same round, so their files are written with Ctrl-C and SIGTERM held
back, each to a temporary file, and renamed into place only once all are written: a process
killed mid-write (SIGKILL, the OOM killer) leaves the previous round's checkpoints, all of them.

A checkpoint grows with the records (``benchmarks/checkpoint_cost.py``, four advertisers: 870
bytes per auction and 1.0 s to write after 30,000 auctions of the generic round; 195 bytes and
0.1 s after 128,000 of the array round). So that writing never becomes a large part of a long
run, the next checkpoint waits at least :data:`WRITE_TIME_FACTOR` times as long as the last
write took, besides ``every_seconds`` (``every_seconds = 0`` writes after every round
regardless). That keeps checkpoints to about 1/20 of a long run's time, a little more as the
records grow between two writes (6% at the benchmark's rate of growth). A write that fails (a
full disk, a state pickle cannot write) turns checkpoints off for the run with one warning line;
the run itself goes on.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch

from market_sim.lm.model import LanguageModel
from market_sim.market.model import MarketModel, strategy_modules
from market_sim.plugins.origin import plugin_origin
from market_sim.process_lifetime import interrupts_deferred
from market_sim.provenance import run_provenance
from market_sim.results.checkpoint import (
    CHECKPOINT_FILE,
    Checkpoint,
    CheckpointError,
    read_checkpoint,
    write_checkpoints_together,
)
from market_sim.results.files import atomic_write_text
from market_sim.results.layout import SCENARIO_FILE, SUMMARY_FILE
from market_sim.scenario.strategy_plugins import strategy_origins

WRITE_TIME_FACTOR = 20.0
"""The next checkpoint waits at least this many times the last write's seconds."""


def checkpoint_identity(
    market: MarketModel, lm: LanguageModel, scenario_toml: str, lockstep_seeds: Sequence[int]
) -> dict[str, Any]:
    """Everything a market run's results depend on besides its state.

    The run id (resolved scenario hash, seed, torch thread count), the software versions, the
    model's provenance (weight hashes, dtype, prompt format, stop tokens), the git state of the
    code (any change to a tracked file of the checkout, even the README, counts as other code),
    a plugin mechanism's and plugin strategies' source hashes, the device (and a CUDA device's
    name), and the seeds run in lockstep with it (their batch shapes round logits).
    """
    provenance = run_provenance(lm, market.scenario.model.path, scenario_toml)
    execution = provenance["execution"]
    kind = market.scenario.mechanism.kind
    return {
        "run_id": market.run_id,
        "versions": provenance["versions"],
        "provenance": provenance["provenance"],
        "code": {key: execution[key] for key in ("git_commit", "git_dirty", "git_diff_sha256")},
        "mechanism_plugin": plugin_origin(kind, [type(market.platform).__module__]),
        "strategy_plugins": strategy_origins(*strategy_modules(market)),
        "device": execution["device"],
        "device_name": execution["device_name"],
        "lockstep_seeds": list(lockstep_seeds),
    }


def global_generator_states() -> dict[str, Any]:
    """Python's, numpy's and torch's global generator states (CUDA's where initialised)."""
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state_all() if cuda else None,
    }


def restore_global_generators(states: dict[str, Any]) -> None:
    """Set the global generators to :func:`global_generator_states`' ``states``."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["torch_cuda"] is not None:
        torch.cuda.set_rng_state_all(states["torch_cuda"])


def warn(message: str) -> None:
    """One warning line on stderr."""
    print(f"market-sim: warning: {message}", file=sys.stderr)


def warn_of_unused_checkpoints(folders: Sequence[Path]) -> None:
    """One warning line per folder holding a checkpoint that a run without checkpoints ignores.

    The run still removes it once its results are written, as it removes any stale one.
    """
    for folder in folders:
        path = Path(folder) / CHECKPOINT_FILE
        if path.is_file():
            warn(
                f"'{path}' is not resumed from (checkpoints are off); the run starts at "
                "round 0 and removes it once its results are written"
            )


class RunCheckpoints:
    """The checkpoints of one run, or of replicates in lockstep (one file per results folder).

    Args:
        folders: The results folder of each market.
        markets: The freshly built markets, in the same order.
        lm: The loaded model they share.
        scenario_tomls: Each market's resolved scenario.
        every_seconds: Seconds of rounds between two checkpoints (0: after every round).
    """

    def __init__(
        self,
        folders: Sequence[Path],
        markets: Sequence[MarketModel],
        lm: LanguageModel,
        scenario_tomls: Sequence[str],
        every_seconds: float,
    ) -> None:
        if every_seconds < 0:
            raise ValueError(f"checkpoint interval must be >= 0 seconds, got {every_seconds}")
        seeds = [market.scenario.seed for market in markets]
        self.folders = [Path(folder) for folder in folders]
        self.paths = [folder / CHECKPOINT_FILE for folder in self.folders]
        self.scenario_tomls = list(scenario_tomls)
        self.identities = [
            checkpoint_identity(market, lm, toml, seeds)
            for market, toml in zip(markets, scenario_tomls, strict=True)
        ]
        self.lm = lm
        self.every_seconds = every_seconds
        self.enabled = True
        self.last_written = time.perf_counter()
        self.wait_seconds = every_seconds

    def resume(self) -> tuple[list[MarketModel], int, float] | None:
        """The markets of the folders' checkpoints, their completed rounds and seconds.

        Returns:
            ``(markets, completed_rounds, wall_seconds)``, with the global generators restored;
            None (start at round 0) when a folder has no checkpoint of this run (one warning
            line for a checkpoint of another run) or the folders' rounds differ.
        """
        checkpoints = []
        for path, identity in zip(self.paths, self.identities, strict=True):
            checkpoint, why_not = read_checkpoint(path, identity, self.lm)
            if why_not is not None:
                warn(f"'{path}' is not resumed from: {why_not}; the run starts at round 0")
            if checkpoint is None:
                return None
            checkpoints.append(checkpoint)
        rounds = {checkpoint.completed_rounds for checkpoint in checkpoints}
        if len(rounds) != 1:
            warn(
                f"the replicates' checkpoints are of different rounds ({sorted(rounds)}); "
                "the runs start at round 0"
            )
            return None
        restore_global_generators(checkpoints[0].state["global_generators"])
        first = checkpoints[0]
        others = len(self.paths) - 1
        where = str(self.paths[0]) + (f" and {others} more" if others else "")
        print(
            f"market-sim: resuming after round {first.completed_rounds} of "
            f"{first.state['market'].scenario.rounds} ({where})",
            file=sys.stderr,
        )
        markets = [checkpoint.state["market"] for checkpoint in checkpoints]
        return markets, first.completed_rounds, first.wall_seconds

    def after_round(
        self, markets: Sequence[MarketModel], completed_rounds: int, wall_seconds: float
    ) -> None:
        """Write the checkpoints if the wait since the last ones is over (see the module).

        Nothing after the last round. The folders' files are written with Ctrl-C and SIGTERM
        held back, and renamed together (:meth:`write`), so an interrupted or killed run never
        leaves replicates at different rounds. A write that fails turns checkpoints off for the
        run, with one warning line; the last checkpoints written stay (the failed write
        replaced none of them).
        """
        total_rounds = markets[0].scenario.rounds
        if not self.enabled or completed_rounds >= total_rounds:
            return
        if time.perf_counter() - self.last_written < self.wait_seconds:
            return
        started = time.perf_counter()
        generators = global_generator_states()
        with ExitStack() as stack:
            if len(self.paths) > 1:
                stack.enter_context(interrupts_deferred())
            try:
                self.write(markets, completed_rounds, wall_seconds, generators)
            except (CheckpointError, OSError) as error:
                self.enabled = False
                kept = "an interrupted run resumes from the last checkpoint written, if any"
                warn(f"this run writes no more checkpoints: {error}; {kept}")
        self.last_written = time.perf_counter()
        if self.every_seconds > 0:  # 0 asks for every round, whatever it costs
            written_in = self.last_written - started
            self.wait_seconds = max(self.every_seconds, WRITE_TIME_FACTOR * written_in)

    def write(
        self,
        markets: Sequence[MarketModel],
        completed_rounds: int,
        wall_seconds: float,
        generators: dict[str, Any],
    ) -> None:
        """Write every folder's checkpoint of this round, and its ``scenario.toml``.

        The checkpoints are replaced together: each is written to a temporary file first and
        renamed only once all are (:func:`write_checkpoints_together`), so a process killed
        mid-write (SIGKILL, the OOM killer) leaves the replicates' checkpoints of one round.
        ``scenario.toml`` is written unless the folder holds finished results (a
        ``summary.json``): over another scenario's results (``--force``), it must keep naming
        them until the run writes its own.
        """
        for folder, text in zip(self.folders, self.scenario_tomls, strict=True):
            scenario_file = folder / SCENARIO_FILE
            if (folder / SUMMARY_FILE).is_file():
                continue
            if not scenario_file.is_file() or scenario_file.read_bytes() != text.encode():
                atomic_write_text(scenario_file, text)
        state = {"global_generators": generators}
        checkpoints = [
            Checkpoint(identity, completed_rounds, wall_seconds, {"market": market, **state})
            for identity, market in zip(self.identities, markets, strict=True)
        ]
        write_checkpoints_together(
            self.paths, checkpoints, self.lm, (LanguageModel, torch.nn.Module)
        )
