r"""The affine maximizer over a sampled outcome set, on a real LM (docs/design.md, section 3.3).

Each advertiser is a *group* with a private size :math:`w_i` (its valuation: value =
``valuation x allocation``) and a private reward model :math:`rm_i`. Per auction:

1. The outcome set is M replies drawn from :math:`\pi_{init}` (the platform LM on the query
   alone) in one batched ``generate``; :math:`\pi_{init}` on it is their empirical distribution
   (1/M each; duplicates keep one share each, which changes neither the rule nor any
   divergence, since every f-divergence is unchanged by splitting an outcome into copies with
   the same ratio).
2. Reward models: :math:`rm_i(y_j)` = the relevance of :math:`y_j` for group i's brand context
   (:mod:`market_sim.platform.candidate_scoring`), normalized by ``max`` or ``sum`` over the
   outcome set.
3. Reports: ``bid`` is the reported size :math:`\tilde w_i` (bid / valuation is the size
   inflation :math:`\alpha`); ``report_scale`` :math:`s_i` distorts the reward model as
   ``group_distortion`` says (:func:`market_sim.mechanisms.affine_misreports.
   distorted_reward_models`: ``reward_scale`` or ``blend``). Truthful: bid = size, scale 1.
4. The rule :math:`\pi^* = \arg\max_\pi \sum_i \tilde w_i E_\pi[\widetilde{rm}_i]
   - D_f(\pi\|\pi_{init})`, solved exactly for KL, chi-squared or TV, the affine-maximizer
   payments (or none), and the reply drawn from :math:`\pi^*`.

Allocation :math:`E_{\pi^*}[rm_i]` with the TRUE reward model; payments and values are expected
over the final draw. User value: :math:`-D_f(\pi^*\|\pi_{init})`, so that with truthful reports
social welfare equals the objective the rule maximizes.

The counterfactual holds the outcome set, the reward models and the others' reports fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from market_sim.config.bounds import SEED_MAX
from market_sim.lm.model import LanguageModel
from market_sim.mechanisms.affine_maximizer import (
    DIVERGENCES,
    AffinePayment,
    Divergence,
    Normalization,
    f_divergence,
    normalize_rewards,
    run_affine_maximizer,
)
from market_sim.mechanisms.affine_misreports import GroupDistortion, distorted_reward_models
from market_sim.platform.base import (
    AuctionOutcome,
    Bidder,
    CounterfactualValues,
    Report,
    ReportBatch,
    ReportSpace,
    check_batch,
)
from market_sim.platform.candidate_scoring import (
    DEFAULT_MAX_ROWS,
    ReplySampling,
    draw_and_score,
)
from market_sim.platform.report_spaces import group_report_space


@dataclass(frozen=True)
class AffineRule:
    r"""The affine-maximizer rule both policy spaces run.

    Attributes:
        divergence: ``kl``, ``chi2`` or ``tv``.
        regularization: :math:`\lambda > 0`.
        payment: ``affine_maximizer`` or ``none``.
        group_distortion: What ``report_scale`` distorts (``reward_scale`` or ``blend``).
    """

    divergence: Divergence = "kl"
    regularization: float = 1.0
    payment: AffinePayment = "affine_maximizer"
    group_distortion: GroupDistortion = "reward_scale"

    def __post_init__(self) -> None:
        """Reject unknown rules, naming the argument and the allowed values."""
        if self.divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be kl, chi2 or tv, got {self.divergence!r}")
        if self.payment not in ("affine_maximizer", "none"):
            raise ValueError(f"payment must be affine_maximizer or none, got {self.payment!r}")
        if not self.regularization > 0:
            raise ValueError(f"regularization must be > 0, got {self.regularization}")
        group_report_space(self.group_distortion)

    @property
    def report_space(self) -> ReportSpace:
        """What ``report_scale`` means under this rule, and its search range."""
        return group_report_space(self.group_distortion)


def deviation_profiles(
    true_rewards: np.ndarray,
    reported: np.ndarray,
    weights: np.ndarray,
    agent: int,
    batch: ReportBatch,
    distortion: GroupDistortion,
    normalization: Normalization,
) -> tuple[np.ndarray, np.ndarray]:
    """Report profiles where group ``agent`` plays each of K reports, the others fixed.

    Args:
        true_rewards: ``[n, Y]`` true reward models.
        reported: ``[n, Y]`` the round's reported reward models.
        weights: ``[n]`` the round's reported sizes.
        agent: The deviating group.
        batch: K reports (bid = size, report_scale = distortion scale).
        distortion: What the scale distorts.
        normalization: Row normalization (blends).

    Returns:
        ``(rewards [K, n, Y], weights [K, n])``.
    """
    count = len(batch)
    scales = np.ones((count, true_rewards.shape[0]))
    scales[:, agent] = batch.report_scale
    own = distorted_reward_models(
        np.broadcast_to(true_rewards, (count, *true_rewards.shape)),
        scales,
        distortion,
        normalization,
    )[:, agent]
    rewards = np.repeat(reported[None], count, axis=0)
    rewards[:, agent] = own
    profile_weights = np.repeat(weights[None], count, axis=0)
    profile_weights[:, agent] = batch.bid
    return rewards, profile_weights


class AffineMaximizerCounterfactual:
    r"""One affine-maximizer auction re-run for one group: outcomes and others' reports fixed.

    Args:
        true_rewards: ``[n, Y]`` true reward models.
        reported: ``[n, Y]`` reported reward models.
        weights: ``[n]`` reported sizes.
        init: ``[Y]`` :math:`\pi_{init}`.
        rule: Divergence, lambda, payment and what ``report_scale`` distorts.
        normalization: Row normalization.
    """

    def __init__(
        self,
        true_rewards: np.ndarray,
        reported: np.ndarray,
        weights: np.ndarray,
        init: np.ndarray,
        rule: AffineRule,
        normalization: Normalization,
    ) -> None:
        self.true_rewards = true_rewards
        self.reported = reported
        self.weights = weights
        self.init = init
        self.rule = rule
        self.normalization: Normalization = normalization

    def evaluate(self, agent: int, reports: ReportBatch | Sequence[Report]) -> CounterfactualValues:
        r"""Allocation :math:`E_{\pi^*}[rm_i]` and payment of ``agent`` under each report."""
        batch = ReportBatch.of(reports)
        rewards, weights = deviation_profiles(
            self.true_rewards,
            self.reported,
            self.weights,
            agent,
            batch,
            self.rule.group_distortion,
            self.normalization,
        )
        outcome = run_affine_maximizer(
            rewards,
            weights,
            self.init,
            self.rule.divergence,
            self.rule.regularization,
            self.rule.payment,
        )
        return CounterfactualValues(
            allocations=outcome.policy @ self.true_rewards[agent],
            payments=outcome.payments[:, agent],
        )


class AffineMaximizerPlatform:
    r"""The affine maximizer over M replies sampled from the platform LM.

    Args:
        lm: The platform language model (:math:`\pi_{init}` on the query prompt).
        candidates: M, the size of the outcome set.
        divergence: ``kl``, ``chi2`` or ``tv``.
        regularization: :math:`\lambda > 0`.
        payment: ``affine_maximizer`` or ``none``.
        group_distortion: What ``report_scale`` distorts (``reward_scale`` or ``blend``).
        normalization: ``max`` or ``sum`` normalization of the reward models.
        max_new_tokens: Reply length cap.
        temperature: Sampling temperature (also of the relevance scoring).
        relevance_temperature: T of the relevance score.
        max_rows: Scoring rows per forward.
    """

    kind = "affine_maximizer"

    def __init__(
        self,
        lm: LanguageModel,
        candidates: int = 16,
        divergence: Divergence = "kl",
        regularization: float = 1.0,
        payment: AffinePayment = "affine_maximizer",
        group_distortion: GroupDistortion = "reward_scale",
        normalization: Normalization = "max",
        max_new_tokens: int = 24,
        temperature: float = 1.0,
        relevance_temperature: float = 1.0,
        max_rows: int = DEFAULT_MAX_ROWS,
    ) -> None:
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        if normalization not in ("max", "sum"):
            raise ValueError(f"normalization must be max or sum, got {normalization!r}")
        self.rule = AffineRule(divergence, regularization, payment, group_distortion)
        self.sampling = ReplySampling(max_new_tokens, temperature, relevance_temperature, max_rows)
        self.report_space = self.rule.report_space
        self.lm = lm
        self.candidates = candidates
        self.normalization: Normalization = normalization

    def run_auctions(
        self, queries: Sequence[str], bidders: Sequence[Sequence[Bidder]], seed: int
    ) -> list[AuctionOutcome]:
        """Run A affine-maximizer auctions (see :class:`~market_sim.platform.base.Platform`)."""
        check_batch(queries, bidders)
        if not queries:
            return []
        rng = np.random.default_rng(seed)
        contexts = [[b.context for b in group] for group in bidders]
        candidates, scores = draw_and_score(
            self.lm,
            queries,
            contexts,
            self.candidates,
            self.sampling,
            int(rng.integers(SEED_MAX)),
        )
        true_rewards = normalize_rewards(scores.relevance.numpy(), self.normalization)
        weights = np.array([[b.report.bid for b in g] for g in bidders], dtype=np.float64)
        scales = np.array([[b.report.report_scale for b in g] for g in bidders], dtype=np.float64)
        reported = distorted_reward_models(
            true_rewards, scales, self.rule.group_distortion, self.normalization
        )
        init = np.full(self.candidates, 1.0 / self.candidates)
        outcome = run_affine_maximizer(
            reported,
            weights,
            init,
            self.rule.divergence,
            self.rule.regularization,
            self.rule.payment,
        )
        policy = outcome.policy  # [A, M]
        allocations = (policy[:, None, :] * true_rewards).sum(-1)
        reported_allocations = (policy[:, None, :] * reported).sum(-1)
        divergences = f_divergence(policy, init, self.rule.divergence, self.rule.regularization)
        results = []
        for a in range(len(queries)):
            pick = int(rng.choice(self.candidates, p=policy[a] / policy[a].sum()))
            tokens = candidates[a][pick]
            results.append(
                AuctionOutcome(
                    text=self.lm.decode(tokens).strip(),
                    token_ids=tokens,
                    allocations=allocations[a],
                    reported_allocations=reported_allocations[a],
                    payments=outcome.payments[a],
                    user_value=-float(divergences[a]),
                    extras={
                        "n_tokens": float(len(tokens)),
                        "stopped_at_eos": float(len(tokens) < self.sampling.max_new_tokens),
                        "candidates": float(self.candidates),
                        "distinct_candidates": float(len({tuple(c) for c in candidates[a]})),
                        "policy_effective_outcomes": float(1.0 / (policy[a] ** 2).sum()),
                        "divergence": float(divergences[a]),
                        "chosen_candidate": float(pick),
                    },
                    counterfactual=AffineMaximizerCounterfactual(
                        true_rewards[a],
                        reported[a],
                        weights[a],
                        init,
                        self.rule,
                        self.normalization,
                    ),
                )
            )
        return results
