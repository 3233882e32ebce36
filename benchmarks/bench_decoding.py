"""Aggregated token-auction decoding vs plain batched ``generate``, measured in one run.

For n = 2, 4, 8 advertisers and B auctions, compares:

* ``generate``: ``model.generate`` of the same B * n sequences, sampling with top_k=0, exactly
  T new tokens each (``min_new_tokens = T``), one KV cache;
* ``loop``: :func:`market_sim.lm.decoding.decode_combined` over B groups x n rows with a trivial
  combine (sample row 0), T steps, EOS ignored -- the decoding machinery alone;
* ``auction``: the same loop with the real linear second-price token-auction step (aggregation,
  sampling, allocations, closed-form payments).

Ratios are ``loop / generate`` and ``auction / generate`` (median of repeats, lower is faster).
Models: the bundled tiny LM and a randomly initialised GPT-2-small-shaped model (12 layers,
768 wide, vocab 50257; built in memory, nothing downloaded). Finally: rounds per second of the
Hawaii scenario.

Run: ``python benchmarks/bench_decoding.py [--device cuda] [--threads 1] [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from market_sim.lm.decoding import decode_combined
from market_sim.lm.model import LanguageModel
from market_sim.mechanisms.token_auction import (
    SamplingSegments,
    TokenAuctionRule,
    check_bids,
    token_auction_step,
)
from market_sim.prompting import build_prompt
from market_sim.run import run_scenario
from market_sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ["vacation in Hawaii", "family trip to Maui", "cheap flights to Honolulu"]
CONTEXTS = [
    "Alpha Airlines: nonstop flights to Hawaii.",
    "Beta Resort: beachfront rooms on Maui.",
    "Gamma Cars: rental cars at every airport.",
    "Delta Tours: guided island tours.",
]


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(action: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of ``repeats`` runs after one warm-up run."""
    action()
    times = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        action()
        synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def prompt_groups(auctions: int, agents: int) -> list[list[str]]:
    """B groups of n prompts: each advertiser's context plus the auction's query."""
    return [
        [
            build_prompt(QUERIES[a % len(QUERIES)], [CONTEXTS[i % len(CONTEXTS)]])
            for i in range(agents)
        ]
        for a in range(auctions)
    ]


def sample_first_row(generator: torch.Generator):
    """Trivial combine: sample each group's token from its first row."""

    def combine(logprobs: torch.Tensor, groups: torch.Tensor, step: int) -> torch.Tensor:
        return torch.multinomial(logprobs[:, 0].exp(), 1, generator=generator).squeeze(-1)

    return combine


def token_auction_combine(generator: torch.Generator, agents: int, device: torch.device):
    """The real linear second-price token-auction step (rows are the advertisers; p_0 = row 0)."""
    rule = TokenAuctionRule()
    bids = torch.linspace(0.5, 1.5, agents, dtype=torch.float64, device=device)
    check_bids(bids)  # once, as the platform checks a decode's bids

    def combine(logprobs: torch.Tensor, groups: torch.Tensor, step: int) -> torch.Tensor:
        reported = torch.cat([logprobs[:, :1], logprobs], dim=1)
        sampling = SamplingSegments((len(groups),), (generator,))
        outcome = token_auction_step(reported, None, bids.expand(len(groups), -1), rule, sampling)
        return outcome.tokens

    return combine


def benchmark_model(lm: LanguageModel, label: str, auctions: int, tokens: int, repeats: int):
    """Print one row per n: times and ratios against ``generate``."""
    device = lm.device
    for agents in (2, 4, 8):
        groups = prompt_groups(auctions, agents)
        flat = [prompt for group in groups for prompt in group]
        generator = torch.Generator(device=device).manual_seed(0)
        plain_combine = sample_first_row(generator)
        auction_combine = token_auction_combine(generator, agents, device)

        def run_generate(flat=flat):
            return lm.sample(flat, tokens, seed=0, stop_at_eos=False)

        def run_loop(groups=groups, combine=plain_combine):
            return decode_combined(lm, groups, combine, tokens, stop_at_eos=False)

        def run_auction(groups=groups, combine=auction_combine):
            return decode_combined(lm, groups, combine, tokens, stop_at_eos=False)

        plain = median_seconds(run_generate, device, repeats)
        loop = median_seconds(run_loop, device, repeats)
        auction = median_seconds(run_auction, device, repeats)
        print(
            f"{label:<16} n={agents:<2} B={auctions:<3} rows={auctions * agents:<4} T={tokens:<3} "
            f"generate={plain * 1e3:8.1f} ms  loop={loop * 1e3:8.1f} ms  "
            f"auction={auction * 1e3:8.1f} ms  loop/generate={loop / plain:5.2f}  "
            f"auction/generate={auction / plain:5.2f}",
            flush=True,
        )


def gpt2_small_shaped(tokenizer_source: LanguageModel, device: torch.device) -> LanguageModel:
    """A randomly initialised GPT-2-small-shaped model (tokenizer borrowed from the tiny LM)."""
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=50257,
        n_positions=1024,
        n_embd=768,
        n_layer=12,
        n_head=12,
        eos_token_id=tokenizer_source.eos_token_id,
        pad_token_id=tokenizer_source.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    if device.type == "cuda":
        model = model.to(torch.bfloat16)
    return LanguageModel(model.to(device), tokenizer_source.tokenizer, name="random-gpt2-small")


def main() -> None:
    """Run every benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="fewer tokens and repeats")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 2 if args.quick else 3
    tiny = LanguageModel.load("bundled:tiny-ads", device=args.device)
    print(f"device={tiny.device} threads={torch.get_num_threads()} torch={torch.__version__}")
    benchmark_model(tiny, "tiny-ads", auctions=8, tokens=24, repeats=repeats)
    large_auctions = 16 if tiny.device.type == "cuda" else 2
    benchmark_model(
        gpt2_small_shaped(tiny, tiny.device),
        "gpt2-small-shape",
        auctions=large_auctions,
        tokens=8 if args.quick else 16,
        repeats=repeats,
    )
    scenario = load_scenario(
        ROOT / "scenarios" / "hawaii.toml", ["rounds=20" if args.quick else "rounds=60"]
    )
    result = run_scenario(scenario, lm=tiny)
    print(
        f"hawaii scenario: {result.summary['rounds_per_second']:.2f} rounds/s "
        f"({scenario.rounds} rounds, 2 advertisers + user row, linear second price)"
    )


if __name__ == "__main__":
    main()
