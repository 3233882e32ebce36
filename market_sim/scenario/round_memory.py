"""Does one round of K auctions fit in memory? Checked once the model is loaded, before round 0.

A mechanism that keeps per-auction state until its round settles (the token auction keeps
every step's ``[n + 1, V]`` distributions for the counterfactuals that learners and the regret
search price) needs memory in proportion to ``auctions_per_round`` (and to the replicates run
in lockstep, which share the round). Its plugin estimates the bytes of one auction
(:attr:`~market_sim.plugins.base.MechanismPlugin.auction_memory`); a round whose estimate
exceeds the memory available on the model's device would be killed for memory after the model
load and possibly hours of rounds, so it is refused here instead, naming the largest
``auctions_per_round`` that fits.

Available memory: on CUDA, the device's free memory (``torch.cuda.mem_get_info``) plus what
PyTorch's allocator holds cached but unused; on the CPU, ``MemAvailable`` of ``/proc/meminfo``,
or less where a cgroup v2 limit says so: the smallest ``memory.max - memory.current +``
reclaimable page cache (``file`` of ``memory.stat``) over this process's cgroup and its
ancestors. cgroup v1 limits are not read. Where nothing can be read (macOS, say), nothing is
checked. The estimate errs low (see the plugin's), so a refused round surely does not fit and
a round that fits narrowly may still run out of memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from market_sim.config.fields import ScenarioError
from market_sim.plugins import mechanism_plugin
from market_sim.scenario.schema import Scenario

MEMINFO = Path("/proc/meminfo")
CGROUP = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")


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

        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(torch.cuda.mem_get_info(device)[0]) + max(0, int(cached))
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
    """Smallest cgroup v2 headroom over this process's cgroup and its ancestors, or None.

    A cgroup's headroom is ``memory.max - memory.current`` plus its reclaimable page cache
    (``file`` in ``memory.stat``: ``memory.current`` counts it, the kernel frees it on demand).
    None when no cgroup on the path sets a limit (or none can be read).
    """
    try:
        relative = next(
            (
                line.split("::", 1)[1]
                for line in SELF_CGROUP.read_text().splitlines()
                if line.startswith("0::")
            ),
            "/",
        )
    except OSError:
        relative = "/"
    folder = (CGROUP / relative.strip().lstrip("/")).resolve()
    root = CGROUP.resolve()
    smallest = None
    while True:
        headroom = cgroup_folder_headroom(folder)
        if headroom is not None:
            smallest = headroom if smallest is None else min(smallest, headroom)
        if folder == root or root not in folder.parents:
            return smallest
        folder = folder.parent


def cgroup_folder_headroom(folder: Path) -> int | None:
    """One cgroup's ``memory.max - memory.current + file``, or None (no limit, unreadable)."""
    try:
        limit = (folder / "memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int((folder / "memory.current").read_text().strip())
    except (OSError, ValueError):
        return None
    reclaimable = 0
    try:
        for line in (folder / "memory.stat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "file":
                reclaimable = int(value)
    except (OSError, ValueError):
        reclaimable = 0
    return max(0, int(limit) - used + reclaimable)


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
        ScenarioError: When the estimate exceeds the free memory: on ``auctions_per_round``,
            or on ``--seeds`` when not one auction per replicate fits but one replicate's
            round would (then fewer seeds per call is the only remedy).
    """
    needed = round_bytes(scenario, lm.vocab_size, replicates)
    if needed == 0:
        return
    if available is None:
        available = available_bytes(lm.device)
    if available is None or needed <= available:
        return
    per_auction = needed // (scenario.auctions_per_round * replicates)
    per_replicate = per_auction * scenario.auctions_per_round
    if replicates > 1 and per_auction * replicates > available and per_replicate <= available:
        raise ScenarioError(
            "--seeds",
            f"{replicates} seeds in lockstep with auctions_per_round = "
            f"{scenario.auctions_per_round} and {sized_by(scenario, lm.vocab_size)} hold "
            f"about {needed / 1e9:.1f} GB per round, more than the {available / 1e9:.1f} GB free "
            f"on {lm.device}; at most {available // per_replicate} seeds fit in one call",
        )
    fitting = available // (per_auction * replicates)
    lockstep = f" x {replicates} replicates" if replicates > 1 else ""
    allowed = (
        f"at most {fitting} fit{'' if replicates == 1 else ' per replicate'}"
        if fitting
        else "not even 1 fits"
    )
    raise ScenarioError(
        "auctions_per_round",
        f"{scenario.auctions_per_round} auctions{lockstep} with "
        f"{sized_by(scenario, lm.vocab_size)} hold about {needed / 1e9:.1f} GB per round, more "
        f"than the {available / 1e9:.1f} GB free on {lm.device}; {allowed} (or fewer seeds, "
        f"{'fewer candidates, ' if candidates_of(scenario) else ''}fewer tokens, a smaller "
        "model)",
    )


def candidates_of(scenario: Scenario) -> int | None:
    """``mechanism.candidates`` where the mechanism reads it (sampled candidate replies)."""
    config = scenario.mechanism
    read = mechanism_plugin(config.kind).read_settings(config)
    return config.candidates if any(item.name == "candidates" for item in read) else None


def sized_by(scenario: Scenario, vocabulary: int) -> str:
    """The keys an auction's memory grows with, as the refusal names them."""
    tokens = f"max_new_tokens = {scenario.mechanism.max_new_tokens}"
    candidates = candidates_of(scenario)
    if candidates is not None:
        return f"mechanism.candidates = {candidates:,} and {tokens}"
    return f"{tokens} over a {vocabulary:,}-token vocabulary"
