r"""The affine maximizer over real LM parameters (docs/design.md, section 3.4).

The policy space is a finite grid of language models: per-group fine-tuned copies of the
platform LM and the weight interpolations between them and the base. It is built once, the
first time the platform sees its groups (their brand contexts define the reward models):

1. Reward model of group i: :math:`rm_i(x, y) = s_i(y)`, the relevance of reply y to query x
   for group i's brand context (:mod:`market_sim.platform.candidate_scoring`), in (0, 1). No
   normalization: over text there is no finite row to normalize.
2. Fine-tuning: one copy per group by KL-regularized reward-weighted regression toward
   :math:`\pi_i^* \propto \pi_{init}\,e^{rm_i/\beta}` on the scenario's query pool
   (:func:`market_sim.lm.fine_tune.reward_weighted_fine_tune`).
3. Grid: the interpolations :math:`\theta = \sum_k c_k \theta_k` over (base, copies) with
   coefficients on a simplex grid of resolution ``grid_resolution``
   (:class:`market_sim.lm.fine_tune.InterpolatedPolicies`).
4. Estimates, per grid point g and query x, from ``grid_samples`` replies sampled from
   :math:`\pi_g(\cdot|x)`: valuations :math:`V_{g,i}(x)` = the mean of :math:`rm_i` over the
   samples and the divergence :math:`D_g(x) \approx D_f(\pi_g \| \pi_{init})` by the Monte
   Carlo estimators of :func:`market_sim.lm.fine_tune.divergence_estimates`.

Per round (query x): group i reports its size :math:`\tilde w_i` (``bid``) and a distortion
scale (``report_scale``; :func:`market_sim.mechanisms.affine_misreports.distorted_valuations`);
the rule picks :math:`g^* = \arg\max_g \sum_i \tilde w_i \tilde V_{g,i}(x) - D_g(x)` and charges
:math:`p_i = \max_g A_{-i}(g) - A_{-i}(g^*)` (or nothing), both over the same grid
(:func:`market_sim.mechanisms.affine_maximizer.run_grid_affine_maximizer`). The reply is one of
the chosen policy's samples for x, drawn uniformly (each is a draw from :math:`\pi_{g^*}`).
Allocation is :math:`V_{g^*,i}(x)` (true), user value :math:`-D_{g^*}(x)`.

The estimates are the mechanism's inputs: truthfulness holds exactly with respect to them (any
fixed set of candidate policies gives a DSIC affine maximizer); how well they approximate the
true valuations and divergences depends on ``grid_samples`` (the chi-squared estimate is
heavy-tailed for policies far from the base). Decisions are per query: the platform serves
query x with the grid policy that maximizes the affine welfare on x.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from market_sim.config.bounds import SEED_MAX_31_BIT
from market_sim.lm.fine_tune import (
    FineTuneConfig,
    InterpolatedPolicies,
    PolicySamples,
    divergence_estimates,
    reward_weighted_fine_tune,
    sample_policy,
)
from market_sim.lm.model import LanguageModel
from market_sim.mechanisms.affine_maximizer import (
    AffinePayment,
    Divergence,
    run_grid_affine_maximizer,
)
from market_sim.mechanisms.affine_misreports import GroupDistortion, distorted_valuations
from market_sim.platform.affine_maximizer import AffineRule
from market_sim.platform.base import (
    AuctionOutcome,
    Bidder,
    CounterfactualValues,
    Report,
    ReportBatch,
    check_batch,
)
from market_sim.platform.candidate_scoring import DEFAULT_MAX_ROWS, ReplySampling, score_replies


@dataclass(frozen=True)
class PolicyGrid:
    """The estimated grid of one set of groups.

    Attributes:
        coefficients: ``[G, n + 1]`` interpolation coefficients over (base, group copies).
        valuations: ``[X, G, n]`` :math:`V_{g,i}(x)` per query of the pool.
        divergences: ``[X, G]`` :math:`D_g(x)`.
        replies: ``replies[x][g]``: the replies sampled at grid point g for query x.
    """

    coefficients: np.ndarray
    valuations: np.ndarray
    divergences: np.ndarray
    replies: list[list[list[list[int]]]]


class GridCounterfactual:
    """One grid auction re-run for one group: the grid estimates and others' reports fixed.

    Args:
        valuations: ``[G, n]`` true valuations for the round's query.
        divergences: ``[G]``.
        weights: ``[n]`` reported sizes.
        scales: ``[n]`` reported distortion scales.
        rule: Payment and what the scale distorts (the divergence is in ``divergences``).
    """

    def __init__(
        self,
        valuations: np.ndarray,
        divergences: np.ndarray,
        weights: np.ndarray,
        scales: np.ndarray,
        rule: AffineRule,
    ) -> None:
        self.valuations = valuations
        self.divergences = divergences
        self.weights = weights
        self.scales = scales
        self.rule = rule

    def evaluate(self, agent: int, reports: ReportBatch | Sequence[Report]) -> CounterfactualValues:
        """Allocation :math:`V_{g^*,i}` and payment of ``agent`` under each report."""
        batch = ReportBatch.of(reports)
        scales = np.repeat(self.scales[None], len(batch), axis=0)
        scales[:, agent] = batch.report_scale
        weights = np.repeat(self.weights[None], len(batch), axis=0)
        weights[:, agent] = batch.bid
        reported = distorted_valuations(
            np.broadcast_to(self.valuations, (len(batch), *self.valuations.shape)),
            scales,
            self.rule.group_distortion,
        )
        outcome = run_grid_affine_maximizer(
            reported, self.divergences, weights, self.rule.payment, true_valuations=self.valuations
        )
        return CounterfactualValues(
            allocations=outcome.valuations[:, agent], payments=outcome.payments[:, agent]
        )


class FineTunedAffineMaximizerPlatform:
    r"""The affine maximizer over a grid of fine-tuned and interpolated LMs.

    Args:
        lm: The platform language model (:math:`\pi_{init}`).
        queries: The query pool the copies are fine-tuned and the grid estimated on.
        divergence: ``kl``, ``chi2`` or ``tv``.
        regularization: :math:`\lambda > 0`.
        payment: ``affine_maximizer`` or ``none``.
        group_distortion: What ``report_scale`` distorts.
        fine_tune: Settings of each group's fine-tuning run.
        grid_resolution: Simplex grid resolution over (base, copies).
        grid_samples: Replies per query sampled at each grid point.
        max_new_tokens: Reply length cap.
        temperature: Sampling temperature.
        relevance_temperature: T of the relevance score.
        max_rows: Scoring rows per forward.
    """

    kind = "affine_maximizer"

    def __init__(
        self,
        lm: LanguageModel,
        queries: Sequence[str],
        divergence: Divergence = "kl",
        regularization: float = 1.0,
        payment: AffinePayment = "affine_maximizer",
        group_distortion: GroupDistortion = "reward_scale",
        fine_tune: FineTuneConfig | None = None,
        grid_resolution: int = 2,
        grid_samples: int = 32,
        max_new_tokens: int = 24,
        temperature: float = 1.0,
        relevance_temperature: float = 1.0,
        max_rows: int = DEFAULT_MAX_ROWS,
    ) -> None:
        self.queries = list(dict.fromkeys(queries))
        if not self.queries:
            raise ValueError("the fine-tuned policy space needs a non-empty query pool")
        self.rule = AffineRule(divergence, regularization, payment, group_distortion)
        self.sampling = ReplySampling(max_new_tokens, temperature, relevance_temperature, max_rows)
        self.report_space = self.rule.report_space
        self.lm = lm
        self.fine_tune = fine_tune or FineTuneConfig(
            max_new_tokens=max_new_tokens, temperature=temperature
        )
        self.grid_resolution = grid_resolution
        self.grid_samples = grid_samples
        self._grids: dict[tuple[str, ...], PolicyGrid] = {}

    def relevance(
        self, contexts: Sequence[str], queries: Sequence[str], replies: Sequence[Sequence[int]]
    ) -> np.ndarray:
        """``[n, R]`` relevance of each reply (to its query) for each group."""
        scores = score_replies(
            self.lm,
            queries,
            contexts,
            replies,
            self.sampling.max_new_tokens,
            self.sampling.temperature,
            None,
            self.sampling.relevance_temperature,
            self.sampling.max_rows,
        )
        return scores.relevance.numpy()

    def build_grid(self, contexts: Sequence[str], seed: int) -> PolicyGrid:
        """Fine-tune one copy per group, interpolate, and estimate every grid point."""
        prompts = [self.lm.prompt(q) for q in self.queries]
        copies = []
        for i, context in enumerate(contexts):

            def reward(prompt_index, replies, context=context):
                queries = [self.queries[int(k)] for k in prompt_index]
                return self.relevance([context], queries, replies)[0]

            result = reward_weighted_fine_tune(self.lm, prompts, reward, self.fine_tune, seed + i)
            copies.append(result.lm)
        policies = InterpolatedPolicies(self.lm, copies, self.grid_resolution)
        size, count = len(policies), len(self.queries)
        valuations = np.zeros((count, size, len(contexts)))
        divergences = np.zeros((count, size))
        replies: list[list[list[list[int]]]] = [[[] for _ in range(size)] for _ in range(count)]
        for g in range(size):
            samples = sample_policy(
                policies.model_at(g),
                self.lm,
                prompts,
                self.grid_samples,
                self.sampling.max_new_tokens,
                self.sampling.temperature,
                seed + len(contexts) + g,
            )
            queries = [self.queries[int(k)] for k in samples.prompt_index]
            relevance = self.relevance(contexts, queries, samples.replies)  # [n, R]
            for x in range(count):
                rows = np.flatnonzero(samples.prompt_index == x)
                valuations[x, g] = relevance[:, rows].mean(-1)
                divergences[x, g] = divergence_estimates(
                    _subset(samples, rows), self.rule.regularization
                )[self.rule.divergence]
                replies[x][g] = [samples.replies[r] for r in rows]
        return PolicyGrid(policies.grid, valuations, divergences, replies)

    def grid_for(self, contexts: Sequence[str], seed: int) -> PolicyGrid:
        """The grid of these groups (built on first use, then reused)."""
        key = tuple(contexts)
        if key not in self._grids:
            self._grids[key] = self.build_grid(contexts, seed)
        return self._grids[key]

    def run_auctions(
        self, queries: Sequence[str], bidders: Sequence[Sequence[Bidder]], seed: int
    ) -> list[AuctionOutcome]:
        """Run A grid auctions (see :class:`~market_sim.platform.base.Platform`)."""
        check_batch(queries, bidders)
        rng = np.random.default_rng(seed)
        results = []
        for query, group in zip(queries, bidders, strict=True):
            if query not in self.queries:
                raise ValueError(
                    f"query {query!r} is not in the pool the fine-tuned policies were built on"
                )
            grid = self.grid_for([b.context for b in group], int(rng.integers(SEED_MAX_31_BIT)))
            x = self.queries.index(query)
            weights = np.array([b.report.bid for b in group], dtype=np.float64)
            scales = np.array([b.report.report_scale for b in group], dtype=np.float64)
            reported = distorted_valuations(grid.valuations[x], scales, self.rule.group_distortion)
            outcome = run_grid_affine_maximizer(
                reported,
                grid.divergences[x],
                weights,
                self.rule.payment,
                true_valuations=grid.valuations[x],
            )
            choice = int(outcome.choice)
            samples = grid.replies[x][choice]
            tokens = samples[int(rng.integers(len(samples)))]
            results.append(
                AuctionOutcome(
                    text=self.lm.decode(tokens).strip(),
                    token_ids=tokens,
                    allocations=outcome.valuations,
                    reported_allocations=reported[choice],
                    payments=outcome.payments,
                    user_value=-float(grid.divergences[x, choice]),
                    extras={
                        "n_tokens": float(len(tokens)),
                        "stopped_at_eos": float(len(tokens) < self.sampling.max_new_tokens),
                        "grid_point": float(choice),
                        "grid_base_weight": float(grid.coefficients[choice, 0]),
                        "divergence": float(grid.divergences[x, choice]),
                    },
                    counterfactual=GridCounterfactual(
                        grid.valuations[x], grid.divergences[x], weights, scales, self.rule
                    ),
                )
            )
        return results


def _subset(samples: PolicySamples, rows: np.ndarray) -> PolicySamples:
    """The rows ``rows`` of a sample set."""
    return PolicySamples(
        prompt_index=samples.prompt_index[rows],
        replies=[samples.replies[r] for r in rows],
        policy_logprob=samples.policy_logprob[rows],
        init_logprob=samples.init_logprob[rows],
    )
