"""Plugin: the affine maximizer over groups, on sampled replies or on fine-tuned LM copies.

``policy_space`` picks the outcome space and gates the keys read with it: ``candidates`` (an
exact distribution over M sampled replies; :mod:`market_sim.platform.affine_maximizer`) reads
``candidates`` and ``normalization``; ``fine_tuned`` (weight interpolations of one fine-tuned
copy per group; :mod:`market_sim.platform.fine_tuned_affine`) reads the ``fine_tune_*`` and
``grid_*`` keys. The rule and its payments are in :mod:`market_sim.mechanisms.affine_maximizer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, get_args

from market_sim.config.fields import Choice, IntRange
from market_sim.config.settings import learning_rate, setting, temperature
from market_sim.mechanisms.affine_maximizer import AffinePayment, Divergence, Normalization
from market_sim.mechanisms.affine_misreports import GroupDistortion
from market_sim.mechanisms.options import POLICY_SPACES, PolicySpace
from market_sim.platform.report_spaces import group_report_space
from market_sim.plugins.base import MechanismConfig, MechanismPlugin, sampled_candidates_memory

if TYPE_CHECKING:
    from market_sim.lm.model import LanguageModel
    from market_sim.platform.base import Platform

SAMPLED = {"policy_space": ("candidates",)}
FINE_TUNED = {"policy_space": ("fine_tuned",)}


@dataclass(frozen=True)
class AffineMaximizerConfig(MechanismConfig):
    """The affine maximizer's keys (``[mechanism]`` with ``kind = "affine_maximizer"``)."""

    kind: str = "affine_maximizer"
    payment: AffinePayment = setting(
        Choice(get_args(AffinePayment), default="affine_maximizer"),
        "Payment rule: affine_maximizer, or none.",
    )
    divergence: Divergence = setting(
        Choice(get_args(Divergence), default="kl"), "The divergence from the base policy."
    )
    regularization: float = setting(temperature(1.0), "lambda, the weight of the divergence.")
    policy_space: PolicySpace = setting(
        Choice(POLICY_SPACES, default="candidates"),
        "Outcome space: a distribution over sampled replies, or fine-tuned copies' grid.",
    )
    group_distortion: GroupDistortion = setting(
        Choice(get_args(GroupDistortion), default="reward_scale"),
        "What report_scale distorts: the reward scale, or a blend toward the other groups.",
    )
    relevance_temperature: float = setting(
        temperature(1.0), "T of the relevance score sigmoid(mean log-likelihood ratio / T)."
    )
    candidates: int = setting(
        IntRange(min=1, max=65_536, default=16), "M, the sampled replies (outcome set).", SAMPLED
    )
    normalization: Normalization = setting(
        Choice(get_args(Normalization), default="max"),
        "Reward models normalized by their max or sum over the outcome set.",
        SAMPLED,
    )
    fine_tune_samples: int = setting(
        IntRange(min=1, max=4096, default=16),
        "Replies per query in each group's reward-weighted fine-tuning run.",
        FINE_TUNED,
    )
    fine_tune_steps: int = setting(
        IntRange(min=0, max=100_000, default=30), "Optimizer steps per group.", FINE_TUNED
    )
    fine_tune_beta: float = setting(
        temperature(0.1), "KL temperature of the fine-tuning target.", FINE_TUNED
    )
    fine_tune_learning_rate: float = setting(
        learning_rate(1e-3), "AdamW learning rate of fine-tuning.", FINE_TUNED
    )
    grid_resolution: int = setting(
        IntRange(min=1, max=20, default=2),
        "Interpolation coefficients are multiples of 1 / resolution on the simplex.",
        FINE_TUNED,
    )
    grid_samples: int = setting(
        IntRange(min=1, max=4096, default=32),
        "Replies per query sampled at each grid point to estimate values and divergences.",
        FINE_TUNED,
    )


def build_affine_maximizer(
    config: AffineMaximizerConfig, lm: LanguageModel, queries: Sequence[str] = ()
) -> Platform:
    """An affine maximizer over sampled replies, or over a grid of fine-tuned LMs.

    torch is imported here, when the platform is built, not when a scenario is validated.
    """
    from market_sim.lm.fine_tune import FineTuneConfig
    from market_sim.platform.affine_maximizer import AffineMaximizerPlatform
    from market_sim.platform.fine_tuned_affine import FineTunedAffineMaximizerPlatform

    if config.policy_space == "fine_tuned":
        return FineTunedAffineMaximizerPlatform(
            lm,
            queries,
            divergence=config.divergence,
            regularization=config.regularization,
            payment=config.payment,
            group_distortion=config.group_distortion,
            fine_tune=FineTuneConfig(
                samples_per_prompt=config.fine_tune_samples,
                beta=config.fine_tune_beta,
                steps=config.fine_tune_steps,
                learning_rate=config.fine_tune_learning_rate,
                max_new_tokens=config.max_new_tokens,
                temperature=config.temperature,
            ),
            grid_resolution=config.grid_resolution,
            grid_samples=config.grid_samples,
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            relevance_temperature=config.relevance_temperature,
        )
    return AffineMaximizerPlatform(
        lm,
        candidates=config.candidates,
        divergence=config.divergence,
        regularization=config.regularization,
        payment=config.payment,
        group_distortion=config.group_distortion,
        normalization=config.normalization,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        relevance_temperature=config.relevance_temperature,
    )


def slow_affine_settings(config: AffineMaximizerConfig) -> list[str]:
    """Warn that the fine-tuned space trains and samples before round 0."""
    if config.policy_space != "fine_tuned":
        return []
    return [
        "mechanism.policy_space = fine_tuned fine-tunes a copy of the LM per group and samples "
        "every grid point before round 0: minutes on a CPU"
    ]


def affine_auction_memory(config: AffineMaximizerConfig, advertisers: int, vocabulary: int) -> int:
    """Bytes one auction holds: :func:`~market_sim.plugins.base.sampled_candidates_memory`.

    The fine-tuned space's outcomes are its grid, built before round 0: 0 bytes per auction.
    """
    if config.policy_space != "candidates":
        return 0
    return sampled_candidates_memory(config.candidates, advertisers, config.max_new_tokens)


def fewest_affine_groups(config: AffineMaximizerConfig) -> tuple[int, str]:
    """A blend mixes each group's reward model with the other groups': it needs two groups."""
    if config.group_distortion == "blend":
        return 2, "group_distortion = blend mixes in the other groups' reward models"
    return 1, ""


def fine_tuned_queries(config: AffineMaximizerConfig) -> str:
    """Fine-tuned policies are trained for the query pool known before round 0."""
    if config.policy_space == "fine_tuned":
        return (
            "policy_space = fine_tuned builds its policies before round 0 for the queries known "
            "then"
        )
    return ""


AFFINE_MAXIMIZER = MechanismPlugin(
    name="affine_maximizer",
    kinds=("affine_maximizer",),
    title="the affine maximizer",
    summary="Groups' reported reward models are maximized with a divergence penalty, over "
    "sampled replies or fine-tuned copies; VCG-like payments.",
    config_type=AffineMaximizerConfig,
    build=build_affine_maximizer,
    report_space=lambda config: group_report_space(config.group_distortion),
    slow_settings=slow_affine_settings,
    auction_memory=affine_auction_memory,
    fewest_advertisers=fewest_affine_groups,
    fixed_queries=fine_tuned_queries,
)
