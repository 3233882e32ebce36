"""Realized log-linear second-price payments: the share kernel against the softmax quadrature.

Under log-linear aggregation a token auction's second-price payment is a quadrature of the
allocation curve on the competing weight's ladder
(:func:`market_sim.mechanisms.token_auction.numerical_second_price_payments`). It now evaluates
every node with :func:`market_sim.mechanisms.log_linear_shares.log_linear_share_allocations`
(logits ``r + t (f - r)``, ``exp2``, one reused buffer). The baseline is the same quadrature with
every node from :func:`market_sim.mechanisms.token_auction.allocation_curve` (a softmax of
``(sum_j w_j f_j + z f_i) / (B + z)`` per chunk of 16 nodes), which computed the payments before
(``ladder_payments_by_allocation_curve`` of ``tests/test_ladder_quadrature.py``, the reference
the tests compare the kernel with).

For A auctions of one step (2 advertisers, bids 0.8 and 1.2, platform weight 1, 64 nodes per
unit; random peaked log-probabilities over V tokens), prints the median time of each over
``--repeats`` interleaved runs, their ratio, and the largest difference of the payments relative
to the charge ceiling b x(b).

Run: ``python benchmarks/bench_log_linear_payments.py [--auctions 1,8,64] [--vocab 1562,49152]
[--repeats 5] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from market_sim.mechanisms.token_auction import (
    numerical_second_price_payments,
    participant_weights,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_ladder_quadrature import ladder_payments_by_allocation_curve  # noqa: E402


def instance(auctions: int, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[A, 3, V]`` peaked log-probabilities (logits of scale 3) and ``[A, 3]`` raw weights."""
    generator = torch.Generator().manual_seed(auctions * 100_003 + vocab)
    logits = torch.randn(auctions, 3, vocab, generator=generator, dtype=torch.float64) * 3
    bids = torch.tensor([[0.8, 1.2]] * auctions, dtype=torch.float64)
    return torch.log_softmax(logits, -1), participant_weights(bids, 1.0)


def main() -> None:
    """Print one line per (A, V)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--auctions", default="1,8,64", help="auctions per step (A)")
    parser.add_argument("--vocab", default="1562,49152", help="vocabulary sizes (V)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"log-linear second-price payments, 2 advertisers, 64 nodes, {args.threads} thread(s)")
    for vocab in (int(v) for v in args.vocab.split(",")):
        for auctions in (int(a) for a in args.auctions.split(",")):
            logprobs, raw = instance(auctions, vocab)
            times: dict[str, list[float]] = {"kernel": [], "softmax": []}
            for _ in range(args.repeats + 1):  # the first run of each is a warm-up
                started = time.perf_counter()
                kernel = numerical_second_price_payments(logprobs, raw, "log_linear", 64)
                times["kernel"].append(time.perf_counter() - started)
                started = time.perf_counter()
                softmax, ceiling = ladder_payments_by_allocation_curve(logprobs, raw, 64)
                times["softmax"].append(time.perf_counter() - started)
            kernel_time, softmax_time = (statistics.median(times[k][1:]) for k in times)
            difference = float(((kernel - softmax).abs() / ceiling).max())
            print(
                f"  V={vocab:<6} A={auctions:<4} kernel {kernel_time * 1e3:9.2f} ms  softmax "
                f"{softmax_time * 1e3:9.2f} ms  softmax / kernel {softmax_time / kernel_time:6.2f}x"
                f"  max |difference| / (b x(b)) {difference:.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
