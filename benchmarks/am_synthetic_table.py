"""The published synthetic affine-maximizer game: effect of an epsilon misreport.

5 groups, 10 outcomes, reward models rm ~ U[0, 1] normalized (by max or by sum), sizes
w ~ U{1..10}, base policy uniform (or Dirichlet(1) with ``--init dirichlet``). Each group in turn
shifts epsilon of reported reward toward its favourite outcome (see
``market_sim.mechanisms.affine_misreports.epsilon_shift``), the others truthful. Printed per
normalization, divergence and epsilon, averaged over every (game, group):

* ``d_value``: change of the group's true valuation w_i E_pi*[rm_i] (= change of its utility
  without payments), and the share of cases where it rose;
* ``d_util_pay``: change of its utility under affine-maximizer payments, the share of cases where
  it rose (DSIC says never) and its maximum;
* ``value``: the truthful valuation, for scale.

Run: ``python benchmarks/am_synthetic_table.py [--games 2000] [--seed 0] [--lam 1.0]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from market_sim.mechanisms.affine_maximizer import run_affine_maximizer
from market_sim.mechanisms.affine_synthetic_game import epsilon_effects, synthetic_games

EPSILONS = (0.001, 0.01, 0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lam", type=float, default=1.0)
    parser.add_argument("--normalization", choices=["max", "sum", "both"], default="both")
    parser.add_argument("--init", choices=["uniform", "dirichlet"], default="uniform")
    args = parser.parse_args()
    start = time.perf_counter()
    normalizations = ["max", "sum"] if args.normalization == "both" else [args.normalization]
    print(
        f"games={args.games} seed={args.seed} lambda={args.lam} init={args.init} "
        "groups=5 outcomes=10 sizes=U{1..10}"
    )
    header = (
        f"{'norm':>4} {'div':>4} {'eps':>6} | {'value':>8} | {'d_value':>10} {'rose':>6} | "
        f"{'d_util_pay':>11} {'rose':>6} {'max':>9}"
    )
    for normalization in normalizations:
        rewards, weights = synthetic_games(args.seed, args.games, normalization=normalization)
        if args.init == "uniform":
            init = np.full(10, 0.1)
        else:
            init = np.random.default_rng(args.seed + 1).dirichlet(np.ones(10), size=args.games)
        print()
        print(header)
        print("-" * len(header))
        for divergence in ("kl", "chi2", "tv"):
            truthful = run_affine_maximizer(rewards, weights, init, divergence, args.lam)
            effects = epsilon_effects(
                rewards, weights, init, EPSILONS, divergence, args.lam, normalization
            )
            for k, eps in enumerate(EPSILONS):
                d_value = effects.valuation_change[k]
                d_util = effects.utility_change[k]
                print(
                    f"{normalization:>4} {divergence:>4} {eps:>6g} | "
                    f"{truthful.values.mean():8.4f} | "
                    f"{d_value.mean():+10.3e} {np.mean(d_value > 1e-12):6.1%} | "
                    f"{d_util.mean():+11.3e} {np.mean(d_util > 1e-9):6.1%} {d_util.max():+9.1e}"
                )
    print(f"\n({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
