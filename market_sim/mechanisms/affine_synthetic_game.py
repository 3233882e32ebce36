r"""The published synthetic game of the affine maximizer, where every expectation is exact.

docs/design.md, section 3.3.5; run by ``benchmarks/am_synthetic_table.py`` and the tests. Pure
numpy, float64. A game has n groups with reward models :math:`rm \sim U[0, 1]` (normalized by
``max`` or ``sum``) over a finite outcome set and sizes :math:`w \sim U\{1..10\}`
(:func:`synthetic_games`). On a finite outcome set a policy is a probability row, so the grid
rule's valuations and divergences can be computed exactly (:func:`grid_valuations`) instead of
estimated by sampling as over text. :func:`epsilon_effects` measures what each group gains by
the epsilon shift toward its favourite outcome
(:func:`market_sim.mechanisms.affine_misreports.epsilon_shift`), the others truthful: its
valuation rises (the lie works without payments) while its utility under affine-maximizer
payments does not (DSIC).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from market_sim.mechanisms.affine_maximizer import (
    Divergence,
    Normalization,
    f_divergence,
    normalize_rewards,
    run_affine_maximizer,
)
from market_sim.mechanisms.affine_misreport_utilities import misreport_reports


def synthetic_games(
    seed: int,
    games: int,
    groups: int = 5,
    outcomes: int = 10,
    normalization: Normalization = "max",
    max_size: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    r"""The published synthetic game: :math:`rm \sim U[0,1]` normalized, :math:`w \sim U\{1..10\}`.

    Args:
        seed: Seed of ``numpy.random.default_rng``.
        games: B, the number of independent games.
        groups: n.
        outcomes: Y.
        normalization: ``max`` or ``sum``.
        max_size: Sizes are uniform on ``1..max_size``.

    Returns:
        ``(rewards [B, n, Y], weights [B, n])``.
    """
    rng = np.random.default_rng(seed)
    rewards = normalize_rewards(rng.uniform(size=(games, groups, outcomes)), normalization)
    weights = rng.integers(1, max_size + 1, size=(games, groups)).astype(np.float64)
    return rewards, weights


@dataclass(frozen=True)
class EpsilonEffects:
    r"""Change caused by each group's epsilon shift, the others truthful.

    Attributes:
        epsilons: ``[E]``.
        valuation_change: ``[E, B, n]`` change of :math:`w_i E_{\pi^*}[rm_i]` (true); this is
            also the change of utility without payments.
        utility_change: ``[E, B, n]`` change of utility with affine-maximizer payments.
    """

    epsilons: np.ndarray
    valuation_change: np.ndarray
    utility_change: np.ndarray


def epsilon_effects(
    rewards: np.ndarray,
    weights: np.ndarray,
    init: np.ndarray,
    epsilons: np.ndarray,
    divergence: Divergence = "kl",
    lam: float = 1.0,
    normalization: Normalization = "max",
) -> EpsilonEffects:
    r"""Effect of every group's epsilon shift toward its favourite outcome, one group at a time.

    Args:
        rewards: ``[B, n, Y]`` true normalized reward models.
        weights: ``[B, n]`` true sizes.
        init: ``[Y]`` or ``[B, Y]`` :math:`\pi_{init}`.
        epsilons: ``[E]`` shift sizes.
        divergence: ``kl``, ``chi2`` or ``tv``.
        lam: :math:`\lambda`.
        normalization: ``max`` or ``sum``.

    Returns:
        The changes relative to truthful reporting.
    """
    epsilons = np.asarray(epsilons, dtype=np.float64)
    values = np.concatenate([[0.0], epsilons])
    init = np.asarray(init, dtype=np.float64)
    n = np.asarray(rewards).shape[-2]
    valuation, utility = [], []
    for agent in range(n):
        rewards_k, weights_k = misreport_reports(
            rewards, weights, agent, "epsilon", values, normalization
        )
        outcome = run_affine_maximizer(
            rewards_k,
            weights_k,
            init[..., None, :],
            divergence,
            lam,
            "affine_maximizer",
            true_rewards=np.asarray(rewards, np.float64)[..., None, :, :],
            true_weights=np.asarray(weights, np.float64)[..., None, :],
        )
        own_values = outcome.values[..., agent]  # [B, E + 1]
        own_utilities = outcome.utilities[..., agent]
        valuation.append(own_values[..., 1:] - own_values[..., :1])
        utility.append(own_utilities[..., 1:] - own_utilities[..., :1])
    return EpsilonEffects(
        epsilons=epsilons,
        valuation_change=np.moveaxis(np.stack(valuation, -1), -2, 0),
        utility_change=np.moveaxis(np.stack(utility, -1), -2, 0),
    )


def grid_valuations(
    policies: np.ndarray,
    rewards: np.ndarray,
    init: np.ndarray,
    divergence: Divergence = "kl",
    lam: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Exact valuations and divergences of a grid of policies given as probability rows.

    Args:
        policies: ``[G, Y]`` candidate policies.
        rewards: ``[B, n, Y]`` reward models.
        init: ``[Y]`` :math:`\pi_{init}`.
        divergence: ``kl``, ``chi2`` or ``tv``.
        lam: :math:`\lambda`.

    Returns:
        ``(valuations [B, G, n], divergences [G])`` with
        :math:`V_{g,i} = E_{\pi_g}[rm_i]`.
    """
    policies = np.asarray(policies, dtype=np.float64)
    valuations = np.einsum("gy,...ny->...gn", policies, np.asarray(rewards, dtype=np.float64))
    return valuations, f_divergence(policies, init, divergence, lam)
