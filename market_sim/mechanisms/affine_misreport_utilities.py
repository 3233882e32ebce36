r"""What each misreport earns in the affine maximizer: a group's utility, the others fixed.

The incentive analysis of docs/design.md, sections 3.3.3 and 3.3.5 (used by the tests and the
synthetic-game benchmark; markets measure regret through the platform's counterfactual instead).
Pure numpy, float64. Group i deviates with each of K parameter values of one misreport, every
other group keeps its report, and the rule (:mod:`market_sim.mechanisms.affine_maximizer`) is
re-run on all K profiles at once; i's utility is measured with its TRUE size and reward model.
The misreports are those of :mod:`market_sim.mechanisms.affine_misreports`, one definition each:

* ``alpha``: size inflation :math:`\tilde w_i = \alpha w_i` (truthful 1);
* ``beta``: the ``blend`` of :func:`~market_sim.mechanisms.affine_misreports.
  distorted_reward_models` with scale :math:`\beta` (toward the mean of the other groups' TRUE
  reward models, clipped at 0, renormalized; truthful 1), on a grid
  :func:`~market_sim.mechanisms.affine_misreports.distorted_valuations`;
* ``epsilon``: :func:`~market_sim.mechanisms.affine_misreports.epsilon_shift` toward the
  favourite outcome (truthful 0).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from market_sim.mechanisms.affine_maximizer import (
    AffinePayment,
    Divergence,
    Normalization,
    run_affine_maximizer,
    run_grid_affine_maximizer,
)
from market_sim.mechanisms.affine_misreports import (
    distorted_reward_models,
    distorted_valuations,
    epsilon_shift,
)

Misreport = Literal["alpha", "beta", "epsilon"]


def _deviation_scales(
    leading: tuple[int, ...], groups: int, agent: int, values: np.ndarray
) -> np.ndarray:
    """``[..., K, n]`` scales: 1 for every group but ``agent``, which plays ``values``."""
    scales = np.ones((*leading, values.shape[0], groups))
    scales[..., agent] = values
    return scales


def misreport_reports(
    true_rewards: np.ndarray,
    true_weights: np.ndarray,
    agent: int,
    kind: Misreport,
    values: np.ndarray,
    normalization: Normalization = "max",
    reported_rewards: np.ndarray | None = None,
    reported_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Report profiles in which group ``agent`` plays each of K misreports, others fixed.

    Args:
        true_rewards: ``[B, n, Y]`` true (normalized) reward models.
        true_weights: ``[B, n]`` true sizes.
        agent: The deviating group i.
        kind: ``alpha``, ``beta`` or ``epsilon`` (see the module docstring).
        values: ``[K]`` the :math:`\alpha`, :math:`\beta` or :math:`\epsilon` values (truthful:
            1, 1, 0).
        normalization: ``max`` or ``sum`` (how the rows are normalized).
        reported_rewards: ``[B, n, Y]`` the others' reports (default: truthful).
        reported_weights: ``[B, n]`` the others' reported sizes (default: truthful).

    Returns:
        ``(rewards [B, K, n, Y], weights [B, K, n])``; group i's size is its true one except
        under ``alpha``, its reward row its true one except under ``beta`` and ``epsilon``.

    Raises:
        ValueError: On an unknown kind, or a blend with fewer than two groups.
    """
    true_rewards = np.asarray(true_rewards, dtype=np.float64)
    true_weights = np.asarray(true_weights, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    rewards = true_rewards if reported_rewards is None else np.asarray(reported_rewards, np.float64)
    weights = true_weights if reported_weights is None else np.asarray(reported_weights, np.float64)
    count = values.shape[0]
    rewards_k = np.repeat(rewards[..., None, :, :], count, axis=-3).copy()
    weights_k = np.repeat(weights[..., None, :], count, axis=-2).copy()
    own = true_rewards[..., agent, :]  # [B, Y]
    rewards_k[..., agent, :] = own[..., None, :]
    weights_k[..., agent] = true_weights[..., agent, None]
    if kind == "alpha":
        weights_k[..., agent] = true_weights[..., agent, None] * values
    elif kind == "beta":
        scales = _deviation_scales(true_rewards.shape[:-2], true_rewards.shape[-2], agent, values)
        blended = distorted_reward_models(
            true_rewards[..., None, :, :], scales, "blend", normalization
        )  # [B, K, n, Y]
        rewards_k[..., agent, :] = blended[..., agent, :]
    elif kind == "epsilon":
        shifted = epsilon_shift(np.repeat(own[..., None, :], count, -2), values, normalization)
        rewards_k[..., agent, :] = shifted
    else:
        raise ValueError(f"kind must be alpha, beta or epsilon, got {kind!r}")
    return rewards_k, weights_k


def misreport_utilities(
    true_rewards: np.ndarray,
    true_weights: np.ndarray,
    init: np.ndarray,
    agent: int,
    kind: Misreport,
    values: np.ndarray,
    divergence: Divergence = "kl",
    lam: float = 1.0,
    payment: AffinePayment = "affine_maximizer",
    normalization: Normalization = "max",
    reported_rewards: np.ndarray | None = None,
    reported_weights: np.ndarray | None = None,
) -> np.ndarray:
    r"""Group i's TRUE utility for each of K alternative reports, the others' reports fixed.

    See :func:`misreport_reports` for the reports.

    Args:
        true_rewards: ``[B, n, Y]`` true (normalized) reward models.
        true_weights: ``[B, n]`` true sizes.
        init: ``[B, Y]`` or ``[Y]`` :math:`\pi_{init}`.
        agent: The deviating group i.
        kind: ``alpha``, ``beta`` or ``epsilon``.
        values: ``[K]`` the report parameters.
        divergence: ``kl``, ``chi2`` or ``tv``.
        lam: :math:`\lambda`.
        payment: ``affine_maximizer`` or ``none``.
        normalization: ``max`` or ``sum``.
        reported_rewards: ``[B, n, Y]`` the others' reports (default: truthful).
        reported_weights: ``[B, n]`` the others' reported sizes (default: truthful).

    Returns:
        ``[B, K]`` utilities :math:`w_i E_{\pi^*}[rm_i] - p_i`.
    """
    rewards_k, weights_k = misreport_reports(
        true_rewards,
        true_weights,
        agent,
        kind,
        values,
        normalization,
        reported_rewards,
        reported_weights,
    )
    init = np.asarray(init, dtype=np.float64)
    outcome = run_affine_maximizer(
        rewards_k,
        weights_k,
        init[..., None, :],
        divergence,
        lam,
        payment,
        true_rewards=np.asarray(true_rewards, np.float64)[..., None, :, :],
        true_weights=np.asarray(true_weights, np.float64)[..., None, :],
    )
    return outcome.utilities[..., agent]


def grid_misreport_utilities(
    true_valuations: np.ndarray,
    true_weights: np.ndarray,
    divergences: np.ndarray,
    agent: int,
    kind: Literal["alpha", "beta"],
    values: np.ndarray,
    payment: AffinePayment = "affine_maximizer",
    reported_valuations: np.ndarray | None = None,
    reported_weights: np.ndarray | None = None,
) -> np.ndarray:
    r"""Grid version of :func:`misreport_utilities` (``alpha``, or the linear grid ``beta``).

    Args:
        true_valuations: ``[B, G, n]`` true valuations per grid point.
        true_weights: ``[B, n]`` true sizes.
        divergences: ``[B, G]`` or ``[G]``.
        agent: The deviating group i.
        kind: ``alpha`` (:math:`\tilde w_i = \alpha w_i`) or ``beta``
            (:math:`\tilde V_{\cdot,i} = \beta V_{\cdot,i} + (1-\beta)\bar V_{\cdot,-i}`, the
            others' TRUE valuations: :func:`~market_sim.mechanisms.affine_misreports.
            distorted_valuations`).
        values: ``[K]`` parameters.
        payment: ``affine_maximizer`` or ``none``.
        reported_valuations: ``[B, G, n]`` the others' reports (default: truthful).
        reported_weights: ``[B, n]`` the others' reported sizes (default: truthful).

    Returns:
        ``[B, K]`` group i's true utilities.

    Raises:
        ValueError: On an unknown kind, or a blend with fewer than two groups.
    """
    true_v = np.asarray(true_valuations, dtype=np.float64)
    true_w = np.asarray(true_weights, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    rep_v = true_v if reported_valuations is None else np.asarray(reported_valuations, np.float64)
    rep_w = true_w if reported_weights is None else np.asarray(reported_weights, np.float64)
    count = values.shape[0]
    v_k = np.repeat(rep_v[..., None, :, :], count, axis=-3).copy()  # [B, K, G, n]
    w_k = np.repeat(rep_w[..., None, :], count, axis=-2).copy()  # [B, K, n]
    v_k[..., agent] = true_v[..., None, :, agent]
    w_k[..., agent] = true_w[..., agent, None]
    if kind == "alpha":
        w_k[..., agent] = true_w[..., agent, None] * values
    elif kind == "beta":
        scales = _deviation_scales(true_v.shape[:-2], true_v.shape[-1], agent, values)
        blended = distorted_valuations(true_v[..., None, :, :], scales, "blend")  # [B, K, G, n]
        v_k[..., agent] = blended[..., agent]
    else:
        raise ValueError(f"kind must be alpha or beta, got {kind!r}")
    divergences = np.asarray(divergences, dtype=np.float64)
    if divergences.ndim > 1:
        divergences = divergences[..., None, :]
    outcome = run_grid_affine_maximizer(
        v_k,
        divergences,
        w_k,
        payment,
        true_valuations=true_v[..., None, :, :],
        true_weights=true_w[..., None, :],
    )
    return outcome.utilities[..., agent]
