r"""MOSAIC-style sampling auction: one whole reply chosen among M sampled candidates.

Pure tensor math (docs/design.md, section 3.2), float64, vectorized over any leading batch
shape (written ``[A, ...]`` below: A auctions; a single auction simply drops the A). n
advertisers report
rewards :math:`\tilde r_i(y_j)` for M candidates :math:`y_1..y_M` drawn i.i.d. from a proposal
:math:`\pi_{gen}` (the reference model :math:`\pi_{ref}` itself, or a context-aware LM).

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
* Relevance score :math:`s_i(y) = \sigma\big((\bar\ell_i(y) - c)/T\big)`, with
  :math:`\bar\ell_i(y)` the MEAN per-token log-likelihood ratio of the advertiser's LM (the
  platform LM conditioned on i's brand context) against :math:`\pi_{ref}`, :math:`\sigma` the
  logistic function, temperature T and offset c (defaults 1 and 0). The mean (not the sum) keeps
  long and short replies comparable and the score in (0, 1); a reply exactly as likely under i's
  LM as under :math:`\pi_{ref}` (and an empty reply) scores :math:`\sigma(-c/T)`, 1/2 by default.
  Adding a constant to every :math:`r_i(y)` changes neither q nor anyone's incentive, so the
  neutral level is a modelling choice only for reported values, not for the rule.
* Output distribution of the M-sample scheme on an enumerable outcome space (for convergence
  curves): :math:`P_M(y) = E[\sum_j q_j 1\{y_j = y\}]` over the candidate draw. Three methods:
  ``exact`` enumerates the multisets of candidates (small Y and M only); ``quadrature`` uses
  the identity :math:`1/x = \int_0^\infty e^{-tx}dt` and the multinomial generating function,
  with :math:`w_y = \pi_{ref}(y)e^{R(y)/\tau}/\pi_{gen}(y)`,

  .. math::

      P_M(y) = M\,\pi_{gen}(y)\,w_y \int_0^\infty e^{-t w_y}
               \Big(\sum_{y'} \pi_{gen}(y') e^{-t w_{y'}}\Big)^{M-1} dt ,

  a one-dimensional integral computed by composite Gauss-Legendre quadrature in
  :math:`\log t` (exact up to ~1e-12; any M, any Y; the default); ``monte_carlo`` draws
  ``trials`` candidate sets with a seeded generator and averages :math:`q` scattered onto the
  outcomes (Rao-Blackwellized over the final pick; its noise floor is about
  :math:`1/\sqrt{M \cdot \text{trials}}` per outcome, so use it only as a cross-check).
  Outcomes with :math:`\pi_{ref}(y) = 0` are never selected; if every candidate has
  :math:`\pi_{ref} = 0` the scheme has no output and :math:`P_M` sums to less than one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

MosaicPayment = Literal["mosaic", "none"]
OutputMethod = Literal["quadrature", "exact", "monte_carlo"]

GAUSS_NODES_PER_PANEL = 8
LOG_T_PANEL_WIDTH = 0.5
MAX_EXACT_MULTISETS = 500_000


def _as_double(x: torch.Tensor | np.ndarray | Sequence[float]) -> torch.Tensor:
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
    return _as_double(ref_logprobs) - _as_double(gen_logprobs)


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
    return _as_double(total_rewards) / tau + _as_double(log_weights)


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


def mosaic_payments(reported: torch.Tensor, log_weights: torch.Tensor, tau: float) -> torch.Tensor:
    r""":math:`\mathrm{pay}_i = E_q[\tilde r_i] - (U(R) - U(R - \tilde r_i))`.

    Args:
        reported: ``[A, n, M]`` reported rewards :math:`\tilde r_i(y_j)`.
        log_weights: ``[A, M]`` importance log-weights.
        tau: Temperature.

    Returns:
        ``[A, n]`` payments (>= 0 up to rounding; not clamped).
    """
    return run_mosaic(reported, log_weights, tau).payments


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
    reported = _as_double(reported)
    log_weights = _as_double(log_weights)
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
    truth = reported if true_rewards is None else _as_double(true_rewards)
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


def sample_candidates(
    probabilities: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw the reply index of each auction.

    Args:
        probabilities: ``[A, M]`` selection probabilities.
        generator: Random source.

    Returns:
        ``[A]`` long indices into the candidates.
    """
    flat = probabilities.reshape(-1, probabilities.shape[-1])
    picks = torch.multinomial(flat, 1, generator=generator).squeeze(-1)
    return picks.reshape(probabilities.shape[:-1])


def scaled_report_utilities(
    true_rewards: torch.Tensor,
    reported: torch.Tensor,
    log_weights: torch.Tensor,
    tau: float,
    scales: torch.Tensor | Sequence[float],
    payment: MosaicPayment = "mosaic",
) -> torch.Tensor:
    r"""Utility of each advertiser if it reported :math:`\alpha_k r_i`, the others' reports fixed.

    Same candidates, same :math:`l`. Entry ``[a, i, k]`` is advertiser i's true utility
    :math:`E_{q}[r_i] - \mathrm{pay}_i` when its report is ``scales[k] * true_rewards[a, i]``
    and every other advertiser j keeps ``reported[a, j]``. Truthful is ``scales = 1``.

    Args:
        true_rewards: ``[A, n, M]`` true rewards :math:`r_i(y_j)`.
        reported: ``[A, n, M]`` current reports (only the others' rows are used per i).
        log_weights: ``[A, M]`` importance log-weights.
        tau: Temperature.
        scales: ``[K]`` alternative scales :math:`\alpha_k`.
        payment: ``mosaic`` or ``none``.

    Returns:
        ``[A, n, K]`` utilities.
    """
    true_rewards = _as_double(true_rewards)
    reported = _as_double(reported)
    log_weights = _as_double(log_weights).unsqueeze(-2).unsqueeze(-2)  # [A, 1, 1, M]
    scales = _as_double(scales).to(true_rewards.device)
    others = (reported.sum(-2, keepdim=True) - reported).unsqueeze(-2)  # [A, n, 1, M]
    deviation = scales[:, None] * true_rewards.unsqueeze(-2)  # [A, n, K, M]
    total = others + deviation
    probs = selection_probabilities(total, log_weights, tau)
    values = (probs * true_rewards.unsqueeze(-2)).sum(-1)
    if payment == "none":
        return values
    if payment != "mosaic":
        raise ValueError(f"payment must be 'mosaic' or 'none', got {payment!r}")
    gain = log_partition(total, log_weights, tau) - log_partition(others, log_weights, tau)
    payments = (probs * deviation).sum(-1) - gain
    return values - payments


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
    shape is allowed (scaled, sharpened, arbitrary); :func:`scaled_report_utilities` is the
    special case of scaled true rewards.

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
    others = _as_double(others_total).unsqueeze(-2)  # [..., 1, M]
    deviations = _as_double(deviations)
    weights = _as_double(log_weights).unsqueeze(-2)
    total = others + deviations
    probs = selection_probabilities(total, weights, tau)
    if payment == "none":
        return DeviationOutcome(probs, torch.zeros(probs.shape[:-1], dtype=torch.float64))
    gain = log_partition(total, weights, tau) - log_partition(others, weights, tau)
    return DeviationOutcome(probs, (probs * deviations).sum(-1) - gain)


def relevance_scores(
    advertiser_token_logprobs: torch.Tensor,
    reference_token_logprobs: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
    offset: float = 0.0,
) -> torch.Tensor:
    r"""Relevance :math:`s_i(y) = \sigma\big((\bar\ell_i(y) - c)/T\big) \in (0, 1)`.

    :math:`\bar\ell_i(y)` is the mean over the reply's tokens of
    :math:`\log p_i(y_t \mid \cdot) - \log \pi_{ref}(y_t \mid \cdot)`.

    Args:
        advertiser_token_logprobs: ``[A, n, M, T]`` per-token log-probs of each candidate under
            each advertiser's LM (left-aligned, as ``LanguageModel.continuation_logprobs``).
        reference_token_logprobs: ``[A, M, T]`` the same under :math:`\pi_{ref}`.
        mask: ``[A, M, T]`` bool, real tokens.
        temperature: T > 0.
        offset: c, the mean log-ratio that maps to 1/2.

    Returns:
        ``[A, n, M]`` float64 scores; an empty reply gets :math:`\sigma(-c/T)`.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    weights = _as_double(mask.to(torch.float64)).unsqueeze(-3)
    ratio = _as_double(advertiser_token_logprobs) - _as_double(reference_token_logprobs).unsqueeze(
        -3
    )
    ratio = torch.where(weights > 0, ratio, torch.zeros_like(ratio))
    mean = (ratio * weights).sum(-1) / weights.sum(-1).clamp_min(1.0)
    return torch.sigmoid((mean - offset) / temperature)


def target_distribution(
    ref_logprobs: torch.Tensor, total_rewards: torch.Tensor, tau: float
) -> torch.Tensor:
    r""":math:`\pi^*(y) \propto \pi_{ref}(y) \exp(R(y)/\tau)` over an enumerable outcome set.

    Args:
        ref_logprobs: ``[..., Y]`` :math:`\log \pi_{ref}` (normalized over the Y outcomes).
        total_rewards: ``[..., Y]`` :math:`R(y)`.
        tau: Temperature.

    Returns:
        ``[..., Y]``.
    """
    return selection_probabilities(total_rewards, ref_logprobs, tau)


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{KL}(p \| q) = \sum_y p_y \log(p_y / q_y)`, with :math:`0 \log 0 = 0`.

    Args:
        p: ``[..., Y]`` probabilities.
        q: ``[..., Y]`` probabilities.

    Returns:
        ``[...]``; ``inf`` where p puts mass on a zero of q.
    """
    p, q = _as_double(p), _as_double(q)
    terms = torch.where(p > 0, p * (p.clamp_min(1e-300).log() - q.log()), torch.zeros_like(p))
    return terms.sum(-1)


def total_variation(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{TV}(p, q) = \tfrac12 \sum_y |p_y - q_y|` over the last axis."""
    return 0.5 * (_as_double(p) - _as_double(q)).abs().sum(-1)


def _outcome_log_weights(ref_logprobs, gen_logprobs, total_rewards, tau) -> torch.Tensor:
    r""":math:`\log w_y = R(y)/\tau + \log\pi_{ref}(y) - \log\pi_{gen}(y)`, -inf off support."""
    gen = _as_double(gen_logprobs)
    log_w = mosaic_scores(total_rewards, _as_double(ref_logprobs) - gen, tau)
    return torch.where(gen > -math.inf, log_w, torch.full_like(log_w, -math.inf))


def _output_exact(log_pi: torch.Tensor, log_w: torch.Tensor, m: int) -> torch.Tensor:
    support = torch.nonzero(log_pi > -math.inf).squeeze(-1)
    k = int(support.numel())
    count = math.comb(m + k - 1, k - 1)
    if count > MAX_EXACT_MULTISETS:
        raise ValueError(
            f"exact enumeration needs {count} multisets (> {MAX_EXACT_MULTISETS}); "
            "use method='quadrature'"
        )
    bars = np.array(list(itertools.combinations(range(m + k - 1), k - 1)), dtype=np.int64)
    bars = bars.reshape(count, k - 1)
    edges = np.concatenate([np.full((count, 1), -1), bars, np.full((count, 1), m + k - 1)], axis=1)
    counts = torch.as_tensor(np.diff(edges, axis=1) - 1, dtype=torch.float64)  # [C, k]
    lp, lw = log_pi[support], log_w[support]
    log_prob = math.lgamma(m + 1) - torch.lgamma(counts + 1).sum(-1) + (counts * lp).sum(-1)
    log_share = counts.log() + lw
    share = torch.softmax(log_share, dim=-1)
    share = torch.nan_to_num(share, nan=0.0)  # every candidate off pi_ref's support
    out = torch.zeros_like(log_pi)
    out[support] = (log_prob.exp().unsqueeze(-1) * share).sum(0)
    return out


def _output_quadrature(log_pi: torch.Tensor, log_w: torch.Tensor, m: int) -> torch.Tensor:
    live = (log_pi > -math.inf) & (log_w > -math.inf)
    if not bool(live.any()):
        return torch.zeros_like(log_pi)
    if m == 1:
        return torch.where(live, log_pi.exp(), torch.zeros_like(log_pi))
    shift = log_w[live].max()
    w = torch.where(live, (log_w - shift).exp(), torch.zeros_like(log_w))  # max w = 1
    live = live & (w > 0)  # weights below exp(-745) of the largest: never selected in float64
    w_min = float(w[live].min())
    t_low = 1e-16 / m
    t_high = (math.log(m / w_min) + 40.0) / w_min
    s_low, s_high = math.log(t_low), math.log(t_high)
    panels = max(1, math.ceil((s_high - s_low) / LOG_T_PANEL_WIDTH))
    base_nodes, base_weights = np.polynomial.legendre.leggauss(GAUSS_NODES_PER_PANEL)
    edges = np.linspace(s_low, s_high, panels + 1)
    widths = np.diff(edges)[:, None]
    s = (edges[:-1, None] + widths * (base_nodes[None, :] + 1.0) / 2.0).ravel()
    quad_w = (widths * base_weights[None, :] / 2.0).ravel()
    s_t = torch.as_tensor(s, dtype=torch.float64)
    log_quad_w = torch.as_tensor(np.log(quad_w), dtype=torch.float64)
    t = s_t.exp()
    out = torch.zeros_like(log_pi)
    live_idx = torch.nonzero(live).squeeze(-1)
    log_pi_live, w_live = log_pi[live_idx], w[live_idx]
    log_phi = torch.logsumexp(
        torch.where(log_pi > -math.inf, log_pi, torch.full_like(log_pi, -math.inf))[None, :]
        - t[:, None] * w[None, :],
        dim=-1,
    )  # [nodes]; includes zero-weight outcomes (they never decay)
    base = s_t + log_quad_w + (m - 1) * log_phi  # [nodes]
    chunk = max(1, 2_000_000 // len(s))
    for start in range(0, len(live_idx), chunk):
        stop = start + chunk
        exponent = base[:, None] - t[:, None] * w_live[None, start:stop]
        integral = torch.logsumexp(exponent, dim=0)
        out[live_idx[start:stop]] = (
            math.log(m) + log_pi_live[start:stop] + w_live[start:stop].log() + integral
        ).exp()
    return out


def _output_monte_carlo(
    log_pi: torch.Tensor, log_w: torch.Tensor, m: int, trials: int, generator: torch.Generator
) -> torch.Tensor:
    pi = log_pi.exp()
    out = torch.zeros_like(log_pi)
    chunk = max(1, 1_000_000 // m)
    done = 0
    while done < trials:
        batch = min(chunk, trials - done)
        idx = torch.multinomial(pi, batch * m, replacement=True, generator=generator)
        idx = idx.reshape(batch, m)
        q = torch.nan_to_num(torch.softmax(log_w[idx], dim=-1), nan=0.0)
        out.index_add_(0, idx.reshape(-1), q.reshape(-1))
        done += batch
    return out / trials


def expected_output_distribution(
    ref_logprobs: torch.Tensor,
    gen_logprobs: torch.Tensor,
    total_rewards: torch.Tensor,
    tau: float,
    num_candidates: int,
    method: OutputMethod = "quadrature",
    trials: int = 4096,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Distribution :math:`P_M` of the reply of the M-candidate scheme on an enumerable set.

    Args:
        ref_logprobs: ``[Y]`` :math:`\log \pi_{ref}` over the outcomes (normalized over them).
        gen_logprobs: ``[Y]`` :math:`\log \pi_{gen}` (normalized over them).
        total_rewards: ``[Y]`` :math:`R(y)` (reports summed).
        tau: Temperature.
        num_candidates: M >= 1.
        method: ``quadrature`` (default; any M), ``exact`` (multiset enumeration; raises when
            there are more than ``MAX_EXACT_MULTISETS``) or ``monte_carlo``.
        trials: Candidate sets drawn by ``monte_carlo``.
        generator: Random source of ``monte_carlo``, a CPU generator (default: seeded with 0).

    Returns:
        ``[Y]`` probabilities (float64, on the inputs' device; computed on the CPU).
    """
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be >= 1, got {num_candidates}")
    device = torch.as_tensor(gen_logprobs).device
    log_pi = _as_double(gen_logprobs).cpu()
    log_w = _outcome_log_weights(
        _as_double(ref_logprobs).cpu(), log_pi, _as_double(total_rewards).cpu(), tau
    )
    if method == "quadrature":
        out = _output_quadrature(log_pi, log_w, num_candidates)
    elif method == "exact":
        out = _output_exact(log_pi, log_w, num_candidates)
    elif method == "monte_carlo":
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        out = _output_monte_carlo(log_pi, log_w, num_candidates, trials, generator)
    else:
        raise ValueError(f"method must be quadrature, exact or monte_carlo, got {method!r}")
    return out.to(device)


@dataclass(frozen=True)
class ConvergenceCurve:
    r"""Distance between :math:`P_M` and :math:`\pi^*` for several M.

    Attributes:
        sizes: ``[L]`` the M values.
        total_variation: ``[L]`` :math:`\mathrm{TV}(P_M, \pi^*)`.
        kl: ``[L]`` :math:`\mathrm{KL}(P_M \| \pi^*)` (finite: :math:`P_M \ll \pi^*`).
        reward_gap: ``[L]`` :math:`E_{\pi^*}[R] - E_{P_M}[R]` (signed: it can be negative).
    """

    sizes: torch.Tensor
    total_variation: torch.Tensor
    kl: torch.Tensor
    reward_gap: torch.Tensor


def convergence_curve(
    ref_logprobs: torch.Tensor,
    gen_logprobs: torch.Tensor,
    total_rewards: torch.Tensor,
    tau: float,
    sizes: Sequence[int],
    method: OutputMethod = "quadrature",
    trials: int = 4096,
    seed: int = 0,
) -> ConvergenceCurve:
    r"""TV, KL and reward gap of :math:`P_M` to :math:`\pi^*` for each M in ``sizes``.

    Args:
        ref_logprobs: ``[Y]`` :math:`\log \pi_{ref}`.
        gen_logprobs: ``[Y]`` :math:`\log \pi_{gen}`.
        total_rewards: ``[Y]`` :math:`R(y)`.
        tau: Temperature.
        sizes: The M values (e.g. 1, 2, 4, ..., 256).
        method: See :func:`expected_output_distribution`.
        trials: Monte Carlo trials per M.
        seed: Monte Carlo seed (one generator, seeded once, used for every M in order).

    Returns:
        The curve.
    """
    target = target_distribution(ref_logprobs, total_rewards, tau)
    rewards = _as_double(total_rewards)
    generator = torch.Generator().manual_seed(seed)
    outputs = torch.stack(
        [
            expected_output_distribution(
                ref_logprobs, gen_logprobs, rewards, tau, m, method, trials, generator
            )
            for m in sizes
        ]
    )
    finite = torch.where(target > 0, rewards, torch.zeros_like(rewards))
    return ConvergenceCurve(
        sizes=torch.as_tensor(list(sizes)),
        total_variation=total_variation(outputs, target),
        kl=kl_divergence(outputs, target),
        reward_gap=(target * finite).sum(-1) - (outputs * finite).sum(-1),
    )
