r"""Affine maximizer for fine-tuning with several reward models (docs/design.md, section 3.3).

Pure numpy math, float64, vectorized over any leading batch shape (written ``[B, ...]``; a
single game drops the B). Groups i = 1..n report a reward model :math:`\widetilde{rm}_i` over a
finite outcome set :math:`\mathcal Y` (values normalized by max or by sum) and a size
:math:`\tilde w_i`. Policies are distributions :math:`\pi` over :math:`\mathcal Y`; the base
policy is :math:`\pi_{init}`. With :math:`g = \sum_i \tilde w_i \widetilde{rm}_i` (the "score"),

.. math::

    D_f(\pi \| \pi_{init}) = \sum_y \pi_{init}(y) f\Big(\frac{\pi(y)}{\pi_{init}(y)}\Big),
    \qquad \pi^* = \arg\max_\pi \langle \pi, g\rangle - D_f(\pi \| \pi_{init}),

    \mathrm{ASW}_{-i}(\pi) = \sum_{j \ne i} \tilde w_j E_\pi[\widetilde{rm}_j]
        - D_f(\pi \| \pi_{init}), \qquad
    p_i = \mathrm{ASW}_{-i}(\pi^*_{-i}) - \mathrm{ASW}_{-i}(\pi^*),

:math:`\pi^*_{-i}` the rule applied to :math:`g - \tilde w_i \widetilde{rm}_i`. Group i's
utility is :math:`w_i E_{\pi^*}[rm_i] - p_i` with its TRUE size and reward model. It equals
:math:`J_i(\pi^*) - \max_\pi \mathrm{ASW}_{-i}(\pi)` where :math:`J_i(\pi) = w_i E_\pi[rm_i] +
\mathrm{ASW}_{-i}(\pi)` is the objective with i's truth in place of its report; truthful reporting
makes the rule maximize :math:`J_i` exactly (DSIC), the utility is then
:math:`\ge J_i(\pi^*_{-i}) - \mathrm{ASW}_{-i}(\pi^*_{-i}) = w_i E_{\pi^*_{-i}}[rm_i] \ge 0` (IR),
and :math:`p_i \ge 0` because :math:`\pi^*_{-i}` maximizes :math:`\mathrm{ASW}_{-i}`. Since the
utility is the optimal VALUE, it does not depend on how ties between maximizers are broken.

Exact solvers, one per divergence (:math:`\lambda > 0`):

* KL, :math:`f(x) = \lambda x\log x`: :math:`\pi^* \propto \pi_{init} e^{g/\lambda}`.
* Chi-squared, :math:`f(x) = \lambda (x-1)^2`, i.e.
  :math:`D = \lambda\sum_y (\pi(y) - \pi_{init}(y))^2/\pi_{init}(y)`. KKT with multiplier
  :math:`\nu` for :math:`\sum\pi = 1`: :math:`g_y - 2\lambda(\pi_y/\pi_{init,y} - 1) + \nu +
  \mu_y = 0`, :math:`\mu_y \ge 0`, :math:`\mu_y\pi_y = 0`, hence the water-filling form

  .. math:: \pi^*(y) = \pi_{init}(y)\,\frac{(g_y - t)_+}{2\lambda}, \qquad
            \sum_y \pi_{init}(y)\frac{(g_y - t)_+}{2\lambda} = 1 .

  The left side is continuous and strictly decreasing in t where positive, so t is unique; its
  active set is a top-k set of g. Sorting g and taking
  :math:`t_k = (\sum_{\text{top }k}\pi_{init} g - 2\lambda)/\sum_{\text{top }k}\pi_{init}`, the
  solution is the k with :math:`g_{(k)} > t_k \ge g_{(k+1)}`: exact, no iteration.
* TV, :math:`f(x) = \lambda|x - 1|`, i.e. :math:`D = \lambda \sum_y |\pi(y) - \pi_{init}(y)|`
  (a linear program). Writing :math:`d = \pi - \pi_{init} = d^+ - d^-` with
  :math:`\sum d^+ = \sum d^- = m`: :math:`\langle d, g\rangle - \lambda\|d\|_1 \le
  \sum_y d^-_y(g_{max} - g_y - 2\lambda) \le \sum_y \pi_{init}(y)(g_{max} - g_y - 2\lambda)_+`.
  The bound is attained by emptying every outcome with :math:`g_y < g_{max} - 2\lambda` and
  moving its mass onto the argmax of g, leaving the rest at :math:`\pi_{init}`: mass moves only
  when the score gap exceeds the threshold :math:`2\lambda`. That is the solution returned.

Conventions chosen here:

* Outcomes with :math:`\pi_{init}(y) = 0` get probability 0 under KL and chi-squared (the
  divergence is infinite otherwise). Under TV the cost :math:`\lambda|\pi - \pi_{init}|` is finite
  there and such outcomes may receive mass.
* Ties. Chi-squared and KL have unique solutions. TV: moved mass is split equally among the
  outcomes whose score equals the maximum exactly; outcomes exactly at the threshold keep
  :math:`\pi_{init}`. Grid rules take the first maximizer. (Utilities do not depend on this.)
* Payments are not clamped (they are :math:`\ge 0` up to rounding, ~1e-15).
* Normalization of reward models: ``max`` (each row's maximum is 1) or ``sum`` (each row sums
  to 1); all-zero rows stay zero. Every misreport keeps the row normalized the same way:

  - size inflation: :math:`\tilde w_i = \alpha w_i`;
  - blend: :math:`\widetilde{rm}_i = \mathrm{normalize}(\beta\, rm_i + (1-\beta)
    \overline{rm}_{-i})`, :math:`\overline{rm}_{-i}` the mean of the OTHER groups' current
    reports (a no-op renormalization under ``sum``);
  - epsilon shift toward the favourite outcome :math:`y^*_i = \arg\max_y rm_i(y)` (first one):
    :math:`\widetilde{rm}_i = rm_i + \epsilon(e_{y^*_i} - c\,\mathbf 1)` with :math:`c = 1`
    under ``max`` (the favourite stays at 1, every other outcome drops by :math:`\epsilon`) and
    :math:`c = 1/|\mathcal Y|` under ``sum`` (the sum stays 1). Since
    :math:`\langle\pi, \mathbf 1\rangle = 1` for every policy, adding a constant to a report
    changes neither the rule nor any payment, so this is the same misreport as
    :math:`rm_i + \epsilon e_{y^*_i}`, normalized. (Rescaling :math:`(rm_i + \epsilon e_{y^*})
    /(1 + \epsilon)` instead would mix in a shrinking of the group's weight, a different lie.)
    The shifted row may dip up to :math:`\epsilon c` below 0; it is not clipped.
* Grid rule (policy space (b)): a finite set of G candidate policies, each with estimated
  valuations :math:`V_{g,i} \approx E_{\pi_g}[rm_i]` and divergence :math:`D_g`; the rule picks
  :math:`\arg\max_g \sum_i \tilde w_i \tilde V_{g,i} - D_g` and charges the same affine-maximizer
  payment with the "without i" choice over the same grid. Grid blends mix valuations linearly
  (no renormalization: over sampled text there is no finite row to normalize).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Divergence = Literal["kl", "chi2", "tv"]
Normalization = Literal["max", "sum"]
AffinePayment = Literal["affine_maximizer", "none"]
Misreport = Literal["alpha", "beta", "epsilon"]
GroupDistortion = Literal["reward_scale", "blend"]

DIVERGENCES = ("kl", "chi2", "tv")


def _check(divergence: str, lam: float) -> None:
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be kl, chi2 or tv, got {divergence!r}")
    if not lam > 0:
        raise ValueError(f"lambda must be > 0, got {lam}")


def normalize_rewards(rewards: np.ndarray, normalization: Normalization = "max") -> np.ndarray:
    """Normalize each reward row by its maximum or by its sum (all-zero rows stay zero).

    Args:
        rewards: ``[..., Y]`` non-negative rewards.
        normalization: ``max`` or ``sum``.

    Returns:
        ``[..., Y]`` float64.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    if normalization == "max":
        scale = rewards.max(-1, keepdims=True)
    elif normalization == "sum":
        scale = rewards.sum(-1, keepdims=True)
    else:
        raise ValueError(f"normalization must be max or sum, got {normalization!r}")
    return np.where(scale > 0, rewards / np.where(scale > 0, scale, 1.0), 0.0)


def f_divergence(
    policy: np.ndarray, init: np.ndarray, divergence: Divergence, lam: float
) -> np.ndarray:
    r""":math:`D_f(\pi \| \pi_{init}) = \sum_y \pi_{init}(y) f(\pi(y)/\pi_{init}(y))`.

    Args:
        policy: ``[..., Y]`` :math:`\pi`.
        init: ``[..., Y]`` :math:`\pi_{init}` (broadcasts).
        divergence: ``kl`` (:math:`\lambda x\log x`), ``chi2`` (:math:`\lambda(x-1)^2`) or
            ``tv`` (:math:`\lambda|x-1|`, extended by :math:`\lambda\pi(y)` where
            :math:`\pi_{init}(y) = 0`).
        lam: :math:`\lambda > 0`.

    Returns:
        ``[...]``; ``inf`` for KL / chi-squared mass outside :math:`\pi_{init}`'s support.
    """
    _check(divergence, lam)
    policy = np.asarray(policy, dtype=np.float64)
    init = np.broadcast_to(np.asarray(init, dtype=np.float64), policy.shape)
    if divergence == "tv":
        return lam * np.abs(policy - init).sum(-1)
    outside = ((policy > 0) & (init <= 0)).any(-1)
    safe_init = np.where(init > 0, init, 1.0)
    if divergence == "kl":
        safe_policy = np.where(policy > 0, policy, 1.0)
        terms = np.where(policy > 0, policy * np.log(safe_policy / safe_init), 0.0)
    else:
        terms = np.where(init > 0, (policy - init) ** 2 / safe_init, 0.0)
    return np.where(outside, np.inf, lam * terms.sum(-1))


def regularized_value(
    policy: np.ndarray, scores: np.ndarray, init: np.ndarray, divergence: Divergence, lam: float
) -> np.ndarray:
    r""":math:`\langle \pi, g\rangle - D_f(\pi \| \pi_{init})`.

    Args:
        policy: ``[..., Y]``.
        scores: ``[..., Y]`` g (broadcasts).
        init: ``[..., Y]`` (broadcasts).
        divergence: ``kl``, ``chi2`` or ``tv``.
        lam: :math:`\lambda`.

    Returns:
        ``[...]``.
    """
    policy = np.asarray(policy, dtype=np.float64)
    return (policy * scores).sum(-1) - f_divergence(policy, init, divergence, lam)


def as_float_pair(scores: np.ndarray, init: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scores`` and ``init`` as float64 arrays broadcast to one shape ``[..., Y]``."""
    scores, init = np.broadcast_arrays(
        np.asarray(scores, dtype=np.float64), np.asarray(init, dtype=np.float64)
    )
    return scores, init


def solve_kl(scores: np.ndarray, init: np.ndarray, lam: float) -> np.ndarray:
    r""":math:`\pi^* \propto \pi_{init} \exp(g/\lambda)`.

    Args:
        scores: ``[..., Y]`` g.
        init: ``[..., Y]`` (broadcasts).
        lam: :math:`\lambda > 0`.

    Returns:
        ``[..., Y]``.
    """
    scores, init = as_float_pair(scores, init)
    logits = np.where(init > 0, np.log(np.where(init > 0, init, 1.0)) + scores / lam, -np.inf)
    logits = logits - logits.max(-1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(-1, keepdims=True)


def chi2_threshold(scores: np.ndarray, init: np.ndarray, lam: float) -> np.ndarray:
    r"""The water level t of the chi-squared solution, found exactly by sorting.

    Args:
        scores: ``[..., Y]`` g.
        init: ``[..., Y]`` (broadcasts; rows sum to 1).
        lam: :math:`\lambda > 0`.

    Returns:
        ``[...]`` t with :math:`\sum_y \pi_{init}(y)(g_y - t)_+ = 2\lambda`.
    """
    scores, init = as_float_pair(scores, init)
    on_support = init > 0
    keyed = np.where(on_support, scores, -np.inf)
    order = np.argsort(-keyed, axis=-1, kind="stable")
    g_sorted = np.take_along_axis(keyed, order, -1)
    p_sorted = np.take_along_axis(np.where(on_support, init, 0.0), order, -1)
    mass = np.cumsum(p_sorted, -1)
    weighted = np.cumsum(p_sorted * np.where(p_sorted > 0, g_sorted, 0.0), -1)
    t = (weighted - 2.0 * lam) / np.where(mass > 0, mass, 1.0)
    next_g = np.concatenate([g_sorted[..., 1:], np.full_like(g_sorted[..., :1], -np.inf)], -1)
    valid = (p_sorted > 0) & (g_sorted > t) & (next_g <= t)
    if not valid.any(-1).all():
        raise RuntimeError("chi-squared water level not found (is init a distribution?)")
    k = np.argmax(valid, axis=-1)
    return np.take_along_axis(t, k[..., None], -1)[..., 0]


def solve_chi2(scores: np.ndarray, init: np.ndarray, lam: float) -> np.ndarray:
    r""":math:`\pi^*(y) = \pi_{init}(y)(g_y - t)_+/(2\lambda)`, t from :func:`chi2_threshold`.

    Args:
        scores: ``[..., Y]`` g.
        init: ``[..., Y]`` (broadcasts).
        lam: :math:`\lambda > 0`.

    Returns:
        ``[..., Y]``.
    """
    scores, init = as_float_pair(scores, init)
    t = chi2_threshold(scores, init, lam)[..., None]
    policy = np.where(init > 0, init * np.maximum(scores - t, 0.0) / (2.0 * lam), 0.0)
    return policy / policy.sum(-1, keepdims=True)


def solve_tv(scores: np.ndarray, init: np.ndarray, lam: float) -> np.ndarray:
    r"""Exact TV solution: outcomes with :math:`g_y < g_{max} - 2\lambda` move to the argmax.

    Args:
        scores: ``[..., Y]`` g.
        init: ``[..., Y]`` (broadcasts).
        lam: :math:`\lambda > 0`.

    Returns:
        ``[..., Y]``.
    """
    scores, init = as_float_pair(scores, init)
    top = scores.max(-1, keepdims=True)
    donors = scores < top - 2.0 * lam
    moved = np.where(donors, init, 0.0).sum(-1, keepdims=True)
    winners = scores == top
    share = moved / winners.sum(-1, keepdims=True)
    return np.where(donors, 0.0, init) + np.where(winners, share, 0.0)


def solve_policy(
    scores: np.ndarray, init: np.ndarray, divergence: Divergence, lam: float
) -> np.ndarray:
    r""":math:`\arg\max_\pi \langle \pi, g\rangle - D_f(\pi\|\pi_{init})`, exactly.

    Args:
        scores: ``[..., Y]`` g.
        init: ``[..., Y]`` (broadcasts).
        divergence: ``kl``, ``chi2`` or ``tv``.
        lam: :math:`\lambda > 0`.

    Returns:
        ``[..., Y]``.
    """
    _check(divergence, lam)
    if divergence == "kl":
        return solve_kl(scores, init, lam)
    if divergence == "chi2":
        return solve_chi2(scores, init, lam)
    return solve_tv(scores, init, lam)


@dataclass(frozen=True)
class AffineMaximizerOutcome:
    r"""Result of the affine maximizer over a finite outcome set.

    Attributes:
        policy: ``[B, Y]`` :math:`\pi^*`.
        policies_without: ``[B, n, Y]`` :math:`\pi^*_{-i}`.
        payments: ``[B, n]`` :math:`p_i` (zeros for ``payment="none"``).
        valuations: ``[B, n]`` :math:`E_{\pi^*}[rm_i]` with the TRUE reward models.
        values: ``[B, n]`` :math:`w_i E_{\pi^*}[rm_i]` with TRUE sizes and reward models.
        utilities: ``[B, n]`` values minus payments.
        objective: ``[B]`` the reported objective at :math:`\pi^*`.
    """

    policy: np.ndarray
    policies_without: np.ndarray
    payments: np.ndarray
    valuations: np.ndarray
    values: np.ndarray
    utilities: np.ndarray
    objective: np.ndarray


def run_affine_maximizer(
    reported_rewards: np.ndarray,
    reported_weights: np.ndarray,
    init: np.ndarray,
    divergence: Divergence = "kl",
    lam: float = 1.0,
    payment: AffinePayment = "affine_maximizer",
    true_rewards: np.ndarray | None = None,
    true_weights: np.ndarray | None = None,
) -> AffineMaximizerOutcome:
    r"""Rule, payments and utilities over a finite outcome set.

    Args:
        reported_rewards: ``[B, n, Y]`` reported :math:`\widetilde{rm}_i`.
        reported_weights: ``[B, n]`` reported sizes :math:`\tilde w_i`.
        init: ``[B, Y]`` or ``[Y]`` :math:`\pi_{init}`.
        divergence: ``kl``, ``chi2`` or ``tv``.
        lam: :math:`\lambda > 0`.
        payment: ``affine_maximizer`` or ``none``.
        true_rewards: ``[B, n, Y]`` TRUE reward models (default: the reports).
        true_weights: ``[B, n]`` TRUE sizes (default: the reports).

    Returns:
        The outcome.
    """
    _check(divergence, lam)
    if payment not in ("affine_maximizer", "none"):
        raise ValueError(f"payment must be affine_maximizer or none, got {payment!r}")
    rewards = np.asarray(reported_rewards, dtype=np.float64)
    weights = np.asarray(reported_weights, dtype=np.float64)
    init = np.asarray(init, dtype=np.float64)
    weighted = weights[..., None] * rewards  # [B, n, Y]
    scores = weighted.sum(-2)
    policy = solve_policy(scores, init, divergence, lam)
    scores_without = scores[..., None, :] - weighted
    init_rows = init[..., None, :]
    policies_without = solve_policy(scores_without, init_rows, divergence, lam)
    if payment == "affine_maximizer":
        best_without = regularized_value(
            policies_without, scores_without, init_rows, divergence, lam
        )
        at_policy = regularized_value(
            policy[..., None, :], scores_without, init_rows, divergence, lam
        )
        payments = best_without - at_policy
    else:
        payments = np.zeros(weights.shape, dtype=np.float64)
    truth_rewards = rewards if true_rewards is None else np.asarray(true_rewards, np.float64)
    truth_weights = weights if true_weights is None else np.asarray(true_weights, np.float64)
    valuations = (policy[..., None, :] * truth_rewards).sum(-1)
    values = truth_weights * valuations
    return AffineMaximizerOutcome(
        policy=policy,
        policies_without=policies_without,
        payments=payments,
        valuations=valuations,
        values=values,
        utilities=values - payments,
        objective=regularized_value(policy, scores, init, divergence, lam),
    )


def distorted_reward_models(
    true_rewards: np.ndarray,
    scales: np.ndarray,
    distortion: GroupDistortion,
    normalization: Normalization = "max",
) -> np.ndarray:
    r"""Reported reward models of groups that each distort their own by a scale.

    * ``reward_scale``: :math:`\widetilde{rm}_i = s_i\,rm_i` (not renormalized: in the rule it
      acts exactly like the size inflation :math:`\tilde w_i = s_i w_i`).
    * ``blend``: :math:`\widetilde{rm}_i = \mathrm{normalize}\big(\max(0, s_i\,rm_i + (1 - s_i)
      \overline{rm}_{-i})\big)`, :math:`\overline{rm}_{-i}` the mean of the OTHER groups' TRUE
      reward models (what the platform holds; using true rows keeps simultaneous blends well
      defined). :math:`s < 1` blends toward the others, :math:`s > 1` exaggerates what sets
      the group apart (clipped at 0, then renormalized).

    Truthful is :math:`s_i = 1` under both.

    Args:
        true_rewards: ``[..., n, Y]`` true normalized reward models.
        scales: ``[..., n]`` each group's scale.
        distortion: ``reward_scale`` or ``blend``.
        normalization: ``max`` or ``sum`` (blends only).

    Returns:
        ``[..., n, Y]`` float64.
    """
    rewards = np.asarray(true_rewards, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64)[..., None]
    if distortion == "reward_scale":
        return scales * rewards
    if distortion != "blend":
        raise ValueError(f"distortion must be reward_scale or blend, got {distortion!r}")
    n = rewards.shape[-2]
    if n < 2:
        raise ValueError("a blend needs at least one other group")
    others = (rewards.sum(-2, keepdims=True) - rewards) / (n - 1)
    blended = np.maximum(scales * rewards + (1 - scales) * others, 0.0)
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
    """
    valuations = np.asarray(valuations, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64)[..., None, :]
    if distortion == "reward_scale":
        return scales * valuations
    if distortion != "blend":
        raise ValueError(f"distortion must be reward_scale or blend, got {distortion!r}")
    n = valuations.shape[-1]
    if n < 2:
        raise ValueError("a blend needs at least one other group")
    others = (valuations.sum(-1, keepdims=True) - valuations) / (n - 1)
    return scales * valuations + (1 - scales) * others


def favourite_outcomes(rewards: np.ndarray) -> np.ndarray:
    """Index of each row's favourite outcome (first maximum).

    Args:
        rewards: ``[..., Y]``.

    Returns:
        ``[...]`` int.
    """
    return np.argmax(np.asarray(rewards), axis=-1)


def epsilon_shift(
    rewards: np.ndarray, epsilon: float | np.ndarray, normalization: Normalization = "max"
) -> np.ndarray:
    r""":math:`rm + \epsilon(e_{y^*} - c\mathbf 1)`, c = 1 (``max``) or 1/Y (``sum``).

    Args:
        rewards: ``[..., Y]`` normalized true reward rows.
        epsilon: Scalar or ``[...]`` shift sizes (broadcast against the leading shape).
        normalization: ``max`` or ``sum``.

    Returns:
        ``[..., Y]`` shifted rows (same maximum / same sum as the input).
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    size = rewards.shape[-1]
    if normalization == "max":
        level = 1.0
    elif normalization == "sum":
        level = 1.0 / size
    else:
        raise ValueError(f"normalization must be max or sum, got {normalization!r}")
    favourite = np.eye(size)[favourite_outcomes(rewards)]
    eps = np.asarray(epsilon, dtype=np.float64)[..., None]
    return rewards + eps * (favourite - level)


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
        kind: ``alpha`` (:math:`\tilde w_i = \alpha w_i`), ``beta`` (blend toward the others'
            mean, renormalized) or ``epsilon`` (shift toward the favourite outcome).
        values: ``[K]`` the :math:`\alpha`, :math:`\beta` or :math:`\epsilon` values (truthful:
            1, 1, 0).
        normalization: ``max`` or ``sum`` (how the rows are normalized).
        reported_rewards: ``[B, n, Y]`` the others' reports (default: truthful).
        reported_weights: ``[B, n]`` the others' reported sizes (default: truthful).

    Returns:
        ``(rewards [B, K, n, Y], weights [B, K, n])``.
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
        n = rewards.shape[-2]
        if n < 2:
            raise ValueError("a blend needs at least one other group")
        others = (rewards.sum(-2) - rewards[..., agent, :]) / (n - 1)  # [B, Y]
        blend = values[:, None] * own[..., None, :] + (1 - values[:, None]) * others[..., None, :]
        rewards_k[..., agent, :] = normalize_rewards(blend, normalization)
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


@dataclass(frozen=True)
class GridOutcome:
    """Result of the affine maximizer over a finite grid of G policies.

    Attributes:
        choice: ``[B]`` index of the chosen policy.
        choices_without: ``[B, n]`` the choice without group i.
        payments: ``[B, n]``.
        valuations: ``[B, n]`` TRUE :math:`V_{choice, i}`.
        values: ``[B, n]`` TRUE :math:`w_i V_{choice, i}`.
        utilities: ``[B, n]``.
    """

    choice: np.ndarray
    choices_without: np.ndarray
    payments: np.ndarray
    valuations: np.ndarray
    values: np.ndarray
    utilities: np.ndarray


def run_grid_affine_maximizer(
    reported_valuations: np.ndarray,
    divergences: np.ndarray,
    reported_weights: np.ndarray,
    payment: AffinePayment = "affine_maximizer",
    true_valuations: np.ndarray | None = None,
    true_weights: np.ndarray | None = None,
) -> GridOutcome:
    r"""Choose :math:`\arg\max_g \sum_i \tilde w_i \tilde V_{g,i} - D_g`; charge grid payments.

    :math:`p_i = \max_g A_{-i}(g) - A_{-i}(g^*)` with
    :math:`A_{-i}(g) = \sum_{j\ne i}\tilde w_j \tilde V_{g,j} - D_g`.

    Args:
        reported_valuations: ``[B, G, n]`` reported (estimated) :math:`E_{\pi_g}[\widetilde{rm}_i]`.
        divergences: ``[B, G]`` or ``[G]`` (estimated) :math:`D_f(\pi_g\|\pi_{init})`.
        reported_weights: ``[B, n]`` reported sizes.
        payment: ``affine_maximizer`` or ``none``.
        true_valuations: ``[B, G, n]`` TRUE valuations (default: the reported ones).
        true_weights: ``[B, n]`` TRUE sizes (default: the reported ones).

    Returns:
        The outcome; ties go to the first grid point.
    """
    if payment not in ("affine_maximizer", "none"):
        raise ValueError(f"payment must be affine_maximizer or none, got {payment!r}")
    valuations = np.asarray(reported_valuations, dtype=np.float64)
    weights = np.asarray(reported_weights, dtype=np.float64)
    divergences = np.asarray(divergences, dtype=np.float64)
    weighted = weights[..., None, :] * valuations  # [B, G, n]
    objective = weighted.sum(-1) - divergences  # [B, G]
    choice = np.argmax(objective, axis=-1)
    without = objective[..., None, :] - np.swapaxes(weighted, -1, -2)  # [B, n, G]
    choices_without = np.argmax(without, axis=-1)
    if payment == "affine_maximizer":
        at_choice = np.take_along_axis(
            without, np.broadcast_to(choice[..., None, None], without.shape[:-1] + (1,)), -1
        )[..., 0]
        payments = without.max(-1) - at_choice
    else:
        payments = np.zeros(weights.shape, dtype=np.float64)
    truth_v = valuations if true_valuations is None else np.asarray(true_valuations, np.float64)
    truth_v = np.broadcast_to(truth_v, np.broadcast_shapes(truth_v.shape, valuations.shape))
    truth_w = weights if true_weights is None else np.asarray(true_weights, np.float64)
    index = np.broadcast_to(choice[..., None, None], truth_v.shape[:-2] + (1, truth_v.shape[-1]))
    chosen = np.take_along_axis(truth_v, index, -2)[..., 0, :]
    values = truth_w * chosen
    return GridOutcome(
        choice=choice,
        choices_without=choices_without,
        payments=payments,
        valuations=chosen,
        values=values,
        utilities=values - payments,
    )


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
    r"""Grid version of :func:`misreport_utilities` (``alpha`` or linear ``beta`` blends).

    Args:
        true_valuations: ``[B, G, n]`` true valuations per grid point.
        true_weights: ``[B, n]`` true sizes.
        divergences: ``[B, G]`` or ``[G]``.
        agent: The deviating group i.
        kind: ``alpha`` (:math:`\tilde w_i = \alpha w_i`) or ``beta``
            (:math:`\tilde V_{\cdot,i} = \beta V_{\cdot,i} + (1-\beta)\bar V_{\cdot,-i}`).
        values: ``[K]`` parameters.
        payment: ``affine_maximizer`` or ``none``.
        reported_valuations: ``[B, G, n]`` the others' reports (default: truthful).
        reported_weights: ``[B, n]`` the others' reported sizes (default: truthful).

    Returns:
        ``[B, K]`` group i's true utilities.
    """
    true_v = np.asarray(true_valuations, dtype=np.float64)
    true_w = np.asarray(true_weights, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    rep_v = true_v if reported_valuations is None else np.asarray(reported_valuations, np.float64)
    rep_w = true_w if reported_weights is None else np.asarray(reported_weights, np.float64)
    count = values.shape[0]
    v_k = np.repeat(rep_v[..., None, :, :], count, axis=-3).copy()  # [B, K, G, n]
    w_k = np.repeat(rep_w[..., None, :], count, axis=-2).copy()  # [B, K, n]
    own = true_v[..., agent]  # [B, G]
    v_k[..., agent] = own[..., None, :]
    w_k[..., agent] = true_w[..., agent, None]
    if kind == "alpha":
        w_k[..., agent] = true_w[..., agent, None] * values
    elif kind == "beta":
        n = rep_v.shape[-1]
        if n < 2:
            raise ValueError("a blend needs at least one other group")
        others = (rep_v.sum(-1) - rep_v[..., agent]) / (n - 1)  # [B, G]
        v_k[..., agent] = (
            values[:, None] * own[..., None, :] + (1 - values[:, None]) * others[..., None, :]
        )
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
