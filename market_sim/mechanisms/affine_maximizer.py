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

Source: H. Sun, Y. Chen, S. Wang, X. Chu, W. Chen and X. Deng, "Mechanism Design for LLM
Fine-tuning with Multiple Reward Models", NeurIPS 2025 (arXiv:2405.16276): SW-Max training
rules and the affine-maximizer payments that implement them in dominant strategies. The exact
solvers below, the finite outcome set and the reward-model normalizations are this project's.

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
  solution is the k with :math:`g_{(k)} > t_k \ge g_{(k+1)}`: exact, no iteration. It is found
  as the LARGEST k with :math:`g_{(k)} > t_k`: that condition reads
  :math:`\sum_{j \le k} \pi_{init}(j)(g_{(j)} - g_{(k)}) < 2\lambda`, whose left side grows
  with k, so it holds exactly on a prefix of k, and the last k of the prefix also has
  :math:`t_k \ge g_{(k+1)}`. Searching for the two-sided condition instead fails when
  :math:`\lambda` puts t on a breakpoint (:math:`t = g_{(k+1)}`, e.g. scores (0.3, 0.1), uniform
  init, :math:`\lambda = 0.05`), where rounding can break both inequalities.
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
  to 1); all-zero rows stay zero. How a group misreports (size inflation, reward scale, blend,
  epsilon shift) is defined once, in :mod:`market_sim.mechanisms.affine_misreports`; what each
  misreport earns is computed by :mod:`market_sim.mechanisms.affine_misreport_utilities`.
* Grid rule (policy space (b)): a finite set of G candidate policies, each with estimated
  valuations :math:`V_{g,i} \approx E_{\pi_g}[rm_i]` and divergence :math:`D_g`; the rule picks
  :math:`\arg\max_g \sum_i \tilde w_i \tilde V_{g,i} - D_g` and charges the same affine-maximizer
  payment with the "without i" choice over the same grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Divergence = Literal["kl", "chi2", "tv"]
Normalization = Literal["max", "sum"]
AffinePayment = Literal["affine_maximizer", "none"]

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


def _as_float_pair(scores: np.ndarray, init: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    scores, init = _as_float_pair(scores, init)
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
    scores, init = _as_float_pair(scores, init)
    on_support = init > 0
    keyed = np.where(on_support, scores, -np.inf)
    order = np.argsort(-keyed, axis=-1, kind="stable")
    g_sorted = np.take_along_axis(keyed, order, -1)
    p_sorted = np.take_along_axis(np.where(on_support, init, 0.0), order, -1)
    mass = np.cumsum(p_sorted, -1)
    weighted = np.cumsum(p_sorted * np.where(p_sorted > 0, g_sorted, 0.0), -1)
    t = (weighted - 2.0 * lam) / np.where(mass > 0, mass, 1.0)
    valid = (p_sorted > 0) & (g_sorted > t)
    if not valid.any(-1).all():
        raise RuntimeError("chi-squared water level not found (is init a distribution?)")
    last = valid.shape[-1] - 1 - np.argmax(valid[..., ::-1], axis=-1)  # largest valid k
    return np.take_along_axis(t, last[..., None], -1)[..., 0]


def solve_chi2(scores: np.ndarray, init: np.ndarray, lam: float) -> np.ndarray:
    r""":math:`\pi^*(y) = \pi_{init}(y)(g_y - t)_+/(2\lambda)`, t from :func:`chi2_threshold`.

    Args:
        scores: ``[..., Y]`` g.
        init: ``[..., Y]`` (broadcasts).
        lam: :math:`\lambda > 0`.

    Returns:
        ``[..., Y]``.
    """
    scores, init = _as_float_pair(scores, init)
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
    scores, init = _as_float_pair(scores, init)
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
