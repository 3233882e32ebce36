"""CUDA checks (skipped without a GPU): the same computations on CUDA as on CPU."""

import pytest
import torch

from market_sim.lm.model import LanguageModel
from market_sim.mechanisms.token_auction import TokenAuctionRule, run_token_auction_step

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
