r"""Log-linear allocations of one participant against a collapsed rest, at many weight shares.

Under log-linear aggregation, participant :math:`i` with weight :math:`z` facing the others'
total weight :math:`B > 0` sees the aggregate logits

.. math:: \ell(t) = r + t\,(f - r), \qquad t = \frac{z}{B + z} \in [0, 1),

where :math:`f = \log \max(\tilde p_i, \text{floor})` is its floored report and
:math:`r = \sum_{j \ne i} w_j f_j / B` the others' weighted mean floored log-probabilities (the
aggregate is linear in the weights). Its allocation at share t is

.. math:: x(t) = 1 - \mathrm{TV}(q(t), \tilde p_i)
          = 1 - \frac{\sum_v |e_v - Z \tilde p_{i,v}|}{2 Z}, \qquad
          e = \exp \ell(t),\ Z = \sum_v e_v,

one exponential per (share, token). Both the realized auction's second-price quadrature
(:func:`~market_sim.mechanisms.token_auction.numerical_second_price_payments`) and the regret
search's counterfactual (:mod:`~market_sim.mechanisms.token_auction_counterfactual`) evaluate
x at a few hundred shares per row; this module is that evaluation, shared by both.

The logits are convex combinations of values in :math:`[\log(\text{floor}), 0]`, so the
exponential cannot overflow or underflow and the softmax needs no max shift. It is taken as
:math:`2^{\ell \log_2 e}` (the two ``[R, V]`` inputs are scaled by :math:`\log_2 e` once):
torch's float64 ``exp2`` took 0.43 ns per element on an AMD EPYC with AVX-512 (one thread)
against 1.47 ns for ``exp``, and the rounded scale moves each term by at most
:math:`|\ell| \log_2(e)\, 2^{-53} \ln 2`, under 4e-15 relative for :math:`\ell \ge \ln 10^{-12}`.
"""

from __future__ import annotations

import math

import torch

LOG2_E = math.log2(math.e)
"""log2(e): exp(l) = 2^(l log2 e)."""

EXP2_LANES = 16
"""Float64 elements per iteration of torch's vectorized CPU loop (two 512-bit vectors). Rows are
padded to a multiple of it (logit 0, left out of every sum): torch's vectorized ``exp2`` and its
scalar loop for a block's last elements can differ by an ulp, so without the padding an
element's value would depend on the shape of the block it was computed in."""

BLOCK_ELEMENTS = 2**18
"""Float64 elements of one pass on a CPU (2 MB, about a core's cache): a block is a few rows'
shares, or a part of one row's."""

DEVICE_BLOCK_ELEMENTS = 2**26
"""Float64 elements of one pass on a GPU (512 MB): few, large blocks, since each block costs a
handful of kernel launches (SmolLM2's 49,152 tokens x 256 rows x ~120 shares in 2**18-element
blocks would be thousands of launches per step). Its results matched the CPU path on an H200
(``tests/test_gpu.py``); its speed there was not measured."""


def buffer_view(buffer: torch.Tensor, rows: int, shares: int, width: int) -> torch.Tensor:
    """A flat buffer's first elements as ``[rows, shares, width]``.

    Blocks reuse one buffer: a fresh tensor per block would page-fault.
    """
    return buffer[: rows * shares * width].view(rows, shares, width)


def log_linear_share_allocations(
    rest: torch.Tensor,
    report: torch.Tensor,
    shares: torch.Tensor,
    floor: float,
    true_probs: torch.Tensor | None = None,
    true_count: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Allocations :math:`1 - \mathrm{TV}(q(t), \cdot)` at each row's shares t.

    Args:
        rest: ``[R, V]`` float64 the rest's floored, weighted mean log-probabilities r (every
            input float64: the outputs are).
        report: ``[R, V]`` float64 the participant's reported log-probabilities (unfloored:
            the allocation compares against their exponential).
        shares: ``[R, N]`` float64 shares t in [0, 1] per row.
        floor: The log-probability floor of the aggregation.
        true_probs: ``[R, V]`` the participant's true probabilities, if ``true_count > 0``.
        true_count: The last ``true_count`` shares of each row also get the allocation
            against ``true_probs``.

    Returns:
        ``([R, N], [R, true_count])`` float64: allocations against the report and against the
        true distribution, clamped to [0, 1]. Each value depends only on its row's inputs and
        its share (not on the other shares or rows: see ``EXP2_LANES``).
    """
    rows, vocab = rest.shape
    count = shares.shape[1]
    padded = -(-vocab // EXP2_LANES) * EXP2_LANES
    rest_base2 = rest.new_zeros(rows, 1, padded)
    slope_base2 = rest.new_zeros(rows, 1, padded)
    torch.mul(rest, LOG2_E, out=rest_base2[:, 0, :vocab])
    torch.mul(report.clamp_min(floor) - rest, LOG2_E, out=slope_base2[:, 0, :vocab])
    reported_probs = report.exp().unsqueeze(1)  # [R, 1, V]
    totals = torch.empty(rows, count, dtype=torch.float64, device=rest.device)
    gaps = torch.empty_like(totals)
    true_distances = torch.empty(rows, true_count, dtype=torch.float64, device=rest.device)
    first_true = count - true_count
    budget = BLOCK_ELEMENTS if rest.device.type == "cpu" else DEVICE_BLOCK_ELEMENTS
    shares_per_block = max(1, min(count, budget // padded))
    rows_per_block = max(1, min(rows, budget // (shares_per_block * padded)))
    # One reused buffer: a fresh [rows, shares, V] tensor per block is a fresh mapping whose
    # page faults cost about 4x the multiply-add that fills it.
    buffer = torch.empty(
        rows_per_block * shares_per_block * padded, dtype=torch.float64, device=rest.device
    )
    if true_count:  # the true allocations' block: the last true_count shares only
        true_buffer = torch.empty(
            rows_per_block * min(true_count, shares_per_block) * padded,
            dtype=torch.float64,
            device=rest.device,
        )
        true_padded = rest.new_zeros(rows, 1, padded)
        true_padded[:, 0, :vocab] = true_probs
    for row in range(0, rows, rows_per_block):
        row_span = slice(row, min(row + rows_per_block, rows))
        row_count = row_span.stop - row
        for start in range(0, count, shares_per_block):
            stop = min(start + shares_per_block, count)
            block = buffer_view(buffer, row_count, stop - start, padded)
            torch.addcmul(
                rest_base2[row_span],
                shares[row_span, start:stop, None],
                slope_base2[row_span],
                out=block,
            )
            unnormalized = block.exp2_()[..., :vocab]  # e = exp(logits)
            total = torch.sum(unnormalized, -1, out=totals[row_span, start:stop]).unsqueeze(-1)
            if stop > first_true:  # TV(q, p) = sum_v |e_v - Z p_v| / (2 Z), as below
                skip = max(first_true - start, 0)
                offset = max(start - first_true, 0)
                true_block = buffer_view(true_buffer, row_count, stop - start - skip, padded)
                true_gap = torch.addcmul(
                    block[:, skip:],
                    total[:, skip:],
                    true_padded[row_span],
                    value=-1.0,
                    out=true_block,
                )
                true_distances[row_span, offset : offset + true_block.shape[1]] = (
                    0.5 * true_gap[..., :vocab].abs_().sum(-1) / total[:, skip:, 0]
                )
            # TV(q, p~) = sum_v |e_v - Z p~_v| / (2 Z), in place (p~ sums to 1 only within
            # float32 rounding of a sharpened report, so the shortcut sum_v min(q_v, p~_v)
            # would differ by 1e-7).
            gap = unnormalized.addcmul_(total, reported_probs[row_span], value=-1.0).abs_()
            torch.sum(gap, -1, out=gaps[row_span, start:stop])
    reported = (1.0 - 0.5 * gaps / totals).clamp(0.0, 1.0)
    return reported, (1.0 - true_distances).clamp(0.0, 1.0)
