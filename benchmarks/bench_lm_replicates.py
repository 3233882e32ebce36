"""Replicate token-auction markets in lockstep against the same seeds run one after another.

Runs ``scenarios/learning_token_auction.toml`` (bundled tiny LM, linear second-price token
auction, two Hedge advertisers, counterfactuals and regret on) for R seeds, K auctions per
round, twice in the same process: once with :func:`market_sim.run.run_replicates` (the R x K
auctions of a round share one decode, :meth:`TokenAuctionPlatform.run_auction_groups`), once
as R separate :func:`market_sim.run.run_scenario` calls. Prints auctions/s of both, their ratio,
and how far the replicates' records are from the separate runs' (texts should be identical and
numbers close: a larger batch can round float32 logits differently).

Measured on a quiet 2-core CPU, one thread, R = 8, K = 8, 10 rounds: lockstep 1.09x to 1.31x
the auctions/s of separate runs (two runs; separate runs took 29 to 38 s, so the ratio is
within run-to-run noise of that size); the learners' counterfactual pricing, which is per
replicate, takes about 60% of the lockstep run and the shared decode about 30%. Texts equal;
largest differences 3.2e-6 absolute, 5e-6 relative (a utility of 0.089 = value - payment,
both near 20). On an H200 (``--device cuda``, bfloat16, R = 16, K = 8, 5 rounds): 1.29x, texts
and numbers equal to the separate runs' exactly.

Lockstep is always timed first, the separate runs second (after a warm-up of one run): on a
machine whose load drifts, compare several invocations rather than one.

    python benchmarks/bench_lm_replicates.py [--seeds 8] [--auctions-per-round 8]
        [--rounds 10] [--max-new-tokens 24] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from market_sim.lm.model import LanguageModel
from market_sim.run import RunResult, run_replicates, run_scenario
from market_sim.scenario.load import load_scenario

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "learning_token_auction.toml"


def largest_difference(lockstep: RunResult, separate: RunResult) -> tuple[bool, float, float]:
    """Whether the reply texts agree, and the largest absolute and relative float differences.

    Relative differences are taken against the larger magnitude of the pair, over pairs whose
    magnitude is at least 1e-3 (below that the absolute figure says more).
    """
    texts_equal = lockstep.rounds["text"].to_list() == separate.rounds["text"].to_list()
    largest, largest_relative = 0.0, 0.0
    for table in ("rounds", "agents"):
        left, right = getattr(lockstep, table), getattr(separate, table)
        for column in left.columns:
            if left[column].dtype not in (pl.Float64, pl.Float32):
                continue
            a = left[column].to_numpy().astype(np.float64)
            b = right[column].to_numpy().astype(np.float64)
            both = ~(np.isnan(a) & np.isnan(b))
            if not both.any():
                continue
            difference = np.abs(a[both] - b[both])
            largest = max(largest, float(difference.max()))
            scale = np.maximum(np.abs(a[both]), np.abs(b[both]))
            sizable = scale >= 1e-3
            if sizable.any():
                relative = float((difference[sizable] / scale[sizable]).max())
                largest_relative = max(largest_relative, relative)
    return texts_equal, largest, largest_relative


def main() -> None:
    """Time both ways of running the seeds and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="R, replicate markets")
    parser.add_argument("--auctions-per-round", type=int, default=8, help="K")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--device", default="cpu", help="cpu, cuda or cuda:N (the model's dtype: its default there)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scenario = load_scenario(
        SCENARIO,
        [
            f"rounds={args.rounds}",
            f"auctions_per_round={args.auctions_per_round}",
            f"mechanism.max_new_tokens={args.max_new_tokens}",
            f'model.device="{args.device}"',
        ],
    )
    lm = LanguageModel.load(scenario.model.path, device=args.device)
    seeds = list(range(args.seeds))
    auctions = args.seeds * args.rounds * args.auctions_per_round
    print(
        f"learning_token_auction: R = {args.seeds} seeds, K = {args.auctions_per_round}, "
        f"{args.rounds} rounds, {args.max_new_tokens} tokens, device {lm.device} "
        f"({next(lm.model.parameters()).dtype}), "
        f"threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    run_scenario(scenario, lm=lm)  # warm-up: first-call costs belong to neither side
    started = time.perf_counter()
    lockstep = run_replicates(scenario, seeds, lm=lm)
    lockstep_seconds = time.perf_counter() - started
    started = time.perf_counter()
    separate = [run_scenario(dataclasses.replace(scenario, seed=s), lm=lm) for s in seeds]
    separate_seconds = time.perf_counter() - started
    print(
        f"lockstep {lockstep_seconds:.2f} s ({auctions / lockstep_seconds:,.1f} auctions/s), "
        f"one after another {separate_seconds:.2f} s ({auctions / separate_seconds:,.1f} "
        f"auctions/s): {separate_seconds / lockstep_seconds:.2f}x"
    )
    comparisons = [largest_difference(a, b) for a, b in zip(lockstep, separate, strict=True)]
    print(
        f"replicates vs separate runs: texts identical in {sum(c[0] for c in comparisons)} of "
        f"{len(seeds)} seeds; largest difference of any float column: absolute "
        f"{max(c[1] for c in comparisons):.2e}, relative {max(c[2] for c in comparisons):.2e}; "
        f"load average after {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
