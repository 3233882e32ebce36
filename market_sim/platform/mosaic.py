r"""The MOSAIC-style sampling auction on a real LM (docs/design.md, section 3.2).

Per auction: M candidate replies are drawn from the proposal in ONE batched ``generate``
(``reference``: :math:`\pi_{ref}`, the LM on the query alone; ``context_aware``: the LM on the
query with every advertiser's brand context), then every (candidate, prompt) pair is scored in
batched forwards (:mod:`market_sim.platform.candidate_scoring`): :math:`\log\pi_{ref}(y_j)`,
:math:`\log\pi_{gen}(y_j)` and each advertiser's relevance :math:`s_i(y_j) \in (0, 1)`.

Reports. Advertiser i's true reward is :math:`r_i(y) = v_i\,s_i(y)`. It reports
:math:`\tilde r_i(y) = b_i\,s_i(y)^{\gamma_i}` with ``bid`` :math:`b_i` (its reported valuation;
the reward scale :math:`\alpha_i = b_i / v_i`) and ``report_scale`` :math:`\gamma_i` (an exponent
that exaggerates, :math:`\gamma > 1`, or flattens, :math:`\gamma < 1`, how much the advertiser
cares which reply is chosen). Truthful is :math:`\alpha = \gamma = 1`. The mechanism is
truthful for any reported reward vector (see the derivation in
:mod:`market_sim.mechanisms.mosaic`), so both distortions are weakly dominated on the round's
candidates; the regret estimator searches both.

Allocation, payments (:func:`market_sim.mechanisms.mosaic.run_mosaic`): the reply is
:math:`y_j` with probability :math:`q_j = \mathrm{softmax}(R/\tau + l)_j`,
:math:`l_j = \log\pi_{ref}(y_j) - \log\pi_{gen}(y_j)`; payments are
:math:`E_q[\tilde r_i] - (U(R) - U(R - \tilde r_i))` (or 0 with ``payment = "none"``).
Payments, values and utilities are EXPECTED over the final pick (the pick only chooses the
text): the value contract of :mod:`market_sim.platform.base` is ``valuation x allocation`` with
allocation :math:`E_q[s_i]`, measured with the TRUE relevance.

User value: :math:`-\tau\sum_j q_j \log(q_j / a_j)`, :math:`a_j = e^{l_j}/M`, the
regularization term of the entropy-regularized welfare the rule maximizes; with truthful
reports social welfare is then exactly that objective,
:math:`W(q) = \sum_i E_q[r_i] - \tau\,\mathrm{KL}(q \,\|\, a)` (an estimate, over the candidates,
of :math:`E_\pi[R] - \tau\,\mathrm{KL}(\pi \,\|\, \pi_{ref})`). Under the reference proposal
every :math:`a_j = 1/M`, and the user value is minus a KL divergence, :math:`\le 0`. Under the
context-aware proposal :math:`\sum_j a_j` (the importance-sampling estimate of
:math:`\sum_y \pi_{ref}(y) = 1`) is not exactly 1, and the user value is
:math:`-\tau\,\mathrm{KL}(q \,\|\, a / \textstyle\sum_k a_k) + \tau \log \sum_k a_k`: it
can be positive when the weights' sample mean exceeds 1. The unnormalized :math:`a_j` are
kept because :math:`\sum_j a_j e^{R_j / \tau}` is then an unbiased estimate of
:math:`E_{\pi_{ref}}[e^{R/\tau}]`, whose :math:`\tau \log` is the regularized optimum over all
replies.

What the counterfactual holds fixed: the candidates, their scores and the others' reports; the
advertiser's own report varies. On that "same randomness" truthful reporting is exactly optimal.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from market_sim.config.bounds import SEED_MAX
from market_sim.lm.model import LanguageModel
from market_sim.mechanisms.mosaic import (
    MosaicPayment,
    deviation_outcomes,
    importance_log_weights,
    run_mosaic,
)
from market_sim.mechanisms.options import PROPOSALS
from market_sim.platform.base import (
    AuctionOutcome,
    Bidder,
    CounterfactualValues,
    Report,
    ReportBatch,
    check_batch,
)
from market_sim.platform.candidate_scoring import (
    DEFAULT_MAX_ROWS,
    ReplySampling,
    draw_and_score,
)
from market_sim.platform.report_spaces import RELEVANCE_EXPONENT


def reported_rewards(relevance: torch.Tensor, bids: torch.Tensor, exponents: torch.Tensor):
    r""":math:`\tilde r_i(y_j) = b_i\,s_i(y_j)^{\gamma_i}`.

    Args:
        relevance: ``[..., n, M]`` relevance scores in (0, 1).
        bids: ``[..., n]`` bids :math:`b_i`.
        exponents: ``[..., n]`` exponents :math:`\gamma_i > 0`.

    Returns:
        ``[..., n, M]`` float64.
    """
    relevance = relevance.to(torch.float64)
    bids = torch.as_tensor(bids, dtype=torch.float64)
    exponents = torch.as_tensor(exponents, dtype=torch.float64)
    return bids.unsqueeze(-1) * relevance ** exponents.unsqueeze(-1)


class MosaicCounterfactual:
    """One MOSAIC auction re-run for one advertiser: candidates and the others' reports fixed.

    Args:
        relevance: ``[n, M]`` true relevance of each candidate for each advertiser.
        reported: ``[n, M]`` the round's reported rewards.
        log_weights: ``[M]`` importance log-weights.
        tau: Temperature.
        payment: ``mosaic`` or ``none``.
    """

    def __init__(
        self,
        relevance: torch.Tensor,
        reported: torch.Tensor,
        log_weights: torch.Tensor,
        tau: float,
        payment: MosaicPayment,
    ) -> None:
        self.relevance = relevance.to(torch.float64)
        self.reported = reported.to(torch.float64)
        self.log_weights = log_weights.to(torch.float64)
        self.tau = tau
        self.payment = payment

    def evaluate(self, agent: int, reports: ReportBatch | Sequence[Report]) -> CounterfactualValues:
        """Allocation :math:`E_q[s_i]` and payment of ``agent`` under each report."""
        batch = ReportBatch.of(reports)
        own = self.relevance[agent]
        deviations = reported_rewards(
            own.expand(len(batch), -1),
            torch.from_numpy(batch.bid),
            torch.from_numpy(batch.report_scale),
        )
        others = self.reported.sum(0) - self.reported[agent]
        outcome = deviation_outcomes(others, deviations, self.log_weights, self.tau, self.payment)
        return CounterfactualValues(
            allocations=(outcome.probabilities @ own).numpy(),
            payments=outcome.payments.numpy(),
        )


class MosaicPlatform:
    """MOSAIC-style sampling auctions on a language model.

    Args:
        lm: The platform language model.
        candidates: M, candidate replies per auction.
        tau: Temperature of the KL regularization.
        proposal: ``reference`` or ``context_aware``.
        payment: ``mosaic`` or ``none``.
        max_new_tokens: Reply length cap.
        temperature: Sampling temperature; every distribution (reference, proposal,
            advertisers' LMs) is taken at it.
        relevance_temperature: T of the relevance score.
        max_rows: Scoring rows per forward.
    """

    kind = "mosaic"
    report_space = RELEVANCE_EXPONENT

    def __init__(
        self,
        lm: LanguageModel,
        candidates: int = 16,
        tau: float = 1.0,
        proposal: str = "reference",
        payment: MosaicPayment = "mosaic",
        max_new_tokens: int = 24,
        temperature: float = 1.0,
        relevance_temperature: float = 1.0,
        max_rows: int = DEFAULT_MAX_ROWS,
    ) -> None:
        if proposal not in PROPOSALS:
            raise ValueError(f"proposal must be one of {', '.join(PROPOSALS)}, got {proposal!r}")
        if payment not in ("mosaic", "none"):
            raise ValueError(f"payment must be mosaic or none, got {payment!r}")
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.sampling = ReplySampling(max_new_tokens, temperature, relevance_temperature, max_rows)
        self.lm = lm
        self.candidates = candidates
        self.tau = tau
        self.proposal = proposal
        self.payment: MosaicPayment = payment

    def proposal_prompts(
        self, queries: Sequence[str], contexts: Sequence[Sequence[str]]
    ) -> list[str] | None:
        """The prompt each auction's candidates are drawn from (None: the reference prompt)."""
        if self.proposal == "reference":
            return None
        return [self.lm.prompt(q, list(c)) for q, c in zip(queries, contexts, strict=True)]

    def run_auctions(
        self, queries: Sequence[str], bidders: Sequence[Sequence[Bidder]], seed: int
    ) -> list[AuctionOutcome]:
        """Run A MOSAIC auctions (see :class:`~market_sim.platform.base.Platform`)."""
        check_batch(queries, bidders)
        if not queries:
            return []
        rng = np.random.default_rng(seed)
        contexts = [[b.context for b in group] for group in bidders]
        prompts = self.proposal_prompts(queries, contexts)
        candidates, scores = draw_and_score(
            self.lm,
            queries,
            contexts,
            self.candidates,
            self.sampling,
            int(rng.integers(SEED_MAX)),
            prompts,
        )
        log_weights = importance_log_weights(scores.reference_logprob, scores.proposal_logprob)
        bids = torch.tensor([[b.report.bid for b in g] for g in bidders], dtype=torch.float64)
        exponents = torch.tensor(
            [[b.report.report_scale for b in g] for g in bidders], dtype=torch.float64
        )
        reported = reported_rewards(scores.relevance, bids, exponents)
        outcome = run_mosaic(reported, log_weights, self.tau, payment=self.payment)
        probabilities = outcome.probabilities
        allocations = (probabilities.unsqueeze(1) * scores.relevance).sum(-1)
        reported_shape = scores.relevance ** exponents.unsqueeze(-1)
        reported_allocations = (probabilities.unsqueeze(1) * reported_shape).sum(-1)
        reference_mass = log_weights - np.log(self.candidates)  # log a_j
        regularizer = (probabilities * (torch.log(probabilities) - reference_mass)).nan_to_num()
        user_values = -self.tau * regularizer.sum(-1)
        results = []
        for a in range(len(queries)):
            q = probabilities[a].numpy()
            pick = int(rng.choice(len(q), p=q / q.sum()))
            tokens = candidates[a][pick]
            distinct = len({tuple(c) for c in candidates[a]})
            results.append(
                AuctionOutcome(
                    text=self.lm.decode(tokens).strip(),
                    token_ids=tokens,
                    allocations=allocations[a].numpy(),
                    reported_allocations=reported_allocations[a].numpy(),
                    payments=outcome.payments[a].numpy(),
                    user_value=float(user_values[a]),
                    extras={
                        "n_tokens": float(len(tokens)),
                        "stopped_at_eos": float(len(tokens) < self.sampling.max_new_tokens),
                        "candidates": float(self.candidates),
                        "distinct_candidates": float(distinct),
                        "effective_candidates": float(1.0 / (probabilities[a] ** 2).sum()),
                        "chosen_candidate": float(pick),
                    },
                    counterfactual=MosaicCounterfactual(
                        scores.relevance[a], reported[a], log_weights[a], self.tau, self.payment
                    ),
                )
            )
        return results
