"""Plugin: the MOSAIC-style sampling auction (M candidate replies, one drawn from pi*).

The rule and its payments are in :mod:`market_sim.mechanisms.mosaic`, candidate sampling,
relevance scoring and the counterfactual in :mod:`market_sim.platform.mosaic`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, get_args

from market_sim.config.fields import Choice, IntRange
from market_sim.config.settings import setting, temperature
from market_sim.mechanisms.options import PROPOSALS, MosaicPayment, MosaicProposal
from market_sim.platform.report_spaces import RELEVANCE_EXPONENT
from market_sim.plugins.base import MechanismConfig, MechanismPlugin, sampled_candidates_memory

if TYPE_CHECKING:
    from market_sim.lm.model import LanguageModel
    from market_sim.platform.mosaic import MosaicPlatform

SLOW_CANDIDATES = 64
"""Candidate counts from which a run warns about its cost (it grows linearly in M)."""


@dataclass(frozen=True)
class MosaicConfig(MechanismConfig):
    """MOSAIC's keys (``[mechanism]`` with ``kind = "mosaic"``)."""

    kind: str = "mosaic"
    payment: MosaicPayment = setting(
        Choice(get_args(MosaicPayment), default="mosaic"), "Payment rule: mosaic, or none."
    )
    candidates: int = setting(
        IntRange(min=1, max=65_536, default=16), "M, the candidate replies per auction."
    )
    tau: float = setting(temperature(1.0), "Temperature of the KL regularization toward pi_ref.")
    proposal: MosaicProposal = setting(
        Choice(PROPOSALS, default="reference"),
        "Where candidates come from: pi_ref (the query alone) or the query with every context.",
    )
    relevance_temperature: float = setting(
        temperature(1.0), "T of the relevance score sigmoid(mean log-likelihood ratio / T)."
    )


def build_mosaic(
    config: MosaicConfig, lm: LanguageModel, queries: Sequence[str] = ()
) -> MosaicPlatform:
    """A MOSAIC platform from its config (torch is imported here, not at validation)."""
    from market_sim.platform.mosaic import MosaicPlatform

    return MosaicPlatform(
        lm,
        candidates=config.candidates,
        tau=config.tau,
        proposal=config.proposal,
        payment=config.payment,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        relevance_temperature=config.relevance_temperature,
    )


def slow_mosaic_settings(config: MosaicConfig) -> list[str]:
    """Warn when M is large: every auction scores M x (1 + n) replies."""
    if config.candidates < SLOW_CANDIDATES:
        return []
    return [
        f"mechanism.candidates = {config.candidates}: MOSAIC scores M x (1 + n) replies per "
        "auction, its cost grows linearly in M"
    ]


MOSAIC = MechanismPlugin(
    name="mosaic",
    kinds=("mosaic",),
    title="MOSAIC",
    summary="M candidate replies are sampled; one is drawn from pi*, the reference tilted by "
    "the bid-weighted relevance rewards; payments are MOSAIC's.",
    config_type=MosaicConfig,
    build=build_mosaic,
    report_space=lambda config: RELEVANCE_EXPONENT,
    slow_settings=slow_mosaic_settings,
    auction_memory=lambda config, advertisers, vocabulary: sampled_candidates_memory(
        config.candidates, advertisers, config.max_new_tokens
    ),
)
