"""What ``plot``'s learning curves cost on a large run: every agent row held, or round sums.

Builds one run folder of about ``--auctions`` auctions (four advertisers): a
``classic_auctions.toml`` run of K auctions a round (about 65,536 auctions) whose
``agents.parquet`` is repeated, rounds shifted, up to the size asked for. Then, each in a
fresh interpreter (so each peak is its own), computes the learning curves ``plot`` draws from
it:

* ``rows``: every row of the five columns read, then
  :func:`analysis.learning_curves.learning_curves` (what ``plot`` did before it read in chunks);
* ``sums``: :func:`analysis.load.read_reduced` chunks reduced to one row per round
  (:func:`analysis.learning_figure.learning_round_sums`), then the same curves (what ``plot`` does).

Prints each one's seconds and peak resident memory (``ru_maxrss``, the interpreter and its
imports included), the ratios, and the largest relative difference between the two curves
(float64 summation order).

Measured on the 2-core CPU, 10^7 auctions: K = 4096, rows 12.3 s and 5.91 GiB, sums 2.6 s and
0.68 GiB (4.7x, 8.8x); K = 1, rows 19.1 s and 6.59 GiB, sums 12.0 s and 2.40 GiB (1.6x, 2.8x);
the curves equal in both.

Run: ``python benchmarks/plot_memory.py [--auctions 10000000] [--per-round 4096]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl

from market_sim.run import run_scenario
from market_sim.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "classic_auctions.toml"
BASE_AUCTIONS = 65_536
"""Auctions of the run that is repeated (at least 10 rounds): few copies for any K."""

MEASURE = """
import json, resource, sys, time
from analysis.load import load_agents, load_results
from analysis.learning_curves import learning_curves
from analysis.metrics import labelled_runs
from analysis.learning_figure import LEARNING_FIELDS, LEARNING_METRICS, learning_round_sums

folder, mode, out = sys.argv[1:4]
started = time.perf_counter()
runs, by = labelled_runs(load_results(folder))
reduce = learning_round_sums if mode == "sums" else None
agents = load_agents(runs, by, fields=LEARNING_FIELDS, reduce=reduce)
curves = learning_curves(agents, by=by, metrics=LEARNING_METRICS)
seconds = time.perf_counter() - started
curves.write_parquet(out)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
print(json.dumps({"seconds": seconds, "peak_bytes": peak, "rows": agents.height}))
"""


def build_run(folder: Path, auctions: int, per_round: int) -> int:
    """A run folder of about ``auctions`` auctions; returns its agent rows."""
    base_rounds = max(10, -(-BASE_AUCTIONS // per_round))
    overrides = [f"rounds={base_rounds}", f"auctions_per_round={per_round}", "regret.every=1000"]
    run_scenario(load_scenario(SCENARIO, overrides), folder, progress=False)
    copies = max(1, round(auctions / (base_rounds * per_round)))
    base = pl.scan_parquet(folder / "agents.parquet")
    shifted = [base.with_columns(pl.col("round") + base_rounds * copy) for copy in range(copies)]
    pl.concat(shifted).sink_parquet(folder / "agents.big.parquet")
    (folder / "agents.big.parquet").replace(folder / "agents.parquet")
    return pl.scan_parquet(folder / "agents.parquet").select(pl.len()).collect().item()


def measure(folder: Path, mode: str, out: Path) -> dict:
    """One mode's seconds and peak memory, in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(folder), mode, str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """Print both modes' seconds and peak memory, their ratios and the curves' difference."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--auctions", type=int, default=10_000_000)
    parser.add_argument("--per-round", type=int, default=4096)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "run"
        rows = build_run(folder, args.auctions, args.per_round)
        results = {
            mode: measure(folder, mode, Path(scratch) / f"{mode}.parquet")
            for mode in ("rows", "sums")
        }
        curves = {mode: pl.read_parquet(Path(scratch) / f"{mode}.parquet") for mode in results}
    difference = (curves["sums"]["mean"] - curves["rows"]["mean"]).abs().max()
    scale = curves["rows"]["mean"].abs().max()
    print(f"{rows:,} agent rows ({rows // 4:,} auctions of 4 advertisers, K = {args.per_round})")
    for mode, numbers in results.items():
        print(
            f"  {mode}: {numbers['seconds']:.1f} s, peak {numbers['peak_bytes'] / 2**30:.2f} GiB, "
            f"{numbers['rows']:,} rows held"
        )
    rows_run, sums_run = results["rows"], results["sums"]
    print(
        f"rows / sums: {rows_run['seconds'] / sums_run['seconds']:.1f}x the time, "
        f"{rows_run['peak_bytes'] / sums_run['peak_bytes']:.1f}x the peak memory; "
        f"curves differ by {difference / scale:.1e} relative"
    )


if __name__ == "__main__":
    main()
