"""How far below the supremum the regret search lands on ad-slot auctions, by ``regret.peaks``.

The market passes a slot auction's jump bids (the other bids and 0,
``SlotAuctionCounterfactual.jump_bids``) to the search; the rows marked ``grid`` leave them
out, as for a mechanism whose counterfactual has none, to measure the grid search alone.

Each draw is one auction of 3 bidders over two slots (click-through rates 1 and 0.5,
``slot_value`` 24): values U[0.5, 1.5], bids value x N(ratio, 0.2) clipped to [0, 2], a random
priority order for ties. For bidder 0 the search of ``market_sim.incentives.regret`` (default
budget, ``peaks`` = P) is compared with a reference supremum: a 4001-point scan of bids in
[0, 2 v] plus 1e-9, each rival's bid and each rival's bid + 1e-9 (the supremum of first price
sits just above a rival's bid, or just above 0 where a slot is left over). Printed per (kind,
rivals' bid ratio, search, P): the mean estimate, the mean reference, the mean shortfall as a
share of it, the largest single shortfall, the share of draws short by more than 1, and the
counterfactual reports evaluated per search.

Usage: ``python benchmarks/regret_peaks.py [--draws 600]`` (about 40 s at 600).
"""

from __future__ import annotations

import argparse
import functools

import numpy as np

from market_sim.incentives.regret import estimate_regret
from market_sim.platform.base import Report, ReportBatch
from market_sim.platform.report_spaces import BIDS_ONLY
from market_sim.platform.slot_auction import SlotAuctionCounterfactual
from market_sim.scenario.schema import RegretConfig

RATES = np.array([1.0, 0.5])
SLOT_VALUE = 24.0
PEAKS = (1, 2, 3, 5)
SEARCHES = (*(("grid", peaks) for peaks in PEAKS), ("jumps", 1))
SCAN_POINTS = 4001


def reference_regret(evaluate, valuation: float, rival_bids: np.ndarray) -> float:
    """Supremum of the deviation utility minus the truthful utility, by a dense scan."""
    bids = np.concatenate(
        [np.linspace(0.0, 2.0 * valuation, SCAN_POINTS), [1e-9], rival_bids, rival_bids + 1e-9]
    )
    bids = bids[bids <= 2.0 * valuation]
    best = evaluate(ReportBatch(bids, np.ones_like(bids))).utilities(valuation).max()
    truthful = evaluate(ReportBatch(np.array([valuation]), np.ones(1))).utilities(valuation)[0]
    return max(float(best - truthful), 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=600, help="auctions per row (default 600)")
    args = parser.parse_args()
    print(
        f"{'kind':<12} {'ratio':>5} {'search':>6} {'P':>2} {'estimate':>9} {'supremum':>9} "
        f"{'short':>7} "
        f"{'max short':>9} {'>1':>6} {'evals':>6}"
    )
    for kind in ("first_price", "gsp", "second_price", "vcg"):
        for ratio in (0.54, 1.0):
            rng = np.random.default_rng(7)
            estimates = {search: [] for search in SEARCHES}
            evaluations = dict.fromkeys(SEARCHES, 0)
            references = []
            for _ in range(args.draws):
                values = rng.uniform(0.5, 1.5, 3)
                bids = values * np.clip(rng.normal(ratio, 0.2, 3), 0.0, 2.0)
                priority = rng.permutation(3).astype(float)
                engine = SlotAuctionCounterfactual(bids, priority, RATES, kind, SLOT_VALUE)
                evaluate = functools.partial(engine.evaluate, 0)
                for search in SEARCHES:
                    name, peaks = search
                    estimate = estimate_regret(
                        evaluate,
                        values[0],
                        Report(bids[0]),
                        BIDS_ONLY,
                        RegretConfig(peaks=peaks),
                        jump_bids=engine.jump_bids(0) if name == "jumps" else None,
                    )
                    estimates[search].append(estimate.regret)
                    evaluations[search] += estimate.evaluations
                references.append(reference_regret(evaluate, values[0], bids[1:]))
            reference = np.array(references)
            for search in SEARCHES:
                name, peaks = search
                estimate = np.array(estimates[search])
                short = reference - estimate
                share = (  # VCG: truthful, a supremum of 0 and nothing to be short of
                    f"{1 - estimate.mean() / reference.mean():>7.2%}"
                    if reference.mean() > 0
                    else f"{'-':>7}"
                )
                print(
                    f"{kind:<12} {ratio:>5} {name:>6} {peaks:>2} {estimate.mean():>9.3f} "
                    f"{reference.mean():>9.3f} {share} "
                    f"{short.max():>9.3f} {(short > 1).mean():>6.3f} "
                    f"{evaluations[search] / args.draws:>6.1f}"
                )


if __name__ == "__main__":
    main()
