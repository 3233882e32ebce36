r"""The token auction on a real LM: one cached decode of A auctions x (n + 1) prompts.

Per auction the rows are the user's prompt (query only, :math:`p_0`) and each advertiser's prompt
(its context + query), all sharing the generated prefix. At every step the mechanism
(:func:`market_sim.mechanisms.token_auction.token_auction_step`) aggregates the REPORTED
distributions (advertiser i reports :math:`\tilde p_i \propto p_i^{s_i}`, :math:`s_i` its
``report_scale``), samples the token, and prices it; allocations for values use the TRUE
:math:`p_i`. A sequence's allocation and payment are sums over its tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from market_sim.lm.decoding import decode_combined
from market_sim.lm.model import LanguageModel
from market_sim.mechanisms.token_auction import (
    SamplingSegments,
    TokenAuctionRule,
    check_bids,
    sharpen,
    token_auction_step,
)
from market_sim.mechanisms.token_auction_counterfactual import TokenAuctionCounterfactual
from market_sim.platform.base import (
    AuctionBatch,
    AuctionOutcome,
    Bidder,
    CounterfactualValues,
    Report,
    ReportBatch,
    check_batch,
)
from market_sim.platform.report_spaces import SHARPEN

"""Sharpening exponents a deviation search or learner grid tries by default."""


class TokenAuctionRoundCounterfactual:
    """The :class:`~market_sim.platform.base.Counterfactual` of one token auction.

    See :mod:`market_sim.mechanisms.token_auction_counterfactual` for what is held fixed.
    """

    def __init__(self, engine: TokenAuctionCounterfactual) -> None:
        self.engine = engine

    def evaluate(self, agent: int, reports: ReportBatch | Sequence[Report]) -> CounterfactualValues:
        """Summed true allocation and payment of ``agent`` under each report."""
        batch = ReportBatch.of(reports)
        bids = torch.from_numpy(batch.bid)
        exponents = torch.from_numpy(batch.report_scale).float()
        result = self.engine.evaluate(agent, bids, exponents)
        return CounterfactualValues(
            allocations=result.true_allocations.cpu().numpy().astype(np.float64),
            payments=result.payments.cpu().numpy().astype(np.float64),
        )


class TokenAuctionPlatform:
    """Token auctions decoded on a language model.

    Args:
        lm: The platform language model.
        rule: Aggregation, payment, settlement and platform weight.
        max_new_tokens: Reply length cap.
        temperature: Sampling temperature applied to every row's distribution (the
            advertisers' true preferences are the tempered distributions too).
        counterfactuals: Keep each step's distributions so that outcomes carry a
            counterfactual (needed by full-information learners and regret measurement; costs
            ``steps x (n + 1) x V`` floats per auction until the outcome is dropped).
    """

    kind = "token_auction"
    report_space = SHARPEN

    def __init__(
        self,
        lm: LanguageModel,
        rule: TokenAuctionRule,
        max_new_tokens: int = 24,
        temperature: float = 1.0,
        counterfactuals: bool = True,
    ) -> None:
        self.lm = lm
        self.rule = rule
        # ex post: a round charges its sampled critical bid, the counterfactual the expectation
        self.counterfactual_is_realized = rule.settlement != "ex_post"
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.counterfactuals = counterfactuals

    def run_auctions(
        self, queries: Sequence[str], bidders: Sequence[Sequence[Bidder]], seed: int
    ) -> list[AuctionOutcome]:
        """Run A token auctions as one batched decode (see :class:`Platform`)."""
        return self.run_auction_groups([AuctionBatch(queries, bidders, seed)])[0]

    def run_auction_groups(self, batches: Sequence[AuctionBatch]) -> list[list[AuctionOutcome]]:
        """Run several seeded batches of auctions in ONE decode (replicate markets in lockstep).

        Every batch keeps its own torch generator, seeded with its seed, and every step samples
        each batch's live auctions with its own generator, in the order a separate
        :meth:`run_auctions` call of that batch would; the LM forward and the float64 pricing
        of a step are shared by all batches. A batch's outcomes therefore equal a separate
        call's up to the float32 rounding of logits computed in a larger (differently padded)
        batch, and the float64 rounding of pricing more rows at once (nothing on one CPU
        thread with the bundled LM; about 1e-16 on CPU with several threads and a large
        vocabulary, and 1.4e-14 measured on an H200, where reductions split differently).

        Device: bids, payments and totals stay float64 and the distributions float32 on the
        LM's device for the whole decode. The host reads, per step, which batches still have
        live auctions (with more than one batch) and what sampling, sharpened reports and
        log-linear second-price payments need (the exponents' check and overflow flag; the
        ladder's panel count); the bids are checked once, before the first token; the totals
        are read once, after the last.

        Args:
            batches: R batches of auctions, each with its own seed.

        Returns:
            R lists of outcomes, in order.
        """
        for batch in batches:
            check_batch(batch.queries, batch.bidders)
        queries = [query for batch in batches for query in batch.queries]
        bidders = [group for batch in batches for group in batch.bidders]
        if not queries:
            return [[] for _ in batches]
        device = self.lm.device
        auction_count, agent_count = len(queries), len(bidders[0])
        prompts = [
            [self.lm.prompt(query)] + [self.lm.prompt(query, [b.context]) for b in group]
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
        sizes = [len(batch.queries) for batch in batches]
        owner = torch.repeat_interleave(
            torch.arange(len(batches), device=device), torch.tensor(sizes, device=device)
        )
        starts = [sum(sizes[:b]) for b in range(len(batches))]
        truthful = [
            bool((exponents[start : start + size] == 1.0).all())
            for start, size in zip(starts, sizes, strict=True)
        ]
        generators = [torch.Generator(device=device).manual_seed(batch.seed) for batch in batches]
        totals = {
            name: torch.zeros((auction_count, agent_count), dtype=torch.float64, device=device)
            for name in ("true", "reported", "payment")
        }
        user_total = torch.zeros(auction_count, dtype=torch.float64, device=device)
        step_records: list[tuple[torch.Tensor, torch.Tensor]] = []

        check_bids(bids)  # once: the bids do not change while the replies are decoded

        def combine(logprobs: torch.Tensor, groups: torch.Tensor, step: int) -> torch.Tensor:
            """One step of the live auctions ``groups``: ``[a]`` tokens.

            Every batch's rows are priced in one call; each batch samples its own rows with its
            own generator (:class:`SamplingSegments`).
            """
            if self.temperature != 1.0:
                logprobs = torch.log_softmax(logprobs / self.temperature, dim=-1)
            if self.counterfactuals:
                step_records.append((groups.clone(), logprobs.float().clone()))
            if len(batches) == 1:
                present, counts = [0], [int(groups.shape[0])]
            else:
                # one host read per step: which live auctions belong to which batch
                present_tensor, count_tensor = torch.unique_consecutive(
                    owner[groups], return_counts=True
                )
                present, counts = present_tensor.tolist(), count_tensor.tolist()
                if len(set(present)) != len(present):  # decode_combined keeps groups in order
                    raise RuntimeError(f"a batch's live auctions are not contiguous: {present}")
            sampling = SamplingSegments(counts, [generators[batch] for batch in present])
            if all(truthful[batch] for batch in present):
                reported, true_logprobs = logprobs, None
            else:  # rows with exponent 1 come out of sharpen unchanged, bit for bit
                true_logprobs = logprobs[:, 1:]
                reported = torch.cat(
                    [logprobs[:, :1], sharpen(true_logprobs, exponents[groups])], dim=1
                )
            outcome = token_auction_step(reported, true_logprobs, bids[groups], self.rule, sampling)
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
        step_logprobs = (
            logprobs_by_auction(step_records, auction_count)
            if self.counterfactuals
            else [None] * auction_count
        )
        counterfactuals = [
            None
            if logprobs is None
            else TokenAuctionRoundCounterfactual(
                TokenAuctionCounterfactual(logprobs, bids[a], exponents[a], self.rule)
            )
            for a, logprobs in enumerate(step_logprobs)
        ]
        outcomes = [
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
                counterfactual=counterfactuals[a],
            )
            for a, tokens in enumerate(result.tokens)
        ]
        return [outcomes[start : start + size] for start, size in zip(starts, sizes, strict=True)]


def logprobs_by_auction(
    step_records: Sequence[tuple[torch.Tensor, torch.Tensor]], auction_count: int
) -> list[torch.Tensor]:
    """Each auction's step distributions, gathered from the decode's per-step records.

    Args:
        step_records: Per step, ``(groups, logprobs)``: ``[a]`` long, the live auctions, and
            ``[a, n + 1, V]`` float32, their distributions at that step.
        auction_count: A, the auctions of the decode.

    Returns:
        A tensors ``[S_a, n + 1, V]``, auction a's distributions in step order (S_a its tokens),
        views of one tensor the size of the records (peak memory: twice the records).
    """
    groups = torch.cat([g for g, _ in step_records])
    order = torch.argsort(groups, stable=True)  # by auction, steps in order within each
    destination = torch.empty_like(order)
    destination[order] = torch.arange(len(order), device=order.device)
    first = step_records[0][1]
    gathered = first.new_empty((len(order), *first.shape[1:]))
    offset = 0
    for step_groups, logprobs in step_records:  # copied into place: no concatenated copy
        gathered.index_copy_(0, destination[offset : offset + len(step_groups)], logprobs)
        offset += len(step_groups)
    counts = torch.bincount(groups, minlength=auction_count).tolist()
    return list(gathered.split(counts))
