"""Accuracy of the ladder quadrature's remainder rules, on a fine scan of bid ratios.

The second-price payment ``b x(b) - int_0^b x(z) dz`` under log-linear aggregation is integrated
on the ladder of ``market_sim.mechanisms.ladder_quadrature``. Its remainder ``[B u_J, b]`` inside
the ladder is integrated by the interpolant of x at panel J's own nodes (the rule in use); the
rule before gave each remainder a Gauss-Legendre panel of its own. This script prices the same
bids both ways at 64 nodes per unit of ln(1 + z/B) and compares them with the 2048-node
reference, as fractions of the charge ceiling b x(b) (the scale on which a regret search
compares utilities): worst and median over ``--ratios`` log-spaced ratios b / B in [0.01, 50]
(all inside the ladder), per instance (peaked random distributions, 2 advertisers, V = 300).

Usage: ``python benchmarks/ladder_accuracy.py [--ratios 40]`` (about a minute at 40).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from market_sim.mechanisms.ladder_quadrature import (
    GAUSS_NODES,
    GAUSS_WEIGHTS,
    ladder_edges,
    ladder_panel_rule,
    ladder_panels_per_unit,
    ladder_remainder_rule,
)
from market_sim.mechanisms.token_auction import (
    allocation_curve,
    numerical_second_price_payments,
    participant_weights,
)

INSTANCES = [(11, 3.0), (22, 6.0), (31, 3.0)]
"""(seed, logit scale) of each instance: log-softmax of Gaussian logits times the scale."""

NODES = 64
"""Quadrature nodes per unit of ln(1 + z/B), the scenarios' default."""


def own_panel_payments(logprobs: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
    """Advertiser 1's payments under the previous remainder rule, ``[A]``: the ladder's whole
    panels below b, then one Gauss-Legendre panel of its own on ``[B u_J, b]``."""
    bids, competing = raw[:, 1], raw[:, 0] + raw[:, 2]
    per_unit = ladder_panels_per_unit(NODES)
    whole = ladder_remainder_rule(bids, competing, per_unit).whole  # [A]
    unit_nodes, unit_weights = ladder_panel_rule(per_unit, int(whole.max()))
    below = torch.arange(unit_nodes.shape[0])[None, :, None] < whole[:, None, None]
    ladder_nodes = competing[:, None, None] * torch.from_numpy(unit_nodes)  # [A, J, G]
    ladder_weights = torch.where(
        below, competing[:, None, None] * torch.from_numpy(unit_weights), 0
    )
    low = competing * torch.from_numpy(ladder_edges(per_unit))[whole]
    width = (bids - low)[:, None]
    own_nodes = low[:, None] + width * torch.from_numpy((GAUSS_NODES + 1.0) / 2.0)  # [A, G]
    own_weights = width * torch.from_numpy(GAUSS_WEIGHTS / 2.0)
    grid = torch.cat([ladder_nodes.flatten(1), own_nodes, bids[:, None]], dim=1)  # [A, K]
    both = grid[:, None, :].expand(-1, 2, -1).contiguous()  # advertiser 2's row is unused
    curve = allocation_curve(logprobs, raw, both, "log_linear")[:, 0]  # [A, K]
    weights = torch.cat([ladder_weights.flatten(1), own_weights], dim=1)
    integral = (curve[:, :-1] * weights).sum(-1)
    full_charge = bids * curve[:, -1]
    return (full_charge - integral).clamp_min(0).minimum(full_charge)


def main() -> None:
    """Print each instance's worst and median errors of both rules."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratios", type=int, default=40, help="bid ratios b / B scanned")
    args = parser.parse_args()
    ratios = torch.from_numpy(np.geomspace(0.01, 50.0, args.ratios))
    print(f"{args.ratios} ratios b / B in [0.01, 50], error / (b x(b)) against 2048 nodes")
    print("instance (seed, logit scale)   interpolated: worst   median   own panel: worst   median")
    for seed, scale in INSTANCES:
        generator = torch.Generator().manual_seed(seed)
        logits = torch.randn(len(ratios), 3, 300, generator=generator, dtype=torch.float64)
        logprobs = torch.log_softmax(logits * scale, -1)
        raw = participant_weights(torch.stack([ratios, torch.full_like(ratios, 0.7)], 1), 0.3)
        reference = numerical_second_price_payments(
            logprobs, raw, "log_linear", nodes=2048, node_chunk=1024
        )[:, 0]
        ceiling = ratios * allocation_curve(logprobs, raw, raw[:, 1:, None], "log_linear")[:, 0, 0]
        interpolated = numerical_second_price_payments(logprobs, raw, "log_linear", nodes=NODES)
        errors = {
            "interpolated": ((interpolated[:, 0] - reference) / ceiling).abs(),
            "own panel": ((own_panel_payments(logprobs, raw) - reference) / ceiling).abs(),
        }
        figures = "   ".join(
            f"{float(error.max()):.2e} {float(error.median()):.2e}" for error in errors.values()
        )
        print(f"({seed}, {scale})                      {figures}")


if __name__ == "__main__":
    main()
