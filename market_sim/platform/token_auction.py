r"""The token auction on a real LM: one cached decode of A auctions x (n + 1) prompts.

Per auction the rows are the user's prompt (query only, :math:`p_0`) and each advertiser's prompt
(its context + query), all sharing the generated prefix. At every step the mechanism
(:func:`market_sim.mechanisms.token_auction.run_token_auction_step`) aggregates the REPORTED
distributions (advertiser i reports :math:`\tilde p_i \propto p_i^{s_i}`, :math:`s_i` its
``report_scale``), samples the token, and prices it; allocations for values use the TRUE
:math:`p_i`. A sequence's allocation and payment are sums over its tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from market_sim.lm.decoding import decode_combined
from market_sim.lm.model import LanguageModel
from market_sim.mechanisms.token_auction import TokenAuctionRule, run_token_auction_step
from market_sim.platform.base import AuctionOutcome, Bidder
from market_sim.prompting import build_prompt


def sharpen(logprobs: torch.Tensor, exponents: torch.Tensor) -> torch.Tensor:
    r"""Reported distribution :math:`\tilde p \propto p^{s}`.

    Args:
        logprobs: ``[A, n, V]`` log-probabilities.
        exponents: ``[A, n]`` sharpening exponents s > 0 (1 = unchanged).

    Returns:
        ``[A, n, V]`` log-probabilities.
    """
    return torch.log_softmax(logprobs * exponents.unsqueeze(-1), dim=-1)


class TokenAuctionPlatform:
    """Token auctions decoded on a language model.

    Args:
        lm: The platform language model.
        rule: Aggregation, payment, settlement and platform weight.
        max_new_tokens: Reply length cap.
        temperature: Sampling temperature applied to every row's distribution (the
            advertisers' true preferences are the tempered distributions too).
    """

    kind = "token_auction"

    def __init__(
        self,
        lm: LanguageModel,
        rule: TokenAuctionRule,
        max_new_tokens: int = 24,
        temperature: float = 1.0,
    ) -> None:
        self.lm = lm
        self.rule = rule
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature

    def run_auctions(
        self, queries: Sequence[str], bidders: Sequence[Sequence[Bidder]], seed: int
    ) -> list[AuctionOutcome]:
        """Run A token auctions as one batched decode (see :class:`Platform`)."""
        if len(queries) != len(bidders):
            raise ValueError("one list of bidders per query is required")
        if not queries:
            return []
        device = self.lm.device
        auction_count, agent_count = len(queries), len(bidders[0])
        prompts = [
            [build_prompt(query)] + [build_prompt(query, [b.context]) for b in group]
            for query, group in zip(queries, bidders, strict=True)
        ]
        bids = torch.tensor(
            [[b.report.bid for b in group] for group in bidders], dtype=torch.float64, device=device
        )
        exponents = torch.tensor(
            [[b.report.report_scale for b in group] for group in bidders],
            dtype=torch.float32,
            device=device,
        )
        all_truthful = bool((exponents == 1.0).all())
        generator = torch.Generator(device=device).manual_seed(seed)
        totals = {
            name: torch.zeros((auction_count, agent_count), dtype=torch.float64, device=device)
            for name in ("true", "reported", "payment")
        }
        user_total = torch.zeros(auction_count, dtype=torch.float64, device=device)

        def combine(logprobs: torch.Tensor, groups: torch.Tensor, step: int) -> torch.Tensor:
            if self.temperature != 1.0:
                logprobs = torch.log_softmax(logprobs / self.temperature, dim=-1)
            if all_truthful:
                reported, true_logprobs = logprobs, None
            else:
                true_logprobs = logprobs[:, 1:]
                reported = torch.cat(
                    [logprobs[:, :1], sharpen(true_logprobs, exponents[groups])], dim=1
                )
            outcome = run_token_auction_step(
                reported, true_logprobs, bids[groups], self.rule, generator
            )
            totals["true"].index_add_(0, groups, outcome.true_allocations)
            totals["reported"].index_add_(0, groups, outcome.reported_allocations)
            totals["payment"].index_add_(0, groups, outcome.payments)
            user_total.index_add_(0, groups, outcome.user_allocations)
            return outcome.tokens

        result = decode_combined(self.lm, prompts, combine, self.max_new_tokens)
        true_alloc = totals["true"].cpu().numpy()
        reported_alloc = totals["reported"].cpu().numpy()
        payments = totals["payment"].cpu().numpy()
        user_values = user_total.cpu().numpy()
        return [
            AuctionOutcome(
                text=self.lm.decode(tokens).strip(),
                token_ids=tokens,
                allocations=true_alloc[a],
                reported_allocations=reported_alloc[a],
                payments=payments[a],
                user_value=float(user_values[a]),
                extras={
                    "n_tokens": float(len(tokens)),
                    "stopped_at_eos": float(result.stopped_at_eos[a]),
                },
            )
            for a, tokens in enumerate(result.tokens)
        ]
