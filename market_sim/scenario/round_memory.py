"""Does one round of K auctions fit in memory? Checked once the model is loaded, before round 0.

A mechanism that keeps per-auction state until its round settles (the token auction keeps
every step's ``[n + 1, V]`` distributions for the counterfactuals that learners and the regret
search price) needs memory in proportion to ``auctions_per_round`` (and to the replicates run
in lockstep, which share the round). Its plugin estimates the bytes of one auction
(:attr:`~market_sim.plugins.base.MechanismPlugin.auction_memory`); a round whose estimate
exceeds the memory available on the model's device would be killed for memory after the model
load and possibly hours of rounds, so it is refused here instead, naming the largest
``auctions_per_round`` that fits.

Available memory: on CUDA, the device's free memory (``torch.cuda.mem_get_info``); on the CPU,
``MemAvailable`` of ``/proc/meminfo``, or less where a cgroup v2 limit
(``/sys/fs/cgroup/memory.max`` minus ``memory.current``) says so. Where neither can be read
(macOS, say), nothing is checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from market_sim.config.fields import ScenarioError
from market_sim.plugins import mechanism_plugin
from market_sim.scenario.schema import Scenario

MEMINFO = Path("/proc/meminfo")
CGROUP = Path("/sys/fs/cgroup")


class SizedModel(Protocol):
    """What the check needs of a :class:`~market_sim.lm.model.LanguageModel`."""

    @property
    def vocab_size(self) -> int:
        """Width of the model's output distribution."""

    @property
    def device(self):  # noqa: ANN201 - a torch.device, kept torch-free here
        """Where the model runs."""


def round_bytes(scenario: Scenario, vocabulary: int, replicates: int = 1) -> int:
    """Estimated bytes one round holds: per-auction bytes x ``auctions_per_round`` x replicates."""
    config = scenario.mechanism
    per_auction = mechanism_plugin(config.kind).auction_memory(
        config, len(scenario.advertisers), vocabulary
    )
    return per_auction * scenario.auctions_per_round * replicates


def available_bytes(device) -> int | None:  # noqa: ANN001 - torch.device or str
    """Free memory on ``device`` in bytes, or None where it cannot be read."""
    kind = getattr(device, "type", str(device).split(":")[0])
    if kind == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    if kind != "cpu":
        return None
    available = meminfo_available()
    limit = cgroup_headroom()
    if available is None:
        return limit
    return available if limit is None else min(available, limit)


def meminfo_available() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes, or None."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def cgroup_headroom() -> int | None:
    """``memory.max - memory.current`` of this process's cgroup v2, or None (no limit)."""
    try:
        limit = (CGROUP / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((CGROUP / "memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None


def check_round_memory(
    scenario: Scenario, lm: SizedModel, replicates: int = 1, available: int | None = None
) -> None:
    """Refuse a round that cannot fit (see the module docstring).

    Args:
        scenario: The resolved scenario.
        lm: Its loaded model (vocabulary size and device).
        replicates: Markets run in lockstep (``run --seeds``), whose rounds are held together.
        available: Free bytes to check against (default: read from the device).

    Raises:
        ScenarioError: On ``auctions_per_round`` when the estimate exceeds the free memory.
    """
    needed = round_bytes(scenario, lm.vocab_size, replicates)
    if needed == 0:
        return
    if available is None:
        available = available_bytes(lm.device)
    if available is None or needed <= available:
        return
    per_auction = needed // (scenario.auctions_per_round * replicates)
    fitting = available // (per_auction * replicates)
    lockstep = f" x {replicates} replicates" if replicates > 1 else ""
    raise ScenarioError(
        "auctions_per_round",
        f"{scenario.auctions_per_round} auctions{lockstep} of {scenario.mechanism.max_new_tokens} "
        f"tokens over a {lm.vocab_size:,}-token vocabulary hold about {needed / 1e9:.1f} GB per "
        f"round, more than the {available / 1e9:.1f} GB free on {lm.device}; at most "
        f"{fitting} fit{'' if replicates == 1 else ' per replicate'} (or fewer seeds, fewer "
        "tokens, a smaller model)",
    )
