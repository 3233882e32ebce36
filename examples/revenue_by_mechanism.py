"""The headline figure, revenue per round by mechanism, from the Python API.

Runs the two sweeps of ``market-sim demo`` (the token auction under second- and first-price
payments; first-price, uniform-price, GSP and VCG auctions over two ad slots) on the bundled tiny
LM, prints the summary table and draws ``revenue_by_mechanism.png`` / ``.svg`` / ``.pdf``. Small by
default (10 rounds, seeds 0-1: about a minute on 2 CPU cores); ``--rounds 150 --seeds 0-2`` gives
the demo's figure. Rerunning resumes: finished runs are kept.

    python examples/revenue_by_mechanism.py [--out results/example] [--rounds 10] [--seeds 0-1]
"""

import argparse
from pathlib import Path

from analysis.bar_figures import plot_revenue
from analysis.load import load_results
from analysis.summary import format_summary, summary_table
from market_sim.experiments.demo import run_demo
from market_sim.progress import quiet_libraries


def main() -> None:
    """Run the sweeps, print the summary, draw the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/example"), help="%(default)s")
    parser.add_argument("--rounds", type=int, default=10, help="rounds per run (%(default)s)")
    parser.add_argument("--seeds", default="0-1", help="seeds per mechanism (%(default)s)")
    args = parser.parse_args()
    quiet_libraries()  # no weight-loading bars or known library warnings

    demo = run_demo(args.out, seeds=args.seeds, overrides=(f"rounds={args.rounds}",), workers=1)
    results = load_results([sweep.out_dir for sweep in demo.sweeps.values()])
    print(format_summary(summary_table(results)))
    for path in plot_revenue(results, args.out / "figures"):
        print(path)


if __name__ == "__main__":
    main()
