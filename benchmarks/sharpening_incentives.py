"""Does sharpening the reported distribution pay? Measured per token-auction variant.

For each variant (aggregation x payment rule) the Hawaii scenario runs with truthful advertisers
and the regret estimator searches deviations twice per (round, advertiser), on the same
counterfactual: bids only (report_scale fixed at 1), and bids jointly with sharpening exponents
in [0.25, 4]. The difference is what sharpening adds to the best misreport. Printed per variant:
mean and max of both regrets, the share of agent-rounds where sharpening adds more than 1e-6,
and the mean best exponent where it does.

Usage: ``python benchmarks/sharpening_incentives.py [--rounds 60] [--scenario FILE]`` (default
``scenarios/hawaii.toml``; ``scenarios/smollm2_hawaii.toml`` asks the same on SmolLM2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from market_sim.incentives.regret import estimate_regret
from market_sim.market.model import MarketModel
from market_sim.plugins import build_platform
from market_sim.run import load_scenario_model, seed_everything
from market_sim.scenario import RegretConfig, load_scenario

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "hawaii.toml"
VARIANTS = [
    ("linear", "second_price"),
    ("linear", "first_price"),
    ("linear", "none"),
    ("log_linear", "second_price"),
    ("log_linear", "first_price"),
    ("log_linear", "none"),
]


class MeasuringModel(MarketModel):
    """The market with both deviation searches recorded per (round, advertiser)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pairs: list[tuple[float, float, float]] = []

    def measure_incentives(self, valuation, report, counterfactual, utility):
        """Record bid-only and joint regrets, then fill the usual columns."""
        space = self.platform.report_space
        bid_only = estimate_regret(
            counterfactual, valuation, report, space, RegretConfig(distortion_points=1)
        )
        joint = estimate_regret(
            counterfactual, valuation, report, space, RegretConfig(distortion_points=9)
        )
        self.pairs.append((bid_only.regret, joint.regret, joint.best_distortion))
        return super().measure_incentives(valuation, report, None, utility)


def measure(aggregation: str, payment: str, rounds: int, lm, path: Path = SCENARIO) -> np.ndarray:
    """``[agent-rounds, 3]``: bid-only regret, joint regret, best exponent of the joint search."""
    scenario = load_scenario(
        path,
        [
            f"rounds={rounds}",
            f'mechanism.aggregation="{aggregation}"',
            f'mechanism.payment="{payment}"',
            "mechanism.integration_nodes=32",
        ],
    )
    seed_everything(scenario.seed)
    model = MeasuringModel(scenario, build_platform(scenario.mechanism, lm), "sharpening")
    for _ in range(rounds):
        model.step()
    return np.array(model.pairs)


def main() -> None:
    """Print one row per variant."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--scenario", type=Path, default=SCENARIO)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lm = load_scenario_model(load_scenario(args.scenario))
    print(
        f"{args.scenario.name}, truthful advertisers, {args.rounds} rounds x 2 advertisers "
        "per variant"
    )
    header = (
        f"{'aggregation':<11} {'payment':<13}{'bid-only mean':>14}{'max':>9}"
        f"{'joint mean':>12}{'max':>9}{'sharpening pays':>17}{'best s':>8}"
    )
    print(header)
    for aggregation, payment in VARIANTS:
        pairs = measure(aggregation, payment, args.rounds, lm, args.scenario)
        gain = pairs[:, 1] - pairs[:, 0]
        pays = gain > 1e-6
        best = pairs[pays, 2].mean() if pays.any() else float("nan")
        print(
            f"{aggregation:<11} {payment:<13}{pairs[:, 0].mean():>14.4f}{pairs[:, 0].max():>9.4f}"
            f"{pairs[:, 1].mean():>12.4f}{pairs[:, 1].max():>9.4f}{pays.mean():>16.0%}{best:>8.2f}"
        )


if __name__ == "__main__":
    main()
