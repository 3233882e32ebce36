"""Regret in the array round: one advertiser's K searches at once against one search at a time.

Runs ``classic_auctions.toml`` (second price over ad slots beside a cached reply, four Hedge
advertisers) with K auctions per round and regret measured every round, twice with the same
seed: as shipped (:func:`market_sim.incentives.regret_batch.estimate_bid_regret_rows`) and with
that function replaced by a loop of the single search
(:func:`market_sim.incentives.regret.estimate_regret` on
:class:`~market_sim.platform.slot_auction.SlotAuctionCounterfactual`, what the array round ran
before). Checks that both write the same tables, then prints each run's auctions per second and
the ratio.

Measured on the 2-core CPU (one thread, load average 0.9 to 1.7), K = 256, after a warm-up run:
20 rounds (5,120 auctions, 20,480 searches), two runs: one search at a time 18.4 and 14.8 s,
batched 0.34 and 0.52 s (54x and 28x); 60 rounds: 48.3 s against 0.63 s (76x); tables equal
every time. Each time includes loading the bundled model and writing the cached replies, which
is why the ratio grows with the rounds; the rounds alone of 60 (``wall_seconds``) took 0.73 and
0.80 s with regret every round, 0.31 and 0.36 s without: about 7 us per search, against about
790 us one at a time.

Run: ``python benchmarks/regret_batch.py [--rounds 20] [--auctions 256]``.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import numpy as np
import torch

from market_sim.incentives.regret import estimate_regret
from market_sim.incentives.regret_batch import RegretColumns
from market_sim.market import array_round
from market_sim.platform.base import Report
from market_sim.platform.slot_auction import SlotAuctionCounterfactual
from market_sim.run import run_scenario
from market_sim.scenario import load_scenario
from market_sim.scenario.schema import RegretConfig

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "classic_auctions.toml"


def one_search_at_a_time(
    utilities: functools.partial,
    valuations: np.ndarray,
    played_bids: np.ndarray,
    played_scales: np.ndarray,
    config: RegretConfig,
    jump_bids: np.ndarray | None = None,
) -> RegretColumns:
    """The array round's regret before batching: the single search of each auction.

    ``utilities`` is :meth:`ArraySlotRound.counterfactual`'s partial of
    ``counterfactual_utilities(platform, agent, valuations, bids, priority)``; its arguments
    name the auctions to rebuild one at a time.
    """
    platform, agent, _, bids, priority = utilities.args
    estimates = []
    for k in range(len(valuations)):
        engine = SlotAuctionCounterfactual(
            bids[k], priority[k], platform.click_through_rates, platform.kind, platform.slot_value
        )
        estimates.append(
            estimate_regret(
                functools.partial(engine.evaluate, agent),
                float(valuations[k]),
                Report(float(played_bids[k]), float(played_scales[k])),
                platform.report_space,
                config,
                jump_bids=None if jump_bids is None else jump_bids[k],
            )
        )
    fields = ("regret", "best_response_gain", "truthful_utility", "best_multiplier")
    columns = {name: np.array([getattr(e, name) for e in estimates]) for name in fields}
    distortions = np.array([e.best_distortion for e in estimates])
    return RegretColumns(**columns, best_distortion=distortions)


def timed_run(rounds: int, auctions: int):
    """(seconds, result) of one run with regret every round (the model's load included)."""
    overrides = [f"rounds={rounds}", f"auctions_per_round={auctions}", "regret.every=1"]
    scenario = load_scenario(SCENARIO, overrides)
    started = time.perf_counter()
    result = run_scenario(scenario)
    return time.perf_counter() - started, result


def main() -> None:
    """Print both runs' auctions per second and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--auctions", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    timed_run(1, args.auctions)  # imports and first-call costs, paid by neither timed run
    batched_seconds, batched = timed_run(args.rounds, args.auctions)
    array_round.estimate_bid_regret_rows = one_search_at_a_time
    loop_seconds, loop = timed_run(args.rounds, args.auctions)
    if not (batched.agents.equals(loop.agents) and batched.rounds.equals(loop.rounds)):
        raise SystemExit("the two runs' tables differ")
    auctions = args.rounds * args.auctions
    print(
        f"K = {args.auctions}, {args.rounds} rounds ({auctions} auctions, regret every round): "
        f"one search at a time {loop_seconds:.2f} s ({auctions / loop_seconds:,.0f} auctions/s), "
        f"batched {batched_seconds:.2f} s ({auctions / batched_seconds:,.0f} auctions/s); "
        f"{loop_seconds / batched_seconds:.1f}x; tables equal"
    )


if __name__ == "__main__":
    main()
