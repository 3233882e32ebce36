"""Speed of the README's Python API example: log-linear against linear aggregation.

The example runs ``scenarios/hawaii.toml`` (two truthful advertisers, bundled LM, 24-token
replies) with ``mechanism.aggregation = log_linear`` and regret measured every round (the
default ``[regret]``). Under log-linear aggregation the second-price payment has no closed form:
every counterfactual candidate of the regret search is priced by quadrature (on the ladder of
panels its report shares with the other candidates, see
``market_sim.mechanisms.token_auction.numerical_second_price_payments``), so this is the
benchmark of the log-linear counterfactual. Prints, in one run on one loaded model, the rounds
per second of the linear and log-linear versions and their ratio, and the load average before
and after (the ratio is only comparable between runs on an equally loaded machine).

Both versions are warmed up, then timed ``--repeats`` times in alternating order (medians
and the per-run ratios printed).

Usage: ``python benchmarks/bench_log_linear_counterfactual.py [--rounds 10] [--repeats 3]
[--threads 1]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from market_sim.run import load_scenario_model, run_scenario
from market_sim.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "hawaii.toml"


def rounds_per_second(aggregation: str, rounds: int, lm) -> float:
    """Rounds per second of the API example with the given aggregation."""
    scenario = load_scenario(SCENARIO, [f"rounds={rounds}", f"mechanism.aggregation={aggregation}"])
    started = time.perf_counter()
    run_scenario(scenario, lm=lm)
    return rounds / (time.perf_counter() - started)


def main() -> None:
    """Run both versions and print their speeds and ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="rounds per version and run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each version")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_scenario_model(load_scenario(SCENARIO), device="cpu")
    load_before = os.getloadavg()[0]
    for aggregation in ("linear", "log_linear"):  # warm-up: first-call allocations, imports
        rounds_per_second(aggregation, 1, lm)
    rates: dict[str, list[float]] = {"linear": [], "log_linear": []}
    for repeat in range(args.repeats):  # alternating order: drift in load hits both alike
        order = ("linear", "log_linear") if repeat % 2 == 0 else ("log_linear", "linear")
        for aggregation in order:
            rates[aggregation].append(rounds_per_second(aggregation, args.rounds, lm))
    linear, log_linear = (statistics.median(rates[a]) for a in ("linear", "log_linear"))
    ratios = sorted(a / b for a, b in zip(rates["linear"], rates["log_linear"], strict=True))
    print(
        f"README API example, {args.rounds} rounds, {args.repeats} runs of each (order "
        f"alternating), {args.threads} thread(s), regret every round"
    )
    print(f"  linear aggregation:     {linear:8.2f} rounds/s (median)")
    print(f"  log-linear aggregation: {log_linear:8.2f} rounds/s (median)")
    print(
        f"  linear / log-linear:    {linear / log_linear:8.2f}x of the medians; per run "
        + ", ".join(f"{ratio:.2f}x" for ratio in ratios)
    )
    print(f"  load average (1 min):   {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    main()
