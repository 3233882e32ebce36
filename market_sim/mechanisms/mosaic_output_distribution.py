r"""Output distribution of MOSAIC's M-candidate scheme and its distance to :math:`\pi^*`.

The analysis behind the convergence experiment (docs/design.md, section 3.2.6;
:mod:`market_sim.experiments.mosaic_convergence` runs it on the LM). Pure tensor math, float64,
on an enumerable outcome set Y. The rule itself (:mod:`market_sim.mechanisms.mosaic`) draws M
candidates i.i.d. from :math:`\pi_{gen}` and picks :math:`y_j` with probability
:math:`q_j = \mathrm{softmax}_j(R(y_j)/\tau + l_j)`; its target is the KL-regularized optimum
:math:`\pi^*(y) \propto \pi_{ref}(y)\exp(R(y)/\tau)`.

Output distribution :math:`P_M(y) = E[\sum_j q_j 1\{y_j = y\}]` over the candidate draw. Three
methods:

* ``quadrature`` (the default; any M, any Y) uses the identity
  :math:`1/x = \int_0^\infty e^{-tx}dt` and the multinomial generating function, with
  :math:`w_y = \pi_{ref}(y)e^{R(y)/\tau}/\pi_{gen}(y)`,

  .. math::

      P_M(y) = M\,\pi_{gen}(y)\,w_y \int_0^\infty e^{-t w_y}
               \Big(\sum_{y'} \pi_{gen}(y') e^{-t w_{y'}}\Big)^{M-1} dt ,

  a one-dimensional integral computed by composite Gauss-Legendre quadrature in
  :math:`\log t` (``GAUSS_NODES_PER_PANEL`` nodes on panels of width ``LOG_T_PANEL_WIDTH``;
  exact up to ~1e-12);
* ``exact`` enumerates the multisets of candidates (small Y and M only: at most
  ``MAX_EXACT_MULTISETS``);
* ``monte_carlo`` draws ``trials`` candidate sets with a seeded generator and averages
  :math:`q` scattered onto the outcomes (Rao-Blackwellized over the final pick; its noise floor
  is about :math:`1/\sqrt{M \cdot \text{trials}}` per outcome, so use it only as a cross-check).

Outcomes with :math:`\pi_{ref}(y) = 0` are never selected; if every candidate has
:math:`\pi_{ref} = 0` the scheme has no output and :math:`P_M` sums to less than one.
Distances to :math:`\pi^*`: KL, total variation and the reward gap
:math:`E_{\pi^*}[R] - E_{P_M}[R]`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from market_sim.mechanisms.mosaic import as_float64, mosaic_scores, selection_probabilities
from market_sim.mechanisms.token_auction import total_variation

OutputMethod = Literal["quadrature", "exact", "monte_carlo"]

GAUSS_NODES_PER_PANEL = 8
LOG_T_PANEL_WIDTH = 0.5
MAX_EXACT_MULTISETS = 500_000


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
    p, q = as_float64(p), as_float64(q)
    terms = torch.where(p > 0, p * (p.clamp_min(1e-300).log() - q.log()), torch.zeros_like(p))
    return terms.sum(-1)


def _outcome_log_weights(
    ref_logprobs: torch.Tensor, gen_logprobs: torch.Tensor, total_rewards: torch.Tensor, tau: float
) -> torch.Tensor:
    r""":math:`\log w_y = R(y)/\tau + \log\pi_{ref}(y) - \log\pi_{gen}(y)`, -inf off support."""
    gen = as_float64(gen_logprobs)
    log_w = mosaic_scores(total_rewards, as_float64(ref_logprobs) - gen, tau)
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
    # Weights relative to the largest, kept as logs: a weight below exp(-745) of the largest
    # underflows to 0 in float64 (its output mass was lost), a subnormal one made the range
    # infinite. Every t x w below is exp(s + log w), finite whatever the spread.
    log_rel = log_w - log_w[live].max()  # [Y] <= 0 where live; -inf for zero weights
    log_rel_min = float(log_rel[live].min())
    s_low = math.log(1e-16 / m)
    # log t_high, t_high = (log(m / w_min) + 40) / w_min
    s_high = math.log(math.log(m) - log_rel_min + 40.0) - log_rel_min
    panels = max(1, math.ceil((s_high - s_low) / LOG_T_PANEL_WIDTH))
    base_nodes, base_weights = np.polynomial.legendre.leggauss(GAUSS_NODES_PER_PANEL)
    edges = np.linspace(s_low, s_high, panels + 1)
    widths = np.diff(edges)[:, None]
    s = (edges[:-1, None] + widths * (base_nodes[None, :] + 1.0) / 2.0).ravel()
    quad_w = (widths * base_weights[None, :] / 2.0).ravel()
    s_t = torch.as_tensor(s, dtype=torch.float64)
    log_quad_w = torch.as_tensor(np.log(quad_w), dtype=torch.float64)
    out = torch.zeros_like(log_pi)
    live_idx = torch.nonzero(live).squeeze(-1)
    log_pi_live, log_rel_live = log_pi[live_idx], log_rel[live_idx]
    chunk = max(1, 2_000_000 // len(s))  # outcomes per [nodes, chunk] block (16 MB float64)
    finite_log_pi = torch.where(log_pi > -math.inf, log_pi, torch.full_like(log_pi, -math.inf))
    log_phi = torch.logsumexp(  # [nodes]; includes zero-weight outcomes (they never decay)
        torch.stack(
            [
                torch.logsumexp(
                    finite_log_pi[None, start : start + chunk]
                    - torch.exp(s_t[:, None] + log_rel[None, start : start + chunk]),
                    dim=-1,
                )
                for start in range(0, len(log_pi), chunk)
            ]
        ),
        dim=0,
    )  # one block, as before, up to ``chunk`` outcomes; a [nodes, Y] block would not fit
    base = s_t + log_quad_w + (m - 1) * log_phi  # [nodes]
    for start in range(0, len(live_idx), chunk):
        stop = start + chunk
        exponent = base[:, None] - torch.exp(s_t[:, None] + log_rel_live[None, start:stop])
        integral = torch.logsumexp(exponent, dim=0)
        out[live_idx[start:stop]] = (
            math.log(m) + log_pi_live[start:stop] + log_rel_live[start:stop] + integral
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
    log_pi = as_float64(gen_logprobs).cpu()
    log_w = _outcome_log_weights(
        as_float64(ref_logprobs).cpu(), log_pi, as_float64(total_rewards).cpu(), tau
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
    rewards = as_float64(total_rewards)
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
        total_variation=total_variation(as_float64(outputs), as_float64(target)),
        kl=kl_divergence(outputs, target),
        reward_gap=(target * finite).sum(-1) - (outputs * finite).sum(-1),
    )
