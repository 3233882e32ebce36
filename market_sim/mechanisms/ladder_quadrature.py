r"""Quadrature of :math:`\int_0^b x(z)\,dz` on a ladder of panels at fixed multiples of B.

The second-price payment :math:`b\,x(b) - \int_0^b x(z)\,dz` of a token auction has no closed
form under log-linear aggregation. The allocation :math:`x(z)` of a bid z against the competing
weight :math:`B > 0` varies on the scale B, so the integral is split at the ladder's edges
:math:`B u_j` (:func:`ladder_edges`, uniform in :math:`y = \ln(1 + z/B)`): every whole panel
below b by ``GAUSS_NODES_PER_PANEL`` Gauss-Legendre nodes (:func:`ladder_panel_rule`), and the
part :math:`[B u_J, b]` of the panel J that holds b by the polynomial interpolating x at that
panel's own nodes (:func:`ladder_remainder_rule`). Every node sits at a fixed multiple of B,
so all bids against the same B (a regret search's candidates, the realized bid) read one set of
allocations; only bids in the first panel and above the ladder's top get nodes of their own.

The rule depends on b / B only (the payment is homogeneous of degree one in the weights), and is
continuous in b. :mod:`~market_sim.mechanisms.token_auction` applies it to the realized
auction, :mod:`~market_sim.mechanisms.token_auction_counterfactual` to a regret search's
candidates, with the same nodes and weights.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

GAUSS_NODES_PER_PANEL = 8
GAUSS_NODES, GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(GAUSS_NODES_PER_PANEL)
"""Gauss-Legendre nodes and weights on [-1, 1], one panel's rule."""

LADDER_TOP = 4.0
r"""Top of the shared ladder in :math:`y = \ln(1 + z/B)`: it covers bids up to
:math:`(e^4 - 1) B \approx 54 B`; higher bids add a graded tail (``TAIL_PANELS``)."""

TAIL_PANELS = 8
"""Graded panels of the tail above the ladder (bids above ``LADDER_TOP``)."""


def ladder_panels_per_unit(integration_nodes: int) -> int:
    r"""Ladder panels per unit of :math:`y`: ``integration_nodes / GAUSS_NODES_PER_PANEL``, >= 1."""
    return max(1, -(-integration_nodes // GAUSS_NODES_PER_PANEL))


FIRST_PANEL_HALVINGS = 4
"""The ladder's first panel is split at 1/2, 1/4, ... of its width, this many times."""


def ladder_edges(panels_per_unit: int) -> np.ndarray:
    r"""Edges of the shared ladder, in units of the competing weight B.

    :math:`u_j = e^{j/P} - 1` for :math:`j = 0..J`, :math:`J = \lceil` ``LADDER_TOP`` :math:`P
    \rceil`: uniform panels in :math:`y = \ln(1 + z/B) = -\ln(1 - t)`, t the agent's share
    :math:`z/(B + z)` (in which the aggregate logits are affine). The first panel is further
    split at :math:`u_1 2^{-k}`, :math:`k = 1..` ``FIRST_PANEL_HALVINGS``, so that a bid well
    below B still meets panels no wider than about half of it (its payment is of order
    :math:`b^2` and would otherwise carry the error of a whole panel).

    Returns:
        ``[J + 1 + FIRST_PANEL_HALVINGS]`` increasing edges, the first 0 (a copy of the
        cached array: callers may modify it).
    """
    return cached_ladder_edges(panels_per_unit).copy()


@functools.lru_cache(maxsize=16)
def cached_ladder_edges(panels_per_unit: int) -> np.ndarray:
    """:func:`ladder_edges`, computed once per ``panels_per_unit`` (read-only)."""
    uniform = np.expm1(np.arange(int(np.ceil(LADDER_TOP * panels_per_unit)) + 1) / panels_per_unit)
    halvings = uniform[1] * 2.0 ** -np.arange(FIRST_PANEL_HALVINGS, 0, -1)
    edges = np.concatenate([uniform[:1], halvings, uniform[1:]])
    edges.flags.writeable = False
    return edges


def ladder_panel_rule(panels_per_unit: int, panels: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights of the first ``panels`` ladder panels, in units of B.

    Returns:
        ``(nodes, weights)``, each ``[panels, GAUSS_NODES_PER_PANEL]``.
    """
    edges = cached_ladder_edges(panels_per_unit)[: panels + 1]
    base_nodes, base_weights = GAUSS_NODES, GAUSS_WEIGHTS
    lows, widths = edges[:-1, None], np.diff(edges)[:, None]
    return lows + widths * (base_nodes + 1.0) / 2.0, widths * base_weights / 2.0


def legendre_values(points: torch.Tensor, count: int) -> torch.Tensor:
    r"""Legendre polynomials :math:`P_0 .. P_{count-1}` at ``points``.

    Bonnet's recurrence :math:`(m + 1) P_{m+1} = (2m + 1)\,\xi P_m - m P_{m-1}`.

    Args:
        points: ``[...]`` points :math:`\xi` in [-1, 1].
        count: Number of polynomials, >= 2.

    Returns:
        ``[..., count]`` values.
    """
    values = [torch.ones_like(points), points]
    for degree in range(1, count - 1):
        values.append(
            ((2 * degree + 1) * points * values[degree] - degree * values[degree - 1])
            / (degree + 1)
        )
    return torch.stack(values, dim=-1)


LEGENDRE_AT_NODES = legendre_values(torch.from_numpy(GAUSS_NODES), GAUSS_NODES_PER_PANEL).numpy()
r"""``[G, G]`` :math:`P_m(\xi_k)`: row k a Gauss node, column m a degree."""


def partial_panel_weights(position: torch.Tensor) -> torch.Tensor:
    r"""Weights of :math:`\int_{-1}^{X} f` from f at one panel's Gauss nodes, by interpolation.

    The polynomial of degree G - 1 through :math:`(\xi_k, f(\xi_k))` is
    :math:`\sum_k f(\xi_k)\,\ell_k`; by the discrete orthogonality of the Gauss rule its Lagrange
    basis is :math:`\ell_k = w_k \sum_{m < G} \tfrac{2m + 1}{2} P_m(\xi_k) P_m`, and with
    :math:`\int_{-1}^{X} P_m = (P_{m+1}(X) - P_{m-1}(X)) / (2m + 1)` for m >= 1,

    .. math:: W_k(X) = \int_{-1}^{X} \ell_k = w_k\Big(\frac{X + 1}{2}
              + \frac12 \sum_{m=1}^{G-1} P_m(\xi_k)\,\big(P_{m+1}(X) - P_{m-1}(X)\big)\Big).

    :math:`W_k(-1) = 0`, :math:`W_k(1) = w_k` (the whole panel's Gauss weights) and
    :math:`\sum_k W_k(X) = X + 1` (constants integrate exactly). Exact for f of degree < G.

    Args:
        position: ``[...]`` upper limits X in [-1, 1] (float64).

    Returns:
        ``[..., G]`` weights on the interval [-1, 1]; scale by half the panel's width.
    """
    legendre = legendre_values(position, GAUSS_NODES_PER_PANEL + 1)  # [..., G + 1]
    antiderivatives = (legendre[..., 2:] - legendre[..., :-2]) / 2.0  # [..., G - 1], m = 1..G-1
    gauss_weights, at_nodes = interpolation_constants(position.device, position.dtype)
    # Elementwise, not a matmul: a BLAS product's rounding can depend on the batch's size, and
    # a bid's weights must not depend on which other bids are priced with it.
    correction = (antiderivatives.unsqueeze(-2) * at_nodes).sum(-1)  # [..., G]
    interpolated = ((position + 1.0) / 2.0).unsqueeze(-1) + correction
    return gauss_weights * interpolated


@functools.lru_cache(maxsize=16)
def interpolation_constants(
    device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``([G], [G, G - 1])``: the Gauss weights and :math:`P_m(\xi_k)` for m >= 1, on ``device``.

    Made once per device (a copy from the host per call would block a GPU's stream).
    """
    return (
        torch.tensor(GAUSS_WEIGHTS, dtype=dtype, device=device),
        torch.tensor(LEGENDRE_AT_NODES[:, 1:], dtype=dtype, device=device),
    )


@dataclass(frozen=True)
class LadderRemainder:
    r"""Each bid's quadrature of :math:`\int_0^b x(z)\,dz` beyond the ladder's whole panels.

    .. math:: \int_0^b x \approx B \sum_{j < J} \sum_k w_{jk}\,x(B u_{jk})
              + \sum_k \pi_k\,x(B u_{Jk}) + \sum_e \omega_e\,x(\zeta_e)

    Attributes:
        whole: ``[...]`` long count J of whole ladder panels below b.
        panel_weights: ``[..., G]`` weights :math:`\pi_k` on the nodes :math:`B u_{Jk}` of the
            ladder panel J that holds b (0 where the bid has nodes of its own).
        nodes: ``[..., E]`` nodes :math:`\zeta_e` of a bid's own panels: bids in the first
            panel or above the ladder's top; E = 0 when no bid has any.
        weights: ``[..., E]`` their weights :math:`\omega_e` (0 where unused).
    """

    whole: torch.Tensor
    panel_weights: torch.Tensor
    nodes: torch.Tensor
    weights: torch.Tensor

    def select(self, index: torch.Tensor) -> LadderRemainder:
        """The rule of the bids at ``index`` (an index into the first dimension)."""
        return LadderRemainder(
            self.whole[index], self.panel_weights[index], self.nodes[index], self.weights[index]
        )

    def ladder_panels(self) -> int:
        """Number of ladder panels the rule reads: J, or J + 1 where panel J is interpolated."""
        if self.whole.numel() == 0:
            return 0
        reads_panel = (self.panel_weights != 0).any(-1)
        return int((self.whole + reads_panel.long()).max())

    def node_weights(self, ladder_weights: torch.Tensor, competing: torch.Tensor) -> torch.Tensor:
        r"""Weights on the ladder's nodes: :math:`B w_{jk}` for j < J, :math:`\pi_k` for j = J.

        Args:
            ladder_weights: ``[P, G]`` the first P ladder panels' weights in units of B
                (:func:`ladder_panel_rule`), P >= :meth:`ladder_panels`.
            competing: ``[...]`` competing weights B.

        Returns:
            ``[..., P, G]`` weights of :math:`x(B u_{jk})`.
        """
        panel = torch.arange(ladder_weights.shape[0], device=self.whole.device)
        whole = self.whole.unsqueeze(-1)
        below = torch.where(
            (panel < whole).unsqueeze(-1), competing[..., None, None] * ladder_weights, 0.0
        )
        return torch.where((panel == whole).unsqueeze(-1), self.panel_weights.unsqueeze(-2), below)


def ladder_remainder_rule(
    bids: torch.Tensor, competing: torch.Tensor, panels_per_unit: int
) -> LadderRemainder:
    r"""Each bid's quadrature of :math:`\int_0^b x(z)\,dz` beyond the shared ladder panels.

    The integral over :math:`[0, b]` is split at the ladder edges :math:`B u_j`
    (:func:`ladder_edges`): every whole panel below b (their rule is shared by all bids against
    the same B, :func:`ladder_panel_rule`), then the remainder :math:`[B u_J, b]`:

    * inside the ladder (:math:`1 \le J <` the top edge's index), by the polynomial of degree
      G - 1 that interpolates x at panel J's own Gauss nodes, integrated exactly over the
      remainder (:func:`partial_panel_weights`, X the bid's position in the panel). Those nodes
      are ladder nodes, so a bid adds no allocation to evaluate but its own :math:`x(b)`; the
      rule is exact for x of degree < G on the panel (a Gauss panel of its own on
      :math:`[B u_J, b]`, the rule before, was exact to degree 2G - 1, at G more allocations
      per bid). The price is accuracy where a kink of the TV (some :math:`q_v` crossing
      :math:`p_v`) lies in the panel: ``benchmarks/ladder_accuracy.py`` (200 ratios b / B in
      [0.01, 50], three instances, against 2048 nodes) measured worst errors of 1.4e-4,
      3.4e-4 and 6.3e-5 of :math:`b x(b)` against 4.2e-5, 2.3e-4 and 5.0e-5 with a panel
      per remainder, and medians 1.2 to 1.5 times as large (about 1e-6);
    * in the first panel (:math:`b < B u_1 2^{-H}`, H = ``FIRST_PANEL_HALVINGS``), by one
      Gauss-Legendre panel on :math:`[0, b]`: there the payment is of order :math:`b^2` and
      interpolation over a panel much wider than b would lose it (measured: relative error
      0.99 at b = 1e-5 B);
    * above the ladder's top, by ``TAIL_PANELS`` panels graded quadratically toward
      :math:`B u_J`, where x still varies on the scale B.

    The rule depends on b / B only (homogeneous of degree one) and is continuous in b: as b
    reaches an edge the remainder becomes the whole panel it replaces (:math:`W_k(1) = w_k`).

    Args:
        bids: ``[...]`` bids :math:`b \ge 0`.
        competing: ``[...]`` competing weights :math:`B > 0` (rows with B = 0 get no nodes).
        panels_per_unit: Ladder panels per unit of y.

    Returns:
        The :class:`LadderRemainder`: E = 0 when no bid has nodes of its own (every bid inside
        the ladder, 0, or against B = 0), else ``GAUSS_NODES_PER_PANEL``, or ``TAIL_PANELS``
        times that when some b is above the top.
    """
    edges_unit = cached_ladder_edges(panels_per_unit)
    edges = torch.tensor(edges_unit, dtype=bids.dtype, device=bids.device)
    positive = competing > 0
    # b / B in units of B (not clamped: a subnormal B must still place b in its panel).
    ratio = torch.where(positive, bids / torch.where(positive, competing, 1.0), 0.0)
    last = len(edges_unit) - 1
    whole = (torch.searchsorted(edges, ratio.contiguous(), right=True) - 1).clamp(0, last)
    whole = torch.where(positive, whole, torch.zeros_like(whole))
    low = competing * edges[whole]
    interpolated = positive & (whole >= 1) & (whole < last)
    unit_width = edges[(whole + 1).clamp_max(last)] - edges[whole]  # > 0 where interpolated
    position = torch.where(
        interpolated,
        2.0 * (ratio - edges[whole]) / torch.where(interpolated, unit_width, 1.0) - 1.0,
        -1.0,
    ).clamp(-1.0, 1.0)
    panel_weights = torch.where(
        interpolated.unsqueeze(-1),
        (competing * unit_width / 2.0).unsqueeze(-1) * partial_panel_weights(position),
        0.0,
    )
    own = positive & ~interpolated & (bids > 0)  # b = 0: nothing to integrate
    above_top = positive & (whole == last)
    any_own, any_above_top = torch.stack([own.any(), above_top.any()]).tolist()  # one sync
    if not any_own:
        empty = bids.new_zeros(*bids.shape, 0)
        return LadderRemainder(whole, panel_weights, empty, empty)
    width = (bids - low).clamp_min(0.0)
    base_nodes, base_weights = GAUSS_NODES, GAUSS_WEIGHTS
    if any_above_top:
        panel_edges = (np.arange(TAIL_PANELS + 1) / TAIL_PANELS) ** 2
        unit_nodes = panel_edges[:-1, None] + np.diff(panel_edges)[:, None] * (base_nodes + 1) / 2
        unit_weights = np.diff(panel_edges)[:, None] * base_weights / 2
        # First-panel bids keep their one panel, padded with zero weights (the others: 0).
        single_nodes = np.zeros_like(unit_nodes)
        single_nodes[0] = (base_nodes + 1) / 2
        single_weights = np.zeros_like(unit_weights)
        single_weights[0] = base_weights / 2
        tail = above_top.unsqueeze(-1)
        unit_nodes_t = torch.where(
            tail, bids.new_tensor(unit_nodes.ravel()), bids.new_tensor(single_nodes.ravel())
        )
        unit_weights_t = torch.where(
            tail, bids.new_tensor(unit_weights.ravel()), bids.new_tensor(single_weights.ravel())
        )
    else:
        unit_nodes_t = bids.new_tensor((base_nodes + 1) / 2)
        unit_weights_t = bids.new_tensor(base_weights / 2)
    nodes = low.unsqueeze(-1) + width.unsqueeze(-1) * unit_nodes_t
    weights = torch.where(own.unsqueeze(-1), width.unsqueeze(-1) * unit_weights_t, 0.0)
    return LadderRemainder(whole, panel_weights, nodes, weights)
