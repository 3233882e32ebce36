"""The no-LM path: ad-slot auctions through the market, auctions per second, against AuctionGym.

Prints, in one run (one torch thread, the bundled LM writing one cached reply per query):

1. Truthful second price, 2 bidders, one slot, ``reply = "cached"``, regret off, through
   :func:`market_sim.run.run_scenario` for ``auctions_per_round`` K in {1, 64, 1024, 4096}
   (K = 1 is the generic per-auction round; K > 1 the vectorized round). Two rates: the market
   loop alone (``summary["auctions_per_second"]``) and end to end (tables and summary too).
2. Fixed strategies (bid 0.8 v), 2 bidders, K = 4096: target >= 10^6 auctions/s end to end;
   ``--repeats`` runs (default 3), the run of median end-to-end rate reported with the spread,
   since on shared cores one run can land on a burst of another process's load.
3. Hedge learners (31 multipliers), 4 bidders, 10^5 auctions, K = 1000: target < 5 s end to
   end; against the generic K = 1 path on fewer auctions (its rate, scaled).
4. Replicates: 16 Hedge markets (4 bidders, K = 64, 300 rounds) in lockstep
   (:func:`market_sim.run.run_replicates`: one ``[R K, n]`` auction call and one stacked
   counterfactual per advertiser and round) against the same 16 seeds run one after another.
5. AuctionGym's own ``Auction.simulate_opportunity`` loop on its ``SP_Oracle`` configuration
   (truthful second price, 2 participants per auction), timed by ``auctiongym_driver.py`` in a
   separate Python that has AuctionGym's requirements, on the same machine after (4). Skipped
   unless ``--auctiongym PATH`` (an AuctionGym checkout) is given. Not the same work per
   auction: each AuctionGym opportunity also draws a context, picks 2 of its 6 agents, scores
   12 items per bidder, simulates a click and logs the impression, where the market draws
   U[0, 1] values and runs the second-price rule; and the driver reports the best of 3 timed
   loops where the market's K = 1 figure is one run. The ratio compares each simulator's
   per-auction loop on its own slice as a user runs it, not identical arithmetic.

Ratios are of figures measured in this run. polars, numpy's BLAS and torch are held to one
thread here (the driver holds AuctionGym's to one too). Usage::

    python benchmarks/bench_no_lm.py [--auctiongym /path/to/auction-gym \\
        --auctiongym-python /path/to/venv/bin/python] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import os

ONE_THREAD = ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
for variable in ONE_THREAD:
    os.environ.setdefault(variable, "1")  # one core, as the AuctionGym driver; before imports

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from market_sim.lm.model import LanguageModel
from market_sim.run import run_replicates, run_scenario
from market_sim.scenario import Scenario, scenario_from_dict

DRIVER = Path(__file__).resolve().parent / "auctiongym_driver.py"
QUERIES = ["vacation in Hawaii", "family trip to Maui", "cheap flights to Honolulu"]


def classic(
    auctions_per_round: int, rounds: int, strategy: dict[str, Any], bidders: int
) -> Scenario:
    """A one-slot second-price market of U[0, 1] bidders, cached reply, regret off."""
    return scenario_from_dict(
        {
            "name": "bench_no_lm",
            "seed": 0,
            "rounds": rounds,
            "auctions_per_round": auctions_per_round,
            "model": {"path": "bundled:tiny-ads", "device": "cpu"},
            "mechanism": {
                "kind": "second_price",
                "click_through_rates": [1.0],
                "max_new_tokens": 24,
                "reply": "cached",
            },
            "queries": {"items": QUERIES, "order": "sample"},
            "regret": {"enabled": False},
            "advertisers": [
                {
                    "name": f"Bidder {i}",
                    "context": f"Bidder {i}: flights to Hawaii.",
                    "valuation": {"dist": "uniform", "low": 0.0, "high": 1.0},
                    "strategy": strategy,
                }
                for i in range(bidders)
            ],
        }
    )


def market_rate(scenario: Scenario, lm: LanguageModel) -> dict[str, float]:
    """Auctions per second of one run: the market loop, and end to end (tables, summary)."""
    started = time.perf_counter()
    result = run_scenario(scenario, lm=lm)
    seconds = time.perf_counter() - started
    auctions = scenario.rounds * scenario.auctions_per_round
    assert result.rounds.height == auctions
    return {
        "auctions": auctions,
        "seconds": seconds,
        "end_to_end": auctions / seconds,
        "loop": float(result.summary["auctions_per_second"]),
        "revenue_mean": float(result.summary["revenue_mean"]),
    }


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run of median end-to-end rate (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda run: run["end_to_end"])
    return ordered[(len(ordered) - 1) // 2]


def auctiongym_rate(path: Path, python: str, auctions: int) -> float | None:
    """AuctionGym's auctions per second from the driver, or None when it cannot run."""
    if not (path / "src" / "Auction.py").is_file():
        print(f"AuctionGym: skipped (no checkout at {path})")
        return None
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [python, str(DRIVER), str(path), "--auctions", str(auctions)]
    done = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if done.returncode != 0:
        print(f"AuctionGym: skipped (driver exit {done.returncode}: {done.stderr.strip()[-300:]})")
        return None
    return float(json.loads(done.stdout.strip().splitlines()[-1])["auctions_per_second"])


def main() -> None:
    """Run every measurement and print the figures and their ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--auctiongym", type=Path, help="path of an AuctionGym checkout")
    parser.add_argument("--auctiongym-python", default=sys.executable)
    parser.add_argument("--auctiongym-auctions", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3, help="runs of the fixed-strategy case")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lm = LanguageModel.load("bundled:tiny-ads", device="cpu")
    for k in (1, 64):  # warm-up of both paths (generic K = 1, vectorized): imports, caches
        run_scenario(classic(k, 2, {"kind": "truthful"}, 2), lm=lm)
    figures: dict[str, Any] = {"load_average": os.getloadavg()}

    print("1. truthful second price, 2 bidders, through the market (auctions/s)")
    truthful = {}
    for k, auctions in ((1, 4_096), (64, 131_072), (1024, 524_288), (4096, 1_048_576)):
        truthful[k] = market_rate(classic(k, auctions // k, {"kind": "truthful"}, 2), lm)
        rate = truthful[k]
        print(
            f"   K = {k:5d}: {rate['end_to_end']:12,.0f} end to end, {rate['loop']:12,.0f} loop "
            f"({rate['auctions']:,} auctions, revenue {rate['revenue_mean']:.4f}, textbook 1/3)"
        )
    for k in (64, 1024, 4096):
        print(f"   K = {k} / K = 1: {truthful[k]['end_to_end'] / truthful[1]['end_to_end']:.1f}x")
    figures["truthful_second_price"] = truthful

    print("2. fixed strategies (bid 0.8 v), 2 bidders, K = 4096")
    fixed_strategy = {"kind": "fixed", "bid_multiplier": 0.8}
    runs = [market_rate(classic(4096, 256, fixed_strategy, 2), lm) for _ in range(args.repeats)]
    fixed = median_run(runs)
    spread = ", ".join(f"{run['end_to_end']:,.0f}" for run in runs)
    print(
        f"   {fixed['end_to_end']:12,.0f} auctions/s end to end, {fixed['loop']:12,.0f} loop "
        f"(median of {len(runs)} runs: {spread}; target >= 1,000,000)"
    )
    figures["fixed"], figures["fixed_runs"] = fixed, runs

    print("3. Hedge learners, 4 bidders, 10^5 auctions")
    hedge_strategy = {"kind": "hedge", "multiplier_max": 1.5, "multiplier_count": 31}
    hedge = market_rate(classic(1000, 100, hedge_strategy, 4), lm)
    generic = market_rate(classic(1, 2_000, hedge_strategy, 4), lm)
    print(
        f"   K = 1000: {hedge['seconds']:.2f} s for 10^5 auctions (target < 5 s); "
        f"generic K = 1: {generic['end_to_end']:,.0f} auctions/s, i.e. "
        f"{100_000 / generic['end_to_end']:.0f} s for 10^5; "
        f"ratio {hedge['end_to_end'] / generic['end_to_end']:.0f}x"
    )
    figures["hedge"], figures["hedge_generic"] = hedge, generic

    print("4. replicates: 16 Hedge markets, 4 bidders, K = 64, 300 rounds each")
    seeds = list(range(16))
    replicate = classic(64, 300, hedge_strategy, 4)
    started = time.perf_counter()
    run_replicates(replicate, seeds, lm=lm)
    lockstep = time.perf_counter() - started
    started = time.perf_counter()
    for seed in seeds:
        run_scenario(dataclasses.replace(replicate, seed=seed), lm=lm)
    separate = time.perf_counter() - started
    auctions = len(seeds) * 64 * 300
    print(
        f"   lockstep {lockstep:.2f} s ({auctions / lockstep:,.0f} auctions/s), one after another "
        f"{separate:.2f} s ({auctions / separate:,.0f} auctions/s): {separate / lockstep:.2f}x"
    )
    figures["replicates"] = {"lockstep_seconds": lockstep, "separate_seconds": separate}

    if args.auctiongym is not None:
        print("5. AuctionGym SP_Oracle (truthful second price, 2 participants), one core")
        gym = auctiongym_rate(args.auctiongym, args.auctiongym_python, args.auctiongym_auctions)
        if gym is not None:
            figures["auctiongym"] = gym
            print(f"   AuctionGym: {gym:12,.0f} auctions/s")
            for k in (1, 64, 1024, 4096):
                ratio = truthful[k]["end_to_end"] / gym
                print(f"   market K = {k:5d} / AuctionGym: {ratio:8.2f}x (target >= 10x)")
    figures["load_average_after"] = os.getloadavg()
    print(f"load average before / after: {figures['load_average']} / {os.getloadavg()}")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
