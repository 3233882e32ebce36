"""CUDA checks (skipped without a GPU): the same computations on CUDA as on CPU."""

import dataclasses

import numpy as np
import polars as pl
import pytest
import torch

from market_sim.lm.model import LanguageModel
from market_sim.mechanisms.token_auction import TokenAuctionRule, run_token_auction_step
from market_sim.run import run_replicates, run_scenario

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_logprobs_on_cuda_match_cpu(random_model_dir, random_lm):
    cuda_lm = LanguageModel.load(str(random_model_dir), device="cuda", dtype="float32")
    prompts = ["Query: vacation in Hawaii\nReply:", "Sponsor: Beta Resort.\nQuery: Maui\nReply:"]
    torch.testing.assert_close(
        cuda_lm.next_token_logprobs(prompts).cpu(),
        random_lm.next_token_logprobs(prompts),
        atol=1e-4,
        rtol=0,
    )


def test_auction_step_on_cuda_matches_cpu():
    generator = torch.Generator().manual_seed(0)
    logprobs = torch.log_softmax(torch.randn(4, 3, 50, generator=generator), -1)
    bids = torch.rand(4, 2, generator=generator, dtype=torch.float64)
    for aggregation in ("linear", "log_linear"):
        rule = TokenAuctionRule(aggregation=aggregation, platform_weight=0.2)
        cpu = run_token_auction_step(logprobs, logprobs[:, 1:], bids, rule)
        gpu = run_token_auction_step(
            logprobs.cuda(),
            logprobs[:, 1:].cuda(),
            bids.cuda(),
            rule,
            torch.Generator(device="cuda").manual_seed(0),
        )
        torch.testing.assert_close(gpu.payments.cpu(), cpu.payments)
        torch.testing.assert_close(gpu.true_allocations.cpu(), cpu.true_allocations)


def cuda_batched_scenario(model_dir, auctions_per_round: int):
    """The batched-rounds test scenario with its model on CUDA."""
    from test_batched_rounds import batched_scenario

    scenario = batched_scenario(model_dir, auctions_per_round)
    return dataclasses.replace(scenario, model=dataclasses.replace(scenario.model, device="cuda"))


def test_batched_rounds_on_cuda_conserve_money_and_repeat(random_model_dir):
    scenario = cuda_batched_scenario(random_model_dir, 8)
    first, second = run_scenario(scenario), run_scenario(scenario)
    assert first.summary["device"].startswith("cuda")
    assert first.rounds["text"].to_list() == second.rounds["text"].to_list()
    assert first.agents["payment"].to_list() == second.agents["payment"].to_list()
    paid = first.agents.group_by("round", "auction").agg(pl.col("payment").sum().alias("paid"))
    joined = first.rounds.join(paid, on=["round", "auction"])
    # revenue is the sum of the same float64 payments
    np.testing.assert_allclose(joined["revenue"], joined["paid"], rtol=1e-12, atol=1e-12)


def test_replicates_on_cuda_equal_separate_runs(random_model_dir):
    scenario = cuda_batched_scenario(random_model_dir, 4)
    together = run_replicates(scenario, [5, 6])
    for seed, replicate in zip((5, 6), together, strict=True):
        alone = run_scenario(dataclasses.replace(scenario, seed=seed))
        assert replicate.rounds["text"].to_list() == alone.rounds["text"].to_list()
        # within 1e-6 in valuation units: batch composition may move float32 logits by an ulp
        np.testing.assert_allclose(
            replicate.agents["payment"], alone.agents["payment"], rtol=1e-6, atol=1e-6
        )
