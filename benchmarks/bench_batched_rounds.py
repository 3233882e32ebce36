"""Auctions per second against K, the auctions a round runs as one batch, measured in one run.

For each model and each K, times one round of the market's platform
(:meth:`market_sim.platform.token_auction.TokenAuctionPlatform.run_auctions`: linear
second-price token auction, 2 advertisers + the user row, counterfactual recording on, as in a
learning run) on K auctions, and the floor: plain batched sampling
(:meth:`market_sim.lm.model.LanguageModel.sample`) of the same K x (n + 1) rows for the same
number of new tokens. Printed: auctions/s, the speed-up over K = 1, and round time / floor time.

Models: the bundled tiny LM; a randomly initialised GPT-2-small-shaped model (12 layers, width
768, vocabulary 50,257); a randomly initialised Llama-architecture model of about 135M
parameters (30 layers, width 576, 9 heads, 3 KV heads, vocabulary 49,152). Random models borrow
the tiny LM's tokenizer; nothing is downloaded. On CUDA every model runs in bfloat16 (the
bundled LM too: bfloat16 is the default dtype on CUDA, ``model.dtype`` in a scenario).

Queries: ``pool`` cycles 3 queries, as a scenario draws a round's K queries from a small pool;
the auctions of the same query then share the forward over their prompts
(:func:`market_sim.lm.decoding.decode_combined`), which plain ``generate`` (the floor) does not.
``distinct`` gives every auction its own query, so nothing is shared.

The tiny LM's replies may end at EOS before ``--tokens`` (the round stops there, the floor does
not), so its round/floor ratio can fall below 1, and at T = 24 its K = 1 reply (10 tokens) is
shorter than the K = 64 mean (16.7): auctions/s then understates the gain per token. The random
models practically never emit EOS.

Measured on a quiet 2-core CPU, one torch thread, one run (speed-up of auctions/s over K = 1;
round / floor at K = 64); a later, faster 2-core machine gave the tiny LM's pooled K = 64 8.8x to
9.2x in three runs (README):

* tiny LM, T = 4, pool: K = 8 4.8x, K = 64 11.3x (0.56), K = 256 13.2x; distinct: 3.8x, 5.7x
  (0.99), 4.4x. T = 24, pool: 1.9x, 4.3x (0.67), 5.1x; distinct: 2.4x, 4.5x (0.79).
* random GPT-2-small shape, T = 4, pool: K = 8 3.4x, K = 64 5.8x (0.40); distinct: 2.4x, 2.3x
  (1.14). Llama ~135M shape, pool: 3.2x, 6.2x (0.41); distinct: 2.3x, 2.7x (1.04).

Without shared prompts the floor bounds the round: plain batched ``generate`` of the same rows
gains only about 4x to 7x from K = 1 to 64 on 2 cores, because the forward is compute-bound
there (GPT-2-small's K = 1 already costs 0.6 s).

Run: ``python benchmarks/bench_batched_rounds.py [--device cuda] [--tokens 4] [--repeats 1]
[--passes 1] [--ks 1,8,64,256] [--large-ks 1,8,64] [--models tiny,gpt2,llama]
[--queries pool,distinct]`` (one torch thread unless ``--threads``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from market_sim.lm.model import LanguageModel
from market_sim.mechanisms.token_auction import TokenAuctionRule
from market_sim.platform.base import Bidder, Report
from market_sim.platform.token_auction import TokenAuctionPlatform
from market_sim.prompting import build_prompt

QUERIES = ["vacation in Hawaii", "family trip to Maui", "cheap flights to Honolulu"]
CONTEXTS = ["Alpha Airlines: nonstop flights to Hawaii.", "Beta Resort: beachfront rooms on Maui."]


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


MIN_TIMED_SECONDS = 1.0
"""Cheap configurations are repeated until this much time was timed (K = 1 of the tiny LM
takes ~25 ms: three runs gave medians from 27 to 50 ms on a quiet machine)."""


def median_seconds(action: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of at least ``repeats`` runs and ``MIN_TIMED_SECONDS`` (no warm-up)."""
    times: list[float] = []
    while len(times) < repeats or sum(times) < MIN_TIMED_SECONDS:
        synchronize(device)
        started = time.perf_counter()
        action()
        synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def round_queries(auctions: int, distinct: bool) -> list[str]:
    """K queries: the 3 of ``QUERIES`` in turn, or (``distinct``) a different one per auction.

    A scenario draws its K queries from a pool (5 in ``learning_token_auction.toml``), so most
    of a round's auctions repeat a prompt and share its prefill; ``distinct`` numbers each
    query (``"vacation in Hawaii 0017"``), the case where nothing is shared.
    """
    if distinct:
        return [f"{QUERIES[a % len(QUERIES)]} {a:04d}" for a in range(auctions)]
    return [QUERIES[a % len(QUERIES)] for a in range(auctions)]


def round_inputs(auctions: int, distinct: bool = False) -> tuple[list[str], list[list[Bidder]]]:
    """K queries (:func:`round_queries`) and their bidders (truthful bids 0.8 and 1.2)."""
    queries = round_queries(auctions, distinct)
    bidders = [
        [Bidder(context, Report(bid)) for context, bid in zip(CONTEXTS, (0.8, 1.2), strict=True)]
        for _ in range(auctions)
    ]
    return queries, bidders


def floor_rows(queries: Sequence[str]) -> list[str]:
    """The K x (n + 1) prompts of the same auctions (user row + one per advertiser)."""
    return [
        prompt
        for query in queries
        for prompt in [build_prompt(query)] + [build_prompt(query, [c]) for c in CONTEXTS]
    ]


def benchmark_model(
    lm: LanguageModel,
    label: str,
    ks: Sequence[int],
    tokens: int,
    repeats: int,
    distinct: bool,
    passes: int = 1,
):
    """Print one row per K: auctions/s, speed-up over the first K, and round / floor time.

    Every K is warmed up once, then timed in ``passes`` passes that each time every K in turn,
    so that a machine whose speed drifts (a shared 2-core machine's K = 1 round wandered from
    10 to 16 ms within minutes) moves the K = 1 and K = 64 times of a pass alike. The speed-up
    is computed within each pass (auctions/s of K over auctions/s of the first K, both measured
    minutes apart at most); printed: its median over the passes and, with more than one pass,
    its range.
    """
    platform = TokenAuctionPlatform(lm, TokenAuctionRule(), max_new_tokens=tokens)
    label = f"{label}{' distinct' if distinct else ' pool'}"
    actions = []
    for k in ks:
        queries, bidders = round_inputs(k, distinct)
        rows = floor_rows(queries)

        def run_round(queries=queries, bidders=bidders):
            return platform.run_auctions(queries, bidders, seed=0)

        def run_floor(rows=rows):
            return lm.sample(rows, tokens, seed=0, stop_at_eos=False)

        run_round()
        run_floor()
        actions.append((k, len(rows), run_round, run_floor))
    round_times: dict[int, list[float]] = {k: [] for k in ks}
    floor_times: dict[int, list[float]] = {k: [] for k in ks}
    for _ in range(passes):
        for k, _rows, run_round, run_floor in actions:
            round_times[k].append(median_seconds(run_round, lm.device, repeats))
            floor_times[k].append(median_seconds(run_floor, lm.device, repeats))
    base = ks[0]
    for k, row_count, run_round, _run_floor in actions:
        speedups = [
            (k / round_seconds) / (base / base_seconds)
            for round_seconds, base_seconds in zip(round_times[k], round_times[base], strict=True)
        ]
        round_seconds = statistics.median(round_times[k])
        floor_seconds = statistics.median(floor_times[k])
        spread = f" ({min(speedups):.2f}-{max(speedups):.2f})" if passes > 1 else ""
        mean_tokens = statistics.mean(len(o.token_ids) for o in run_round())
        print(
            f"{label:<27} K={k:<4} rows={row_count:<5} T={tokens:<3} "
            f"round={round_seconds * 1e3:9.1f} ms  floor={floor_seconds * 1e3:9.1f} ms  "
            f"auctions/s={k / round_seconds:9.1f}  vs K={base}: "
            f"{statistics.median(speedups):6.2f}x{spread}  "
            f"round/floor={round_seconds / floor_seconds:5.2f}  "
            f"mean reply tokens={mean_tokens:.1f}",
            flush=True,
        )


def random_model(kind: str, tokenizer_source: LanguageModel, device: torch.device) -> LanguageModel:
    """A randomly initialised GPT-2-small-shaped or ~135M Llama-architecture model."""
    torch.manual_seed(0)
    special = {
        "eos_token_id": tokenizer_source.eos_token_id,
        "pad_token_id": tokenizer_source.pad_token_id,
    }
    if kind == "gpt2":
        config = GPT2Config(
            vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, **special
        )
        model = GPT2LMHeadModel(config)
    else:
        config = LlamaConfig(
            vocab_size=49152,
            hidden_size=576,
            intermediate_size=1536,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            max_position_embeddings=2048,
            tie_word_embeddings=True,
            **special,
        )
        model = LlamaForCausalLM(config)
    if device.type == "cuda":
        model = model.to(torch.bfloat16)
    model.eval()
    name = "random-gpt2-small" if kind == "gpt2" else "random-llama-135m"
    return LanguageModel(model.to(device), tokenizer_source.tokenizer, name=name)


def parse_ks(text: str) -> list[int]:
    """``1,8,64`` -> [1, 8, 64]."""
    return [int(part) for part in text.split(",") if part]


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=4, help="new tokens per reply")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per K and pass")
    parser.add_argument(
        "--passes", type=int, default=1, help="passes over all K (speed-up: median over passes)"
    )
    parser.add_argument("--ks", default="1,8,64,256", help="K values for the tiny LM")
    parser.add_argument("--large-ks", default=None, help="K values for the random models")
    parser.add_argument("--models", default="tiny,gpt2,llama")
    parser.add_argument(
        "--queries",
        default="pool,distinct",
        help="pool (3 queries in turn), distinct (one per auction), or both",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tiny = LanguageModel.load("bundled:tiny-ads", device=args.device)
    device = tiny.device
    large_ks = args.large_ks or ("1,8,64,256" if device.type == "cuda" else "1,8,64")
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__}")
    models = args.models.split(",")
    modes = [mode == "distinct" for mode in args.queries.split(",")]
    if "tiny" in models:
        for distinct in modes:
            benchmark_model(
                tiny,
                "tiny-ads",
                parse_ks(args.ks),
                args.tokens,
                args.repeats,
                distinct,
                args.passes,
            )
    for kind in ("gpt2", "llama"):
        if kind in models:
            lm = random_model(kind, tiny, device)
            params = sum(p.numel() for p in lm.model.parameters()) / 1e6
            label = f"{lm.name}({params:.0f}M)"
            for distinct in modes:
                benchmark_model(
                    lm, label, parse_ks(large_ks), args.tokens, args.repeats, distinct, args.passes
                )


if __name__ == "__main__":
    main()
