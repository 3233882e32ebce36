r"""MOSAIC-style sampling auction: one whole reply chosen among M sampled candidates.

Pure tensor math (docs/design.md, section 3.2), float64, vectorized over any leading batch
shape (written ``[A, ...]`` below: A auctions; a single auction simply drops the A). n
advertisers report
rewards :math:`\tilde r_i(y_j)` for M candidates :math:`y_1..y_M` drawn i.i.d. from a proposal
:math:`\pi_{gen}` (the reference model :math:`\pi_{ref}` itself, or a context-aware LM).

Source: E. Soumalias, M. J. Curry and S. Seuken, "Truthful Aggregation of LLMs with an
Application to Online Advertising", NeurIPS 2025 (arXiv:2405.05905), which introduces MOSAIC:
M candidates from a proposal LM, importance-weighted selection towards the KL-regularized
optimum, and a payment that makes truthful reward reports dominant. The formulas below, the
derivation and the report model (a reward scale and a relevance exponent) are this project's
reading of it; "MOSAIC-style" because details the paper leaves open are chosen here and named
where they are made.

Allocation. With :math:`R = \sum_i \tilde r_i`, temperature :math:`\tau > 0`,

.. math::

    l_j = \log \pi_{ref}(y_j) - \log \pi_{gen}(y_j), \qquad
    S_j = R(y_j)/\tau + l_j, \qquad q = \mathrm{softmax}(S),

    U(R) = \tau \log\Big(\frac1M \sum_{j=1}^M \exp\big(R(y_j)/\tau + l_j\big)\Big).

The reply is :math:`y_j` with probability :math:`q_j`: self-normalized importance sampling of the
KL-regularized optimum :math:`\pi^*(y) \propto \pi_{ref}(y)\exp(R(y)/\tau)`, which it reaches as
:math:`M \to \infty` (for M = 1 the output is simply :math:`\pi_{gen}`).

Payment.

.. math::

    \mathrm{pay}_i = E_q[\tilde r_i] - \big(U(R) - U(R - \tilde r_i)\big).

Derivation (the candidates are fixed; they are drawn before and independently of the reports).
Let :math:`a_j = e^{l_j}/M` and, for :math:`p` in the simplex over the M candidates,
:math:`W(p; R) = \sum_j p_j R(y_j) - \tau \sum_j p_j \log(p_j / a_j)`. By the Gibbs variational
principle :math:`U(R) = \max_p W(p; R)`, attained only at :math:`p = \mathrm{softmax}(S) = q(R)`
(the objective is strictly concave). Advertiser i with true reward :math:`r_i` who reports
:math:`\tilde r_i` while the others report :math:`R_{-i}` obtains, with :math:`q = q(R_{-i} +
\tilde r_i)`,

.. math::

    u_i = E_q[r_i] - E_q[\tilde r_i] + U(R_{-i} + \tilde r_i) - U(R_{-i})
        = E_q[r_i] + E_q[R_{-i}] - \tau \sum_j q_j \log\frac{q_j}{a_j} - U(R_{-i})
        = W(q; R_{-i} + r_i) - U(R_{-i})

(using :math:`U(R_{-i} + \tilde r_i) = W(q; R_{-i} + \tilde r_i)`). The last term does not depend
on i's report and :math:`W(\cdot; R_{-i} + r_i)` is maximized exactly by the truthful choice
:math:`q(R_{-i} + r_i)`, so truthful reporting is optimal for ANY finite M (uniquely, up to
reports that induce the same q, e.g. adding a constant). It is the VCG mechanism of the
entropy-regularized welfare :math:`W`. The truthful utility is
:math:`U(R) - U(R_{-i}) \ge 0` whenever :math:`r_i \ge 0` (U is increasing in every
:math:`R(y_j)`): individual rationality. Payments are non-negative because U is convex with
gradient :math:`\nabla U(R) = q`:
:math:`U(R - \tilde r_i) \ge U(R) - \langle q, \tilde r_i\rangle`, i.e.
:math:`\mathrm{pay}_i \ge 0`; and :math:`\mathrm{pay}_i \le E_q[\tilde r_i]` when
:math:`\tilde r_i \ge 0`. Nothing here needs :math:`\pi_{gen} = \pi_{ref}`: the importance
weights only enter through :math:`a_j`, which no advertiser controls (the context-aware proposal
conditions on brand CONTEXTS, not on reported rewards; a proposal that read the reports would
break the argument).

Choices made here (the description leaves them open):

* ``payment = "none"`` charges nothing (the no-payment comparison); values and utilities are
  always computed with the TRUE rewards :math:`r_i`, payments with the reported ones.
* Rewards are inputs. On the LM the platform derives them from the relevance score
  :math:`s_i` of :mod:`market_sim.mechanisms.relevance`: true :math:`r_i = v_i s_i`, reported
  :math:`\tilde r_i = b_i s_i^{\gamma_i}` (docs/design.md, section 3.2.2).
* How close the M-candidate scheme's reply distribution comes to :math:`\pi^*` as M grows is
  analysed in :mod:`market_sim.mechanisms.mosaic_output_distribution`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from market_sim.mechanisms.options import MosaicPayment


def as_float64(x: torch.Tensor | np.ndarray | Sequence[float]) -> torch.Tensor:
    """``x`` as a float64 tensor (MOSAIC's math runs in float64 whatever the input)."""
    return torch.as_tensor(x, dtype=torch.float64)


def _check_tau(tau: float) -> None:
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")


def importance_log_weights(ref_logprobs: torch.Tensor, gen_logprobs: torch.Tensor) -> torch.Tensor:
    r""":math:`l_j = \log \pi_{ref}(y_j) - \log \pi_{gen}(y_j)`.

    Args:
        ref_logprobs: ``[A, M]`` sequence log-probabilities under :math:`\pi_{ref}`.
        gen_logprobs: ``[A, M]`` sequence log-probabilities under the proposal (finite: the
            candidates were drawn from it).

    Returns:
        ``[A, M]`` float64 (``-inf`` where :math:`\pi_{ref}(y_j) = 0`).
    """
    return as_float64(ref_logprobs) - as_float64(gen_logprobs)


def mosaic_scores(
    total_rewards: torch.Tensor, log_weights: torch.Tensor, tau: float
) -> torch.Tensor:
    r""":math:`S_j = R(y_j)/\tau + l_j`.

    Args:
        total_rewards: ``[A, M]`` :math:`R(y_j)`.
        log_weights: ``[A, M]`` :math:`l_j`.
        tau: Temperature :math:`\tau > 0`.

    Returns:
        ``[A, M]``.
    """
    _check_tau(tau)
    return as_float64(total_rewards) / tau + as_float64(log_weights)


def selection_probabilities(
    total_rewards: torch.Tensor, log_weights: torch.Tensor, tau: float
) -> torch.Tensor:
    r""":math:`q = \mathrm{softmax}(S)` over the M candidates.

    Args:
        total_rewards: ``[A, M]`` :math:`R(y_j)`.
        log_weights: ``[A, M]`` :math:`l_j`.
        tau: Temperature.

    Returns:
        ``[A, M]`` rows summing to 1.
    """
    return torch.softmax(mosaic_scores(total_rewards, log_weights, tau), dim=-1)


def log_partition(
    total_rewards: torch.Tensor, log_weights: torch.Tensor, tau: float
) -> torch.Tensor:
    r""":math:`U(R) = \tau \log\big(\frac1M \sum_j \exp(R(y_j)/\tau + l_j)\big)`.

    Args:
        total_rewards: ``[A, M]`` :math:`R(y_j)`.
        log_weights: ``[A, M]`` :math:`l_j`.
        tau: Temperature.

    Returns:
        ``[A]``.
    """
    scores = mosaic_scores(total_rewards, log_weights, tau)
    return tau * (torch.logsumexp(scores, dim=-1) - math.log(scores.shape[-1]))


@dataclass(frozen=True)
class MosaicOutcome:
    r"""Allocation, payments and utilities of A MOSAIC auctions.

    Attributes:
        probabilities: ``[A, M]`` selection probabilities q.
        payments: ``[A, n]``.
        reported_values: ``[A, n]`` :math:`E_q[\tilde r_i]`.
        values: ``[A, n]`` :math:`E_q[r_i]` with the TRUE rewards.
        utilities: ``[A, n]`` values minus payments.
        log_partition: ``[A]`` :math:`U(R)`.
        log_partition_without: ``[A, n]`` :math:`U(R - \tilde r_i)`.
    """

    probabilities: torch.Tensor
    payments: torch.Tensor
    reported_values: torch.Tensor
    values: torch.Tensor
    utilities: torch.Tensor
    log_partition: torch.Tensor
    log_partition_without: torch.Tensor


def run_mosaic(
    reported: torch.Tensor,
    log_weights: torch.Tensor,
    tau: float,
    true_rewards: torch.Tensor | None = None,
    payment: MosaicPayment = "mosaic",
) -> MosaicOutcome:
    r"""Selection probabilities, payments and utilities for fixed candidates.

    Args:
        reported: ``[A, n, M]`` reported rewards :math:`\tilde r_i(y_j)`.
        log_weights: ``[A, M]`` importance log-weights :math:`l_j`.
        tau: Temperature :math:`\tau > 0`.
        true_rewards: ``[A, n, M]`` true rewards :math:`r_i(y_j)` (values use these); None
            when every report is truthful.
        payment: ``mosaic`` (the payment above) or ``none``.

    Returns:
        The outcome, float64.
    """
    if payment not in ("mosaic", "none"):
        raise ValueError(f"payment must be 'mosaic' or 'none', got {payment!r}")
    reported = as_float64(reported)
    log_weights = as_float64(log_weights)
    total = reported.sum(-2)
    probs = selection_probabilities(total, log_weights, tau)
    partition = log_partition(total, log_weights, tau)
    partition_without = log_partition(
        total.unsqueeze(-2) - reported, log_weights.unsqueeze(-2), tau
    )
    reported_values = (probs.unsqueeze(-2) * reported).sum(-1)
    if payment == "mosaic":
        payments = reported_values - (partition.unsqueeze(-1) - partition_without)
    else:
        payments = torch.zeros_like(reported_values)
    truth = reported if true_rewards is None else as_float64(true_rewards)
    values = (probs.unsqueeze(-2) * truth).sum(-1)
    return MosaicOutcome(
        probabilities=probs,
        payments=payments,
        reported_values=reported_values,
        values=values,
        utilities=values - payments,
        log_partition=partition,
        log_partition_without=partition_without,
    )


@dataclass(frozen=True)
class DeviationOutcome:
    """One advertiser's K alternative reports, the others' reports and the candidates fixed.

    Attributes:
        probabilities: ``[..., K, M]`` selection probabilities under each report.
        payments: ``[..., K]`` the advertiser's payment under each report.
    """

    probabilities: torch.Tensor
    payments: torch.Tensor


def deviation_outcomes(
    others_total: torch.Tensor,
    deviations: torch.Tensor,
    log_weights: torch.Tensor,
    tau: float,
    payment: MosaicPayment = "mosaic",
) -> DeviationOutcome:
    r"""Selection and payment when one advertiser reports each of K reward vectors.

    With :math:`R_{-i}` the others' summed reports and :math:`\tilde r^{(k)}` the k-th
    alternative report: :math:`q^{(k)} = \mathrm{softmax}((R_{-i} + \tilde r^{(k)})/\tau + l)`,
    :math:`\mathrm{pay}^{(k)} = \langle q^{(k)}, \tilde r^{(k)}\rangle
    - (U(R_{-i} + \tilde r^{(k)}) - U(R_{-i}))` (0 with ``payment = "none"``). Any report
    shape is allowed (scaled, sharpened, arbitrary). This is the platform's counterfactual
    (:mod:`market_sim.platform.mosaic`); with the advertiser's true rewards, its utility under
    report k is :math:`\langle q^{(k)}, r_i\rangle - \mathrm{pay}^{(k)}`.

    Args:
        others_total: ``[..., M]`` :math:`R_{-i}(y_j)`.
        deviations: ``[..., K, M]`` the alternative reports :math:`\tilde r^{(k)}(y_j)`.
        log_weights: ``[..., M]`` importance log-weights.
        tau: Temperature.
        payment: ``mosaic`` or ``none``.

    Returns:
        Probabilities ``[..., K, M]`` and payments ``[..., K]``, float64.
    """
    if payment not in ("mosaic", "none"):
        raise ValueError(f"payment must be 'mosaic' or 'none', got {payment!r}")
    others = as_float64(others_total).unsqueeze(-2)  # [..., 1, M]
    deviations = as_float64(deviations)
    weights = as_float64(log_weights).unsqueeze(-2)
    total = others + deviations
    probs = selection_probabilities(total, weights, tau)
    if payment == "none":
        return DeviationOutcome(probs, torch.zeros(probs.shape[:-1], dtype=torch.float64))
    gain = log_partition(total, weights, tau) - log_partition(others, weights, tau)
    return DeviationOutcome(probs, (probs * deviations).sum(-1) - gain)
