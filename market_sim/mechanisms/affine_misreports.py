r"""The misreports of a group in the affine maximizer: one definition of each.

Pure numpy math, float64, vectorized over leading batch axes (docs/design.md, sections 3.3.4,
3.3.5 and 3.4). A group i holds a size :math:`w_i` and a reward model :math:`rm_i` over a finite
outcome set :math:`\mathcal Y` (rows normalized by ``max`` or ``sum``,
:func:`market_sim.mechanisms.affine_maximizer.normalize_rewards`), or, over sampled text, its
valuations :math:`V_{g,i}` of G candidate policies. Truthful is scale 1 and :math:`\epsilon = 0`.

* Size inflation: :math:`\tilde w_i = \alpha w_i` (the ``bid``; a multiplication, no function).
* ``reward_scale``: :math:`\widetilde{rm}_i = s_i\,rm_i` (not renormalized: in the rule it acts
  exactly like the size inflation :math:`\alpha = s_i`).
* ``blend``: :math:`\widetilde{rm}_i = \mathrm{normalize}\big(\max(0, s_i\,rm_i + (1 - s_i)
  \overline{rm}_{-i})\big)`, :math:`\overline{rm}_{-i}` the mean of the OTHER groups' TRUE reward
  models. This is the one blend: the platform runs it in markets
  (``group_distortion = "blend"``, :mod:`market_sim.platform.affine_maximizer`) and the misreport
  analysis (:mod:`market_sim.mechanisms.affine_misreport_utilities`) calls the same function.
  Blending toward the true rows (what the platform holds), not toward the others' current
  reports, keeps simultaneous blends well defined: each group's report depends on its own scale
  only. :math:`s_i < 1` blends toward the others; :math:`s_i > 1` (or :math:`s_i < 0`)
  extrapolates, which can push entries below 0: they are clipped at 0 so that the row stays a
  non-negative reward model, then renormalized.
* Grid ``blend`` (:func:`distorted_valuations`): :math:`\tilde V_{g,i} = s_i V_{g,i} + (1 - s_i)
  \bar V_{g,-i}`, the same mixture over the others' TRUE valuations, linear: over sampled text
  there is no finite row to clip or renormalize.
* Epsilon shift toward the favourite outcome :math:`y^*_i = \arg\max_y rm_i(y)` (first one):
  :math:`\widetilde{rm}_i = rm_i + \epsilon(e_{y^*_i} - c\,\mathbf 1)` with :math:`c = 1` under
  ``max`` (the favourite stays at 1, every other outcome drops by :math:`\epsilon`) and
  :math:`c = 1/|\mathcal Y|` under ``sum`` (the sum stays 1). Since
  :math:`\langle\pi, \mathbf 1\rangle = 1` for every policy, adding a constant to a report
  changes neither the rule nor any payment, so this is the same misreport as
  :math:`rm_i + \epsilon e_{y^*_i}`, normalized. (Rescaling :math:`(rm_i + \epsilon e_{y^*})
  /(1 + \epsilon)` instead would mix in a shrinking of the group's weight, a different lie.)
  The shifted row may dip up to :math:`\epsilon c` below 0; it is not clipped.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from market_sim.mechanisms.affine_maximizer import Normalization, normalize_rewards

GroupDistortion = Literal["reward_scale", "blend"]


def _others_mean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean over the OTHER groups along ``axis`` (the groups axis), for every group at once."""
    n = values.shape[axis]
    if n < 2:
        raise ValueError("a blend needs at least one other group")
    return (values.sum(axis, keepdims=True) - values) / (n - 1)


def distorted_reward_models(
    true_rewards: np.ndarray,
    scales: np.ndarray,
    distortion: GroupDistortion,
    normalization: Normalization = "max",
) -> np.ndarray:
    r"""Reported reward models of groups that each distort their own by a scale.

    * ``reward_scale``: :math:`\widetilde{rm}_i = s_i\,rm_i`.
    * ``blend``: :math:`\widetilde{rm}_i = \mathrm{normalize}\big(\max(0, s_i\,rm_i + (1 - s_i)
      \overline{rm}_{-i})\big)`, :math:`\overline{rm}_{-i}` the mean of the OTHER groups' TRUE
      reward models (see the module docstring for why true rows and why the clip).

    Args:
        true_rewards: ``[..., n, Y]`` true normalized reward models.
        scales: ``[..., n]`` each group's scale (truthful: 1).
        distortion: ``reward_scale`` or ``blend``.
        normalization: ``max`` or ``sum`` (blends only).

    Returns:
        ``[..., n, Y]`` float64.

    Raises:
        ValueError: On an unknown distortion, or a blend with fewer than two groups.
    """
    rewards = np.asarray(true_rewards, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64)[..., None]
    if distortion == "reward_scale":
        return scales * rewards
    if distortion != "blend":
        raise ValueError(f"distortion must be reward_scale or blend, got {distortion!r}")
    blended = np.maximum(scales * rewards + (1 - scales) * _others_mean(rewards, -2), 0.0)
    return normalize_rewards(blended, normalization)


def distorted_valuations(
    valuations: np.ndarray, scales: np.ndarray, distortion: GroupDistortion
) -> np.ndarray:
    r"""Grid version of :func:`distorted_reward_models`: reported valuations per grid point.

    ``reward_scale``: :math:`\tilde V_{g,i} = s_i V_{g,i}`; ``blend``: :math:`\tilde V_{g,i} =
    s_i V_{g,i} + (1 - s_i)\bar V_{g,-i}` with :math:`\bar V_{g,-i}` the mean of the other
    groups' TRUE valuations (linear: over sampled text there is no finite row to renormalize).

    Args:
        valuations: ``[..., G, n]`` true valuations :math:`V_{g,i}`.
        scales: ``[..., n]`` each group's scale (truthful: 1).
        distortion: ``reward_scale`` or ``blend``.

    Returns:
        ``[..., G, n]`` float64.

    Raises:
        ValueError: On an unknown distortion, or a blend with fewer than two groups.
    """
    valuations = np.asarray(valuations, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64)[..., None, :]
    if distortion == "reward_scale":
        return scales * valuations
    if distortion != "blend":
        raise ValueError(f"distortion must be reward_scale or blend, got {distortion!r}")
    return scales * valuations + (1 - scales) * _others_mean(valuations, -1)


def epsilon_shift(
    rewards: np.ndarray, epsilon: float | np.ndarray, normalization: Normalization = "max"
) -> np.ndarray:
    r""":math:`rm + \epsilon(e_{y^*} - c\mathbf 1)`, c = 1 (``max``) or 1/Y (``sum``).

    The favourite :math:`y^*` is each row's first maximum.

    Args:
        rewards: ``[..., Y]`` normalized true reward rows.
        epsilon: Scalar or ``[...]`` shift sizes (broadcast against the leading shape).
        normalization: ``max`` or ``sum``.

    Returns:
        ``[..., Y]`` shifted rows (same maximum / same sum as the input).

    Raises:
        ValueError: On an unknown normalization.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    size = rewards.shape[-1]
    if normalization == "max":
        level = 1.0
    elif normalization == "sum":
        level = 1.0 / size
    else:
        raise ValueError(f"normalization must be max or sum, got {normalization!r}")
    favourite = np.eye(size)[np.argmax(rewards, axis=-1)]
    eps = np.asarray(epsilon, dtype=np.float64)[..., None]
    return rewards + eps * (favourite - level)
