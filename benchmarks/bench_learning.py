"""Speed of learning and of ad-slot runs: rounds per second over 10^5 rounds.

Prints, in one run (one torch thread):

1. The learning step alone, per learner kind: n bidders with U[0, 1] values in a one-slot
   second-price auction, each round every learner reports, the auction runs (vectorized numpy),
   and every learner updates (Hedge from the full counterfactual). Also the share of the time
   spent inside the learners' ``report`` / ``update``.
2. A whole classic-auction run through the market model (``scenarios/classic_auctions.toml``,
   Hedge bidders, cached LM reply, regret measured every 100 rounds).
3. Slot auctions vectorized over rounds against a per-round loop of the same function (ratio).

Usage: ``python benchmarks/bench_learning.py [--rounds 100000]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from market_sim.market.strategies import Feedback, StrategySetup
from market_sim.market.strategy_registry import make_strategy
from market_sim.mechanisms.slot_auctions import slot_auction
from market_sim.platform.base import ReportSpace
from market_sim.platform.slot_auction import SlotAuctionCounterfactual
from market_sim.run import run_scenario
from market_sim.scenario import StrategyConfig, load_scenario

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "classic_auctions.toml"
LEARNERS = ("hedge", "exp3", "epsilon_greedy", "ucb1", "policy_gradient")
BIDDERS = 4


def learning_step(kind: str, rounds: int, seed: int = 0) -> tuple[float, float, float]:
    """Rounds per second, learner share of the time, and the final mean bid ratio."""
    rng = np.random.default_rng(seed)
    setup = StrategySetup(horizon=rounds, report_space=ReportSpace(None))
    params = StrategyConfig(kind, {"multiplier_max": 1.5, "multiplier_count": 31}).params
    learners = [make_strategy(kind, params, setup) for _ in range(BIDDERS)]
    rates = np.array([1.0])
    learner_seconds = 0.0
    ratios = np.zeros(rounds)
    started = time.perf_counter()
    for t in range(rounds):
        values = rng.random(BIDDERS)
        tick = time.perf_counter()
        reports = [learner.report(v, "q", rng) for learner, v in zip(learners, values, strict=True)]
        learner_seconds += time.perf_counter() - tick
        bids = np.array([[r.bid for r in reports]])
        priority = rng.permutation(BIDDERS).astype(np.float64)
        outcome = slot_auction(bids, rates, "second_price", priority)
        engine = SlotAuctionCounterfactual(bids[0], priority, rates, "second_price")
        tick = time.perf_counter()
        for i, learner in enumerate(learners):
            allocation, payment = outcome.allocations[0, i], outcome.payments[0, i]
            learner.update(
                Feedback(
                    "q",
                    values[i],
                    reports[i],
                    allocation,
                    payment,
                    values[i] * allocation - payment,
                    lambda batch, i=i, engine=engine: engine.evaluate(i, batch),
                )
            )
        learner_seconds += time.perf_counter() - tick
        ratios[t] = np.mean(bids[0] / np.maximum(values, 1e-12))
    total = time.perf_counter() - started
    return rounds / total, learner_seconds / total, float(ratios[-rounds // 5 :].mean())


def classic_run(rounds: int) -> tuple[float, dict]:
    """Rounds per second of a whole market run of the classic scenario."""
    scenario = load_scenario(SCENARIO, [f"rounds={rounds}", "regret.every=100"])
    started = time.perf_counter()
    result = run_scenario(scenario)
    return rounds / (time.perf_counter() - started), result.summary


def vectorized_ratio(rounds: int) -> tuple[float, float]:
    """Rounds per second of one vectorized call and of a per-round loop."""
    bids = np.random.default_rng(1).random((rounds, BIDDERS))
    started = time.perf_counter()
    slot_auction(bids, [0.6, 0.3], "vcg")
    vectorized = rounds / (time.perf_counter() - started)
    loop_rounds = min(rounds, 20_000)
    started = time.perf_counter()
    for row in bids[:loop_rounds]:
        slot_auction(row[None], [0.6, 0.3], "vcg")
    looped = loop_rounds / (time.perf_counter() - started)
    return vectorized, looped


def main() -> None:
    """Print the three measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"rounds: {args.rounds}, bidders: {BIDDERS}, one torch thread")
    print("\n1. learning step (report + one-slot auction + update), 4 learners of a kind")
    print(f"{'learner':<16}{'rounds/s':>10}{'in learners':>13}{'final bid/value':>17}")
    for kind in LEARNERS:
        per_second, share, ratio = learning_step(kind, args.rounds)
        print(f"{kind:<16}{per_second:>10.0f}{share:>12.0%}{ratio:>17.3f}")
    per_second, summary = classic_run(args.rounds)
    print("\n2. classic-auction run through the market model (Hedge bidders, cached reply)")
    print(
        f"   {per_second:.0f} rounds/s; revenue_mean {summary['revenue_mean']:.4f} "
        f"(truthful second price: {(BIDDERS - 1) / (BIDDERS + 1):.4f}), "
        f"bid_ratio_final {summary['bid_ratio_final']:.3f}"
    )
    vectorized, looped = vectorized_ratio(args.rounds)
    print("\n3. VCG over 2 slots, vectorized over rounds vs a per-round loop")
    print(
        f"   vectorized {vectorized:.0f} rounds/s, loop {looped:.0f} rounds/s, "
        f"ratio {vectorized / looped:.0f}x"
    )


if __name__ == "__main__":
    main()
