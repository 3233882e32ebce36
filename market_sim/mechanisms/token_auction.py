r"""Token auction: aggregate advertisers' next-token distributions, allocate, charge, sample.

Pure tensor math (docs/design.md, section 3.1), batched over A auctions, n advertisers, V tokens.
Participants are laid out user first: column 0 is the user's distribution :math:`p_0` with the
fixed platform weight :math:`b_0 \ge 0`, columns 1..n are the advertisers with bids :math:`b_i`.

.. math::

    \lambda_i = \frac{b_i}{b_0 + \sum_j b_j}, \qquad
    q^{\mathrm{lin}} = \sum_i \lambda_i p_i, \qquad
    q^{\mathrm{loglin}} \propto \exp\Big(\sum_i \lambda_i \log p_i\Big),

    x_i = 1 - \mathrm{TV}(q, p_i), \qquad
    \mathrm{pay}_i = b_i x_i(b_i) - \int_0^{b_i} x_i(z; b_{-i})\,dz .

Source: P. Dütting, V. Mirrokni, R. Paes Leme, H. Xu and S. Zuo, "Mechanism Design for Large
Language Models", WWW 2024 (arXiv:2310.10826): the token-by-token auction, linear and log-linear
aggregation, monotone aggregation as the incentive condition, and a second-price rule through
stable sampling. Choices of this project, not of the paper: the advertiser's value per token is
:math:`v_i x_i` with :math:`x_i = 1 - \mathrm{TV}(q, p_i)`, and ``settlement = "expected"`` (the
default) charges that single-dimensional allocation's Myerson payment above; ``"ex_post"``
(linear aggregation, second price only) charges :math:`T_i z_i^*` to the owner of the
stable-sampling draw, :math:`T_i = \mathrm{TV}(q_{-i}, p_i)`, whose expectation equals the
expected payment; first-price and no payments are baselines. Truthfulness holds per token, given
the realized prefix, not for a whole reply (README, "Measured so far").

Conventions chosen here (the papers leave them open):

* If every weight is zero (all bids 0 and :math:`b_0 = 0`) the output is the user's
  distribution :math:`p_0` and nobody pays: with no bid there is nothing to sell.
* Log-linear aggregation floors probabilities at ``PROB_FLOOR`` (in log space), so a zero
  probability gives no ``-inf`` or NaN. The floor is a penalty, not a veto: against a token it
  gives probability p, a participant with weight :math:`\lambda_j` that gives a token
  probability 0 scales that token's weight by :math:`(10^{-12}/p)^{\lambda_j}`; against p = 1
  that is :math:`e^{-27.6\lambda_j}`, which removes the token for :math:`\lambda_j` near 1 but
  only scales it by 0.76 at :math:`\lambda_j = 0.01`.
* Numerical payments integrate :math:`x_i(z)` with composite Gauss-Legendre quadrature on a
  ladder of panels at fixed multiples of the competing weight :math:`B_i`, uniform in
  :math:`\ln(1 + z/B_i)`: :math:`x_i` varies on the scale :math:`B_i`, and every bid against
  the same :math:`B_i` shares the ladder's nodes (kinks of the TV are handled by the many panels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from market_sim.mechanisms.ladder_quadrature import (
    LadderRemainder,
    ladder_panel_rule,
    ladder_panels_per_unit,
    ladder_remainder_rule,
)
from market_sim.mechanisms.log_linear_shares import log_linear_share_allocations
from market_sim.mechanisms.options import Aggregation, PaymentRule, Settlement

PROB_FLOOR = 1e-12
LOG_PROB_FLOOR = float(np.log(PROB_FLOOR))


def participant_weights(bids: torch.Tensor, platform_weight: float) -> torch.Tensor:
    r"""Raw participant weights, user first.

    Args:
        bids: ``[A, n]`` non-negative bids.
        platform_weight: :math:`b_0 \ge 0`, the user's weight.

    Returns:
        ``[A, n + 1]``: column 0 is :math:`b_0`, columns 1..n the bids.
    """
    user = torch.full_like(bids[:, :1], float(platform_weight))
    return torch.cat([user, bids], dim=-1)


def largest_binary_exponent(raw_weights: torch.Tensor) -> torch.Tensor:
    r"""Binary exponent :math:`e` of each row's largest weight (:math:`2^{e-1} \le \max < 2^e`).

    Args:
        raw_weights: ``[A, m]`` non-negative finite weights.

    Returns:
        ``[A, 1]`` int32 exponents; 0 for all-zero rows.
    """
    _, exponent = torch.frexp(raw_weights.amax(-1, keepdim=True))
    return exponent


def scale_by_power_of_two(values: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    r""":math:`\text{values} \cdot 2^{\text{exponent}}`, exact unless subnormal or overflowing.

    The factor is applied in two halves so that neither half overflows even for exponents near
    :math:`\pm 1074` (the span from the smallest subnormal to the largest float64). Scaling by a
    power of two commutes with every rounding of float arithmetic, which is why the mechanism
    normalizes by :math:`2^{e}` and not by the largest weight itself: for weights in the
    ordinary range the normalized computation is bit-identical to the unnormalized one.

    Args:
        values: Any float tensor.
        exponent: Integer tensor broadcastable to ``values``.
    """
    first = torch.div(exponent, 2, rounding_mode="floor")
    second = exponent - first
    two = values.new_tensor(2.0)
    return values * torch.pow(two, first.to(values.dtype)) * torch.pow(two, second.to(values.dtype))


def normalized_weights(raw_weights: torch.Tensor) -> torch.Tensor:
    r""":math:`\lambda = w / \sum w` per auction; all-zero rows put weight 1 on the user (column 0).

    Each row is first scaled by :math:`2^{-e}`, :math:`e` the binary exponent of its largest
    weight, so the sum can neither overflow nor underflow: a lone weight of :math:`10^{-310}`
    (subnormal) gets :math:`\lambda = 1` exactly, two weights of :math:`10^{308}` get 1/2 each.

    Args:
        raw_weights: ``[A, m]`` non-negative finite weights, user first.

    Returns:
        ``[A, m]`` rows summing to 1 (within m rounding errors).
    """
    scaled = scale_by_power_of_two(raw_weights, -largest_binary_exponent(raw_weights))
    total = scaled.sum(-1, keepdim=True)
    user_only = torch.zeros_like(raw_weights)
    user_only[:, 0] = 1.0
    return torch.where(total > 0, scaled / total.clamp_min(1e-300), user_only)


def aggregate(
    logprobs: torch.Tensor,
    weights: torch.Tensor,
    aggregation: Aggregation,
    probs: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Aggregate distributions into one.

    Args:
        logprobs: ``[..., m, V]`` log-probabilities (``-inf`` allowed).
        weights: ``[..., m]`` normalized weights.
        aggregation: ``linear`` (:math:`q = \sum \lambda_i p_i`) or ``log_linear``
            (:math:`q \propto \exp \sum \lambda_i \log \max(p_i, \text{floor})`).
        probs: ``exp(logprobs)`` if the caller already has it (saves one exp for linear).

    Returns:
        ``[..., V]`` probabilities, finite and summing to 1.
    """
    if aggregation == "linear":
        return torch.einsum("...m,...mv->...v", weights, logprobs.exp() if probs is None else probs)
    if aggregation == "log_linear":
        floored = logprobs.clamp_min(LOG_PROB_FLOOR)
        return torch.softmax(torch.einsum("...m,...mv->...v", weights, floored), dim=-1)
    raise ValueError(f"aggregation must be 'linear' or 'log_linear', got {aggregation!r}")


def total_variation(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{TV}(p, q) = \tfrac12 \sum_v |p_v - q_v|` over the last axis."""
    return 0.5 * (p - q).abs().sum(-1)


def allocations(aggregate_probs: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    r""":math:`x_i = 1 - \mathrm{TV}(q, p_i)`.

    Args:
        aggregate_probs: ``[A, V]`` the aggregate q.
        probs: ``[A, k, V]`` the distributions to compare against.

    Returns:
        ``[A, k]``, clamped to [0, 1] (rounding can put a TV of disjoint distributions a few
        ulps above 1).
    """
    return (1.0 - total_variation(aggregate_probs.unsqueeze(-2), probs)).clamp(0.0, 1.0)


def leave_one_out(raw_weights: torch.Tensor) -> torch.Tensor:
    """Each advertiser's row of weights with its own set to 0.

    Args:
        raw_weights: ``[A, n + 1]`` raw weights, user first.

    Returns:
        ``[A, n, n + 1]``: row i is ``raw_weights`` with entry ``i + 1`` zeroed.
    """
    agents = raw_weights.shape[-1] - 1
    keep = torch.ones(agents, agents + 1, dtype=raw_weights.dtype, device=raw_weights.device)
    keep.diagonal(offset=1).zero_()  # entries (i, i + 1), in place: no index tensor to copy
    return raw_weights.unsqueeze(1) * keep


def competing_weights(raw_weights: torch.Tensor) -> torch.Tensor:
    r""":math:`B_i = \sum_{j \ne i} w_j` (user included), summed over the others' weights.

    Never as the total minus :math:`w_i`: that difference cancels when :math:`w_i` dwarfs the
    rest (relative error about :math:`\epsilon\, w_i / B_i`), and every payment scales with
    :math:`B_i`.

    Args:
        raw_weights: ``[A, n + 1]`` raw weights, user first.

    Returns:
        ``[A, n]``.
    """
    return leave_one_out(raw_weights).sum(-1)


def competing_aggregate_linear(
    probs: torch.Tensor, raw_weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""For each advertiser i, the linear aggregate without i and its competing weight.

    :math:`B_i = \sum_{j \ne i} w_j` (user included), :math:`q_{-i} = \sum_{j\ne i} w_j p_j / B_i`.
    :math:`B_i` is summed over the others' weights (:func:`competing_weights`). The numerator is
    the total minus i's term, except for each auction's largest weight (the only one that can
    exceed the rest's), whose numerator is summed over the others' terms: the difference
    cancels when i's weight dwarfs the rest's (relative error about
    :math:`\epsilon\, b_i / B_i`; a rest of weight 1e-16 next to a bid of 1 came out 0), and
    loses at most a factor 2 of :math:`\epsilon` otherwise. One extra sum per auction, always
    done (choosing the auctions that need it would cost a host synchronisation on a GPU);
    summing every advertiser's others directly (prefix and suffix sums) doubled the time of
    the whole payment rule at 64 auctions x 49,152 tokens.

    Args:
        probs: ``[A, n + 1, V]`` probabilities, user first.
        raw_weights: ``[A, n + 1]`` raw weights, user first.

    Returns:
        ``(q_minus, competing)``: ``[A, n, V]`` (rows with :math:`B_i = 0` are :math:`p_0`) and
        ``[A, n]``.
    """
    weighted_sum = torch.einsum("am,amv->av", raw_weights, probs)
    agent_probs, agent_weights = probs[:, 1:], raw_weights[:, 1:]
    competing = competing_weights(raw_weights)
    without_i = weighted_sum.unsqueeze(1) - agent_weights.unsqueeze(-1) * agent_probs
    if agent_weights.shape[1]:
        auctions = torch.arange(len(raw_weights), device=raw_weights.device)
        largest = agent_weights.argmax(-1)  # [A]
        others = leave_one_out(raw_weights)[auctions, largest]  # [A, n + 1]
        without_i[auctions, largest] = torch.einsum("am,amv->av", others, probs)
    q_minus = without_i.clamp_min(0) / competing.clamp_min(1e-300).unsqueeze(-1)
    has_competition = (competing > 0).unsqueeze(-1)
    q_minus = torch.where(has_competition, q_minus, probs[:, :1].expand_as(agent_probs))
    return q_minus, competing


SERIES_RATIO_BELOW = 1e-3
"""Below this b/B the ownership payment uses its Taylor series (the closed form cancels)."""


def myerson_ownership_payment(bid: torch.Tensor, competing: torch.Tensor) -> torch.Tensor:
    r"""Critical-bid payment for the allocation :math:`y(z) = z / (z + B)`.

    .. math:: b\,y(b) - \int_0^b y(z)\,dz = B \ln(1 + b/B) - \frac{bB}{b + B}
              = B \sum_{k \ge 2} (-1)^k \frac{k - 1}{k} r^k, \quad r = b / B

    (zero when :math:`B = 0` or :math:`b = 0`). The value is homogeneous of degree one, so it is
    computed on :math:`(b, B) / 2^e`, :math:`2^e` just above :math:`\max(b, B)`, and scaled back
    (no overflow of :math:`bB` near :math:`10^{154}`, no underflow for subnormal inputs). For
    :math:`r <` ``SERIES_RATIO_BELOW`` the closed form loses :math:`\approx 2\epsilon / r` of
    relative accuracy to cancellation, so the series through :math:`r^7` is used (truncation
    :math:`< 2 r^6`, relative).

    Args:
        bid: Non-negative finite bids b.
        competing: Non-negative finite competing weights B (broadcasts with ``bid``).

    Returns:
        The payments, :math:`\ge 0`, finite.
    """
    bid, competing = torch.broadcast_tensors(bid, competing)
    exponent = torch.frexp(torch.maximum(bid, competing))[1]
    b = scale_by_power_of_two(bid, -exponent)
    big_b = scale_by_power_of_two(competing, -exponent)
    safe_competing = big_b.clamp_min(torch.finfo(big_b.dtype).tiny)
    closed_form = big_b * torch.log1p(b / safe_competing) - b * big_b / (b + safe_competing)
    ratio = b / safe_competing
    series = torch.zeros_like(ratio)
    for k in range(7, 1, -1):  # Horner: sum_{k=2..7} (-1)^k (k - 1) / k * r^(k - 2)
        series = series * ratio + (-1) ** k * (k - 1) / k
    series = big_b * ratio * ratio * series
    value = torch.where(ratio < SERIES_RATIO_BELOW, series, closed_form)
    value = torch.where((competing > 0) & (bid > 0), value, torch.zeros_like(value)).clamp_min(0)
    return scale_by_power_of_two(value, exponent)


def linear_second_price_payments(probs: torch.Tensor, raw_weights: torch.Tensor) -> torch.Tensor:
    r"""Closed-form second-price payments for linear aggregation.

    With :math:`T_i = \mathrm{TV}(q_{-i}, p_i)`, :math:`x_i(z) = 1 - T_i B_i / (z + B_i)` and

    .. math:: \mathrm{pay}_i = T_i\Big(\frac{b_i^2}{b_i + B_i} - b_i
              + B_i \ln\frac{b_i + B_i}{B_i}\Big).

    Args:
        probs: ``[A, n + 1, V]`` reported probabilities, user first.
        raw_weights: ``[A, n + 1]`` raw weights, user first.

    Returns:
        ``[A, n]`` payments, finite for any finite non-negative weights (computed on weights
        divided by a power of two near each row's largest and scaled back: payments are
        homogeneous of degree one in the weights, :math:`T_i` of degree zero).
    """
    exponent = largest_binary_exponent(raw_weights)
    unit_weights = scale_by_power_of_two(raw_weights, -exponent)
    q_minus, competing = competing_aggregate_linear(probs, unit_weights)
    distance = total_variation(q_minus, probs[:, 1:])
    payments = distance * myerson_ownership_payment(unit_weights[:, 1:], competing)
    return scale_by_power_of_two(payments, exponent)


def allocation_curve(
    logprobs: torch.Tensor,
    raw_weights: torch.Tensor,
    agent_bid_grid: torch.Tensor,
    aggregation: Aggregation,
) -> torch.Tensor:
    """Allocation of each advertiser as a function of its own bid, the others fixed.

    Args:
        logprobs: ``[A, n + 1, V]`` reported log-probabilities, user first.
        raw_weights: ``[A, n + 1]`` raw weights, user first.
        agent_bid_grid: ``[A, n, K]`` bids z at which to evaluate :math:`x_i(z; b_{-i})`.
        aggregation: ``linear`` or ``log_linear``.

    Returns:
        ``[A, n, K]`` allocations :math:`1 - TV(q(z), p_i)` in [0, 1]. The allocation is
        homogeneous of degree zero, so weights and grid are first divided by a power of two
        near the row's largest (bit-identical in the ordinary range, finite up to 1.8e308).
    """
    exponent = largest_binary_exponent(torch.cat([raw_weights, agent_bid_grid.flatten(1)], dim=-1))
    raw_weights = scale_by_power_of_two(raw_weights, -exponent)
    agent_bid_grid = scale_by_power_of_two(agent_bid_grid, -exponent.unsqueeze(-1))
    agent_logprobs = logprobs[:, 1:]
    others_weights = leave_one_out(raw_weights)  # [A, n, n + 1]
    competing = others_weights.sum(-1)
    z = agent_bid_grid.unsqueeze(-1)
    total = (competing.unsqueeze(-1) + agent_bid_grid).unsqueeze(-1)
    safe_total = total.clamp_min(1e-300)
    if aggregation == "linear":
        probs = logprobs.exp()
        others = torch.einsum("aim,amv->aiv", others_weights, probs).unsqueeze(2)
        mixed = (others + z * probs[:, 1:].unsqueeze(2)) / safe_total
    elif aggregation == "log_linear":
        floored = logprobs.clamp_min(LOG_PROB_FLOOR)
        others = torch.einsum("aim,amv->aiv", others_weights, floored).unsqueeze(2)
        mixed = torch.softmax((others + z * floored[:, 1:].unsqueeze(2)) / safe_total, dim=-1)
    else:
        raise ValueError(f"aggregation must be 'linear' or 'log_linear', got {aggregation!r}")
    user = logprobs[:, :1].exp().unsqueeze(2)
    mixed = torch.where(total > 0, mixed, user)
    return (1.0 - total_variation(mixed, agent_logprobs.exp().unsqueeze(2))).clamp(0.0, 1.0)


def numerical_second_price_payments(
    logprobs: torch.Tensor,
    raw_weights: torch.Tensor,
    aggregation: Aggregation,
    nodes: int = 64,
    node_chunk: int = 16,
) -> torch.Tensor:
    r"""Second-price payments by quadrature on the competing weight's ladder, any aggregation.

    .. math:: \mathrm{pay}_i = b_i x_i(b_i) - \int_0^{b_i} x_i(z)\,dz, \qquad
              \int_0^{b_i} x_i\,dz \approx \sum_{j < J_i} \sum_k B_i w_{jk} x_i(B_i u_{jk})
              + \sum_k \pi_{ik} x_i(B_i u_{J_i k}) + \sum_e \omega_{ie} x_i(\zeta_{ie})

    with :math:`(u_{jk}, w_{jk})` the ladder's Gauss-Legendre rule
    (:func:`~market_sim.mechanisms.ladder_quadrature.ladder_panel_rule`,
    ``nodes / GAUSS_NODES_PER_PANEL`` panels per unit of :math:`\ln(1 + z/B_i)`) on the
    :math:`J_i` whole panels below :math:`b_i`, :math:`\pi` the weights that integrate the
    interpolant of x on panel :math:`J_i` up to :math:`b_i`, and :math:`(\zeta, \omega)` the
    nodes of a bid's own panels in the first panel or above the ladder's top
    (:func:`~market_sim.mechanisms.ladder_quadrature.ladder_remainder_rule`). The panels sit at
    fixed multiples of :math:`B_i`, so every bid against the same :math:`B_i` shares the
    ladder's nodes: the counterfactual
    (:mod:`~market_sim.mechanisms.token_auction_counterfactual`) prices all of a regret
    search's bids from one evaluation of the ladder, with this same rule. When
    :math:`B_i = 0`, :math:`x_i` is constant on :math:`(0, b_i]` and the payment is 0.

    Args:
        logprobs: ``[A, n + 1, V]`` reported log-probabilities, user first.
        raw_weights: ``[A, n + 1]`` raw weights, user first.
        aggregation: ``linear`` or ``log_linear``.
        nodes: Quadrature nodes per unit of :math:`\ln(1 + z/B)` (rounded up to whole panels).
        node_chunk: Nodes evaluated per pass (bounds memory at ``A*n*node_chunk*V``) under
            linear aggregation; log-linear passes are blocks of
            :data:`~market_sim.mechanisms.log_linear_shares.BLOCK_ELEMENTS`
            (:func:`log_linear_ladder_payments`).

    Returns:
        ``[A, n]`` payments, clamped to ``[0, b_i x_i(b_i)]`` against rounding; computed on
        weights divided by a power of two near each row's largest and scaled back (degree-one
        homogeneity), so finite for any finite non-negative weights.
    """
    exponent = largest_binary_exponent(raw_weights)
    raw_weights = scale_by_power_of_two(raw_weights, -exponent)
    bids = raw_weights[:, 1:]
    competing = competing_weights(raw_weights)
    panels_per_unit = ladder_panels_per_unit(nodes)
    remainder = ladder_remainder_rule(bids, competing, panels_per_unit)
    ladder_nodes, ladder_weights = ladder_panel_rule(panels_per_unit, remainder.ladder_panels())
    if aggregation == "log_linear":
        payments = log_linear_ladder_payments(
            logprobs, raw_weights, competing, remainder, ladder_nodes, ladder_weights
        )
        return scale_by_power_of_two(payments, exponent)
    scale = competing[..., None, None]  # [A, n, 1, 1]: the ladder is in units of B_i
    ladder_grid = scale * bids.new_tensor(ladder_nodes)  # [A, n, J, G]
    ladder_quadrature = remainder.node_weights(bids.new_tensor(ladder_weights), competing)
    grid = torch.cat([ladder_grid.flatten(-2), remainder.nodes], dim=-1)  # [A, n, J G + E]
    weights = torch.cat([ladder_quadrature.flatten(-2), remainder.weights], dim=-1)
    integral = torch.zeros_like(bids)
    for start in range(0, grid.shape[-1], node_chunk):
        chunk = slice(start, start + node_chunk)
        curve = allocation_curve(logprobs, raw_weights, grid[..., chunk], aggregation)
        integral = integral + (curve * weights[..., chunk]).sum(-1)
    at_bid = allocation_curve(logprobs, raw_weights, bids.unsqueeze(-1), aggregation).squeeze(-1)
    full_charge = bids * at_bid
    payments = (full_charge - integral).clamp_min(0).minimum(full_charge)
    payments = torch.where(competing > 0, payments, torch.zeros_like(payments))
    return scale_by_power_of_two(payments, exponent)


def log_linear_ladder_payments(
    logprobs: torch.Tensor,
    raw_weights: torch.Tensor,
    competing: torch.Tensor,
    remainder: LadderRemainder,
    ladder_nodes: np.ndarray,
    ladder_weights: np.ndarray,
) -> torch.Tensor:
    r"""The quadrature of :func:`numerical_second_price_payments` under log-linear aggregation.

    Each advertiser with :math:`B_i > 0` is one row of
    :func:`~market_sim.mechanisms.log_linear_shares.log_linear_share_allocations`: its rest
    :math:`r_i = \sum_{j \ne i} w_j \log\max(p_j, \text{floor}) / B_i` (its numerator summed
    without i, not as the full sum minus i's term; :math:`B_i` is the caller's, the one its
    ladder is scaled by) and, at a bid z, its
    share :math:`t = z / (B_i + z)`; a ladder node :math:`z = B_i u` is the share
    :math:`u / (1 + u)` whatever :math:`B_i`. The same allocation as :func:`allocation_curve`'s
    :math:`(\sum_{j \ne i} w_j f_j + z f_i) / (B_i + z)` logits, within float64 rounding, at
    one exponential and six passes per (node, token) instead of that function's dozen.

    Args:
        logprobs: ``[A, n + 1, V]`` reported log-probabilities, user first.
        raw_weights: ``[A, n + 1]`` raw weights (already divided by a power of two).
        competing: ``[A, n]`` competing weights :math:`B_i`, the ones the ladder is scaled by.
        remainder: ``[A, n]`` each bid's rule beyond its whole panels
            (:func:`~market_sim.mechanisms.ladder_quadrature.ladder_remainder_rule`).
        ladder_nodes: ``[P, G]`` the ladder's nodes in units of :math:`B_i`, P at least
            ``remainder.ladder_panels()``.
        ladder_weights: ``[P, G]`` their weights in units of :math:`B_i`.

    Returns:
        ``[A, n]`` float64 payments clamped to :math:`[0, b_i x_i(b_i)]`, 0 where
        :math:`B_i = 0` (the inputs are float64, as :func:`token_auction_step` passes them).
    """
    auctions, participants, vocab = logprobs.shape
    agents = participants - 1
    bids = raw_weights[:, 1:]
    has_competition = competing > 0
    if bids.numel() == 0:  # no auction or no advertiser
        return torch.zeros_like(bids)
    # Rows with B_i = 0 are computed against B_i = 1 and their payments set to 0 (selecting the
    # rows would cost a host synchronisation on a GPU).
    row_competing = torch.where(has_competition, competing, 1.0).flatten()  # [R], R = A n
    others = leave_one_out(raw_weights)  # [A, n, n + 1]
    floored = logprobs.clamp_min(LOG_PROB_FLOOR)
    rest = torch.einsum("aim,amv->aiv", others, floored).reshape(-1, vocab)
    rest = rest / row_competing[:, None]  # [R, V]
    ladder_units = torch.as_tensor(ladder_nodes.ravel(), dtype=rest.dtype, device=rest.device)
    row_remainder = remainder.nodes.reshape(auctions * agents, -1)  # [R, E]
    row_bids = bids.flatten()  # [R]
    shares = torch.cat(
        [
            (ladder_units / (1.0 + ladder_units)).expand(len(row_bids), -1),
            row_remainder / (row_competing[:, None] + row_remainder),
            (row_bids / (row_competing + row_bids))[:, None],
        ],
        dim=-1,
    )
    allocation, _ = log_linear_share_allocations(
        rest, logprobs[:, 1:].reshape(-1, vocab), shares, LOG_PROB_FLOOR
    )
    ladder_count = ladder_units.numel()
    ladder_quadrature = remainder.node_weights(
        torch.as_tensor(ladder_weights, dtype=rest.dtype, device=rest.device), competing
    ).reshape(len(row_bids), -1)  # [R, P G]
    integral = (allocation[:, :ladder_count] * ladder_quadrature).sum(-1) + (
        allocation[:, ladder_count:-1] * remainder.weights.reshape(len(row_bids), -1)
    ).sum(-1)
    full_charge = row_bids * allocation[:, -1]
    payments = (full_charge - integral).clamp_min(0).minimum(full_charge).view_as(bids)
    return torch.where(has_competition, payments, torch.zeros_like(payments))


def stable_sampling_owner(raw_weights: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Owner of u when the participants' weights are laid end to end (user first).

    Args:
        raw_weights: ``[A, m]`` raw weights.
        uniforms: ``[A]`` in (0, 1).

    Returns:
        ``[A]`` long participant index (0 = user); the user when every weight is zero. Weights
        are divided by a power of two near the row's largest first (the owner is scale-free),
        so two weights of 1e308 do not overflow the cumulative sum.
    """
    raw_weights = scale_by_power_of_two(raw_weights, -largest_binary_exponent(raw_weights))
    cumulative = raw_weights.cumsum(-1)
    target = (uniforms * cumulative[:, -1]).unsqueeze(-1)
    owner = torch.searchsorted(cumulative.contiguous(), target.contiguous(), right=True)
    owner = owner.squeeze(-1).clamp_max(raw_weights.shape[-1] - 1)
    return torch.where(cumulative[:, -1] > 0, owner, torch.zeros_like(owner))


def stable_sampling_critical_bids(
    raw_weights: torch.Tensor, uniforms: torch.Tensor
) -> torch.Tensor:
    r"""Lowest bid with which each advertiser would still own u.

    :math:`z_i^* = \max(0,\ S_{<i}/u - B_i,\ S_{>i}/(1-u) - B_i)`, :math:`B_i = S_{<i} + S_{>i}`.

    Args:
        raw_weights: ``[A, n + 1]`` raw weights, user first.
        uniforms: ``[A]`` in (0, 1).

    Returns:
        ``[A, n]`` critical bids of the advertisers (degree one in the weights: computed on
        weights divided by a power of two near the row's largest and scaled back).
    """
    exponent = largest_binary_exponent(raw_weights)
    raw_weights = scale_by_power_of_two(raw_weights, -exponent)
    cumulative = raw_weights.cumsum(-1)
    before = (cumulative - raw_weights)[:, 1:]
    after = (cumulative[:, -1:] - cumulative)[:, 1:]
    competing = before + after
    u = uniforms.unsqueeze(-1)
    low_edge = before / u - competing
    high_edge = after / (1.0 - u) - competing
    critical = torch.clamp_min(torch.maximum(low_edge, high_edge), 0.0)
    return scale_by_power_of_two(critical, exponent)


def ex_post_second_price_payments(
    probs: torch.Tensor, raw_weights: torch.Tensor, uniforms: torch.Tensor, owner: torch.Tensor
) -> torch.Tensor:
    r"""Ex-post payments under stable sampling: :math:`T_i z_i^*` if i owns u, else 0.

    Their expectation over u equals :func:`linear_second_price_payments`.

    Args:
        probs: ``[A, n + 1, V]`` reported probabilities, user first.
        raw_weights: ``[A, n + 1]`` raw weights, user first.
        uniforms: ``[A]`` the draws used for sampling.
        owner: ``[A]`` participant that owns u (0 = user).

    Returns:
        ``[A, n]`` payments.
    """
    unit_weights = scale_by_power_of_two(raw_weights, -largest_binary_exponent(raw_weights))
    q_minus, _ = competing_aggregate_linear(probs, unit_weights)
    distance = total_variation(q_minus, probs[:, 1:])
    critical = stable_sampling_critical_bids(raw_weights, uniforms)
    agent_index = torch.arange(1, raw_weights.shape[-1], device=owner.device)
    owns = owner.unsqueeze(-1) == agent_index
    return torch.where(owns, distance * critical, torch.zeros_like(critical))


def sharpen(logprobs: torch.Tensor, exponents: torch.Tensor) -> torch.Tensor:
    r"""Reported distribution :math:`\tilde p \propto p^{s}`.

    Domain: any finite s > 0 (up to 1.8e308) and log-probabilities that are finite or
    ``-inf`` with at least one finite entry per row. When :math:`s \log p` overflows to
    ``-inf`` on every token (huge s), the row is computed as
    :math:`\mathrm{log\_softmax}(s(\log p - \max \log p))` instead, whose limit is the
    uniform distribution on the most likely tokens; other rows keep the direct formula, so
    ordinary reports are bit-identical to it.

    Args:
        logprobs: ``[..., V]`` log-probabilities.
        exponents: ``[...]`` sharpening exponents s > 0 (1 = unchanged).

    Returns:
        ``[..., V]`` log-probabilities; rows with s = 1 are returned unchanged (not
        renormalized), so a truthful report is bit-identical to the model's distribution.

    Raises:
        ValueError: If an exponent is not finite and positive.
    """
    if not bool(torch.all(torch.isfinite(exponents) & (exponents > 0))):
        raise ValueError(
            "sharpening exponents must be finite and > 0, got "
            f"{exponents[~(torch.isfinite(exponents) & (exponents > 0))].flatten()[:3].tolist()}"
        )
    exponents = exponents.unsqueeze(-1)
    scaled = logprobs * exponents
    overflowed = scaled.amax(-1, keepdim=True) == -torch.inf
    if bool(overflowed.any()):
        shifted = (logprobs - logprobs.amax(-1, keepdim=True)) * exponents
        scaled = torch.where(overflowed, shifted, scaled)
    sharpened = torch.log_softmax(scaled, dim=-1)
    return torch.where(exponents == 1.0, logprobs, sharpened)


@dataclass(frozen=True)
class TokenAuctionRule:
    """How a token auction aggregates, charges and samples.

    Attributes:
        aggregation: ``linear`` or ``log_linear``.
        payment: ``second_price`` (critical bid), ``first_price`` (:math:`b_i x_i`) or ``none``.
        settlement: ``expected`` (pay the expected critical-bid payment, sample q directly) or
            ``ex_post`` (stable sampling, pay :math:`T_i z_i^*` when owning u; linear only).
        platform_weight: :math:`b_0`, the user's weight.
        integration_nodes: Quadrature nodes for numerical payments (log-linear second price).
    """

    aggregation: Aggregation = "linear"
    payment: PaymentRule = "second_price"
    settlement: Settlement = "expected"
    platform_weight: float = 0.0
    integration_nodes: int = 64

    def __post_init__(self) -> None:
        if self.aggregation not in ("linear", "log_linear"):
            raise ValueError(f"aggregation must be linear or log_linear, got {self.aggregation!r}")
        if self.payment not in ("second_price", "first_price", "none"):
            raise ValueError(
                f"payment must be second_price, first_price or none, got {self.payment!r}"
            )
        if self.settlement not in ("expected", "ex_post"):
            raise ValueError(f"settlement must be expected or ex_post, got {self.settlement!r}")
        if self.settlement == "ex_post" and (
            self.aggregation != "linear" or self.payment != "second_price"
        ):
            raise ValueError("ex_post settlement needs linear aggregation and second_price payment")
        if not (0 <= self.platform_weight < float("inf")):
            raise ValueError(f"platform_weight must be finite and >= 0, got {self.platform_weight}")
        if self.integration_nodes < 1:
            raise ValueError(f"integration_nodes must be >= 1, got {self.integration_nodes}")


@dataclass(frozen=True)
class TokenAuctionStep:
    r"""One token of A auctions.

    Attributes:
        tokens: ``[A]`` sampled token ids.
        reported_allocations: ``[A, n]`` :math:`1 - TV(q, \tilde p_i)` (what payments price).
        true_allocations: ``[A, n]`` :math:`1 - TV(q, p_i)` with the TRUE distributions.
        user_allocations: ``[A]`` :math:`1 - TV(q, p_0)`.
        payments: ``[A, n]``.
        owners: ``[A]`` stable-sampling owner (0 = user), or -1 when sampled from q directly.
    """

    tokens: torch.Tensor
    reported_allocations: torch.Tensor
    true_allocations: torch.Tensor
    user_allocations: torch.Tensor
    payments: torch.Tensor
    owners: torch.Tensor


def check_bids(bids: torch.Tensor) -> None:
    """Raise ValueError unless every bid is finite and >= 0 (the mechanism's domain)."""
    valid = torch.isfinite(bids) & (bids >= 0)
    if not bool(valid.all()):
        raise ValueError(f"bids must be finite and >= 0, got {bids[~valid].flatten()[:3].tolist()}")


def run_token_auction_step(
    reported_logprobs: torch.Tensor,
    true_logprobs: torch.Tensor | None,
    bids: torch.Tensor,
    rule: TokenAuctionRule,
    generator: torch.Generator | None = None,
) -> TokenAuctionStep:
    r"""Aggregate, sample one token, allocate and charge, for A auctions at once.

    Checks the bids, then runs :func:`token_auction_step` with one random source for all A
    auctions.

    Args:
        reported_logprobs: ``[A, n + 1, V]`` reported log-probabilities, user (p_0) first.
        true_logprobs: ``[A, n, V]`` the advertisers' TRUE log-probabilities (values use these);
            None when every report is truthful (true = reported), which saves the work.
        bids: ``[A, n]`` non-negative bids.
        rule: The auction's rule.
        generator: Random source for sampling (on the tensors' device).

    Domain: bids finite and :math:`\ge 0` at any scale (subnormal to 1.8e308; the math divides
    each auction's weights by a power of two near the largest, exactly); log-probabilities
    finite or ``-inf``, at least one finite per row. On it the outputs are finite,
    allocations lie in [0, 1], and expected payments in :math:`[0, b_i x_i]` (ex post:
    :math:`[0, b_i]`).

    Returns:
        The step's token, allocations and payments. Math runs in float64.

    Raises:
        ValueError: If a bid is negative, NaN or infinite.
    """
    check_bids(bids)
    sampling = SamplingSegments((int(bids.shape[0]),), (generator,))
    return token_auction_step(reported_logprobs, true_logprobs, bids, rule, sampling)


@dataclass(frozen=True)
class SamplingSegments:
    """Consecutive blocks of a step's A rows, each sampled with its own random source.

    Replicate markets decoded together keep their own random streams: block j (``counts[j]``
    rows) draws from ``generators[j]`` exactly what a step over its rows alone would draw, in
    the same order (the ex-post uniforms first, then the tokens), while the float64 pricing
    runs once over all A rows.

    Attributes:
        counts: Rows per block, summing to A.
        generators: One random source per block (None: torch's default generator, shared by
            every block given None, so such blocks do not draw what they would draw alone).

    Raises:
        ValueError: If the blocks and generators differ in number or a count is negative.
    """

    counts: Sequence[int]
    generators: Sequence[torch.Generator | None]

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.generators) or any(c < 0 for c in self.counts):
            raise ValueError(
                f"sampling blocks: {len(self.counts)} counts {list(self.counts)} for "
                f"{len(self.generators)} generators"
            )

    def uniforms(self, device: torch.device) -> torch.Tensor:
        """``[A]`` float64 uniforms on [0, 1), block j from ``generators[j]``."""
        return torch.cat(
            [
                torch.rand(count, generator=generator, device=device, dtype=torch.float64)
                for count, generator in zip(self.counts, self.generators, strict=True)
            ]
        )

    def multinomial(self, probs: torch.Tensor) -> torch.Tensor:
        """``[A]`` one draw per row of ``probs`` ``[A, V]``, block j from ``generators[j]``."""
        parts = probs.split(list(self.counts))
        return torch.cat(
            [
                torch.multinomial(part, 1, generator=generator).squeeze(-1)
                for part, generator in zip(parts, self.generators, strict=True)
            ]
        )


def token_auction_step(
    reported_logprobs: torch.Tensor,
    true_logprobs: torch.Tensor | None,
    bids: torch.Tensor,
    rule: TokenAuctionRule,
    sampling: SamplingSegments,
) -> TokenAuctionStep:
    """:func:`run_token_auction_step` on bids already checked, with a random source per block.

    A decode checks its bids once (they do not change between steps) and calls this every
    step, so the step reads nothing back to the host for the check; blocks of rows keep their
    own generators (:class:`SamplingSegments`). Arguments and result as there.

    Raises:
        ValueError: If the blocks' counts do not add up to A.
    """
    if sum(sampling.counts) != bids.shape[0]:
        raise ValueError(
            f"sampling blocks cover {sum(sampling.counts)} rows of a step of {bids.shape[0]}"
        )
    reported_logprobs = reported_logprobs.double()
    raw_weights = participant_weights(bids.double(), rule.platform_weight)
    weights = normalized_weights(raw_weights)
    reported_probs = reported_logprobs.exp()
    q = aggregate(reported_logprobs, weights, rule.aggregation, reported_probs)
    if rule.settlement == "ex_post":
        uniforms = sampling.uniforms(bids.device).clamp(1e-12, 1 - 1e-12)
        owners = stable_sampling_owner(raw_weights, uniforms)
        source = reported_probs[torch.arange(bids.shape[0], device=bids.device), owners]
    else:
        owners = torch.full_like(bids[:, 0], -1, dtype=torch.long)
        source = q
    tokens = sampling.multinomial(source.float())
    reported_alloc = allocations(q, reported_probs[:, 1:])
    if rule.payment == "none":
        payments = torch.zeros_like(reported_alloc)
    elif rule.payment == "first_price":
        payments = raw_weights[:, 1:] * reported_alloc
    elif rule.settlement == "ex_post":
        payments = ex_post_second_price_payments(reported_probs, raw_weights, uniforms, owners)
    elif rule.aggregation == "linear":
        payments = linear_second_price_payments(reported_probs, raw_weights)
    else:
        payments = numerical_second_price_payments(
            reported_logprobs, raw_weights, rule.aggregation, rule.integration_nodes
        )
    # Against rounding: an expected payment lies in [0, b_i x_i], an ex-post one in [0, b_i].
    ceiling = (
        raw_weights[:, 1:] if rule.settlement == "ex_post" else raw_weights[:, 1:] * reported_alloc
    )
    payments = payments.clamp_min(0).minimum(ceiling)
    if true_logprobs is None:
        true_alloc = reported_alloc
    else:
        true_alloc = allocations(q, true_logprobs.double().exp())
    return TokenAuctionStep(
        tokens=tokens,
        reported_allocations=reported_alloc,
        true_allocations=true_alloc,
        user_allocations=allocations(q, reported_probs[:, :1]).squeeze(-1),
        payments=payments,
        owners=owners,
    )
